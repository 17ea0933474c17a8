//! The report's tests: the data block survives hostile policy text, and in a real browser
//! (headless chromium) the page draws every node and node pair and highlights a search's blast
//! radius and callers (docs/blast-radius.md).

/// Headless chromium, driven by these tests only.
mod browser;

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::policy::Selector;
use crate::policy::analysis::identity_classes;
use crate::policy::analysis::report::{Edge, Finding, Node, SegmentInfo};
use browser::{Tag, chromium_or_skip, dump_dom, screenshot, tags_with};

const PROD: &str = "spiffe://example.org/ns/prod/sa";

fn segment(name: &str, env: Option<&str>, identities: &[&str]) -> SegmentInfo {
    SegmentInfo {
        name: name.into(),
        identities: identities.iter().map(|s| s.to_string()).collect(),
        labels: env
            .map(|e| BTreeMap::from([("env".to_string(), e.to_string())]))
            .unwrap_or_default(),
    }
}

fn node(id: usize, name: &str, segments: &[&str], group: &str) -> Node {
    Node {
        id,
        name: name.into(),
        segments: segments.iter().map(|s| s.to_string()).collect(),
        group: group.into(),
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn edge(source: usize, destination: usize, methods: &[&str], paths: &[&str], allow: &str) -> Edge {
    Edge {
        source,
        destination,
        methods: strings(methods),
        paths: strings(paths),
        allow_rules: strings(&[allow]),
        ..Edge::default()
    }
}

/// Three groups (prod, staging, unlabelled), seven nodes, eight edges on seven node pairs
/// (frontend → payments twice, with different methods; staging-workloads → itself).
fn fleet() -> ReportData {
    let segments = vec![
        segment("frontend", Some("prod"), &[&format!("{PROD}/frontend")]),
        segment("payments", Some("prod"), &[&format!("{PROD}/payments")]),
        segment("ledger", Some("prod"), &[&format!("{PROD}/ledger/**")]),
        segment(
            "ci-runner",
            Some("staging"),
            &["spiffe://example.org/ns/staging/sa/ci-runner"],
        ),
        segment(
            "staging-workloads",
            Some("staging"),
            &["spiffe://example.org/ns/staging/**"],
        ),
        segment("agent", None, &["spiffe://example.org/agent/*/read"]),
    ];
    let nodes = vec![
        node(0, "frontend", &["frontend"], "prod"),
        node(1, "payments", &["payments"], "prod"),
        node(2, "ledger", &["ledger"], "prod"),
        node(
            3,
            "ci-runner+staging-workloads",
            &["ci-runner", "staging-workloads"],
            "staging",
        ),
        node(4, "staging-workloads", &["staging-workloads"], "staging"),
        node(5, "agent", &["agent"], "(none)"),
        node(6, "(unsegmented)", &[], "(none)"),
    ];
    let mut charges = edge(0, 1, &["GET", "POST"], &["/v1/**"], "frontend-to-payments");
    charges.except = strings(&["/v1/admin/**"]);
    charges.deny_rules = strings(&["no-admin"]);
    let mut health = edge(3, 1, &["GET"], &["/v1/health"], "ci-health");
    health.dry_run_rules = strings(&["staging-guard"]);
    let edges = vec![
        charges,
        edge(0, 1, &["DELETE"], &["/v1/charges/*"], "frontend-refunds"),
        edge(1, 2, &["*"], &["/**"], "payments-ledger"),
        health,
        edge(4, 4, &["*"], &["/**"], "staging-internal"),
        edge(5, 2, &["GET"], &["/v1/entries/**"], "agent-read"),
        edge(6, 0, &["GET"], &["/**"], "public-frontend"),
        edge(2, 0, &["POST"], &["/v1/callbacks"], "ledger-callbacks"),
    ];
    let findings = vec![
        Finding {
            kind: "reach-crosses-boundary".into(),
            at: "policies/rules.yaml:41:5".into(),
            message: "ci-runner+staging-workloads (env=staging) can reach payments (env=prod); \
                      no rule names env=prod explicitly"
                .into(),
        },
        Finding {
            kind: "wide-source".into(),
            at: "policies/rules.yaml:12:5".into(),
            message: "allow `public-frontend` admits any identity into a tier: critical segment"
                .into(),
        },
    ];
    ReportData {
        policy_version: "sha256:3f2a9c41d07e".into(),
        boundary_label: "env".into(),
        generated_from: "policies/".into(),
        segments,
        nodes,
        edges,
        findings,
    }
}

/// The text between the data block's opening tag and its `</script>`.
fn data_block(html: &str) -> &str {
    let open = "<script type=\"application/json\" id=\"segward-data\">";
    let start = html.find(open).unwrap() + open.len();
    let len = html[start..].find("</script>").unwrap();
    &html[start..start + len]
}

#[test]
fn the_template_has_one_data_slot_and_fetches_nothing() {
    assert_eq!(TEMPLATE.matches(DATA_SLOT).count(), 1);
    assert_eq!(data_block(TEMPLATE), DATA_SLOT);
    // The only URL in the page is the SVG namespace; no src=, href= or fetch to the network.
    let html = render(&fleet());
    let urls = html.matches("http://").count() + html.matches("https://").count();
    assert_eq!(urls, html.matches("http://www.w3.org/2000/svg").count());
    assert!(!html.contains(" src=") && !html.contains(" href=") && !html.contains("fetch("));
}

const EVIL: &str = "</script><script>alert(1)</script><!-- \u{2028}\u{2029} & '\"";

/// The fleet plus a segment, node, edge and finding whose every text field is [`EVIL`].
fn hostile_fleet() -> ReportData {
    let evil = EVIL;
    let mut data = fleet();
    data.segments.push(segment(evil, Some(evil), &[evil]));
    data.nodes.push(node(7, evil, &[evil], evil));
    data.edges.push(edge(7, 7, &[evil], &[evil], evil));
    data.findings.push(Finding {
        kind: evil.into(),
        at: evil.into(),
        message: evil.into(),
    });
    data
}

#[test]
fn hostile_policy_text_cannot_leave_the_data_block() {
    let data = hostile_fleet();
    let html = render(&data);

    assert_eq!(
        html.matches("</script").count(),
        TEMPLATE.matches("</script").count(),
        "only the template's own closing tags"
    );
    assert!(!html.contains("<!--") || TEMPLATE.contains("<!--"));
    assert!(!html.contains(['\u{2028}', '\u{2029}']));
    let block = data_block(&html);
    assert!(!block.contains(['<', '>', '&']));
    let parsed: serde_json::Value = serde_json::from_str(block).unwrap();
    assert_eq!(parsed, serde_json::to_value(&data).unwrap());
    assert_eq!(parsed["segments"][6]["name"], EVIL);
}

#[test]
fn chromium_shows_hostile_policy_text_as_text() {
    if !chromium_or_skip("chromium_shows_hostile_policy_text_as_text") {
        return;
    }
    let (_dir, path) = page(&hostile_fleet());
    let dom = dump_dom(&path, &format!("search={EVIL}"));
    // The page's own two scripts and nothing injected; the hostile node drawn and found.
    assert_eq!(dom.matches("<script").count(), 2);
    let nodes = tags_with(&dom, "data-node");
    assert_eq!(nodes.len(), 8);
    assert_eq!(names_with(&nodes, "selected"), [EVIL]);
    assert_eq!(names_with(&nodes, "reach"), [EVIL], "its edge to itself");
}

/// Renders `data` into a temp folder; returns the folder (kept alive) and the page's path.
fn page(data: &ReportData) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.html");
    std::fs::write(&path, render(data)).unwrap();
    (dir, path)
}

/// Node names carrying `class`, sorted.
fn names_with(nodes: &[Tag], class: &str) -> Vec<String> {
    let mut names: Vec<String> = nodes
        .iter()
        .filter(|t| t.has_class(class))
        .map(|t| t.attr("data-node").unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn summary(dom: &str) -> Tag {
    let mut tags = tags_with(dom, "id");
    let at = tags.iter().position(|t| t.attr("id") == Some("summary"));
    tags.swap_remove(at.expect("an #summary element"))
}

#[test]
fn chromium_draws_every_node_and_one_line_per_node_pair() {
    if !chromium_or_skip("chromium_draws_every_node_and_one_line_per_node_pair") {
        return;
    }
    let data = fleet();
    let (_dir, path) = page(&data);
    let dom = dump_dom(&path, "");

    let nodes = tags_with(&dom, "data-node");
    let edges = tags_with(&dom, "data-edge");
    assert_eq!(nodes.len(), data.nodes.len());
    assert_eq!(
        edges.len(),
        7,
        "eight edges, two of them on frontend -> payments"
    );
    let s = summary(&dom);
    assert_eq!(s.attr("data-nodes"), Some("7"));
    assert_eq!(s.attr("data-edges"), Some("7"));
    assert_eq!(s.attr("data-reach"), Some("0"));
    let drawn: Vec<_> = edges.iter().filter_map(|t| t.attr("data-edge")).collect();
    assert!(drawn.contains(&"frontend->payments") && drawn.contains(&"(unsegmented)->frontend"));
    assert_eq!(
        dom.matches("data-group=\"").count(),
        3,
        "prod, staging, (none)"
    );
    assert!(dom.contains("<td class=\"kind\">wide-source</td>"));
}

#[test]
fn chromium_highlights_blast_radius_and_callers_of_a_search() {
    if !chromium_or_skip("chromium_highlights_blast_radius_and_callers_of_a_search") {
        return;
    }
    let ci = "spiffe://example.org/ns/staging/sa/ci-runner";
    // (search, selected node, reach, callers)
    let table: [(&str, &str, &[&str], &[&str]); 5] = [
        (
            "frontend",
            "frontend",
            &["payments"],
            &["(unsegmented)", "ledger"],
        ),
        // An ID in two segments is the node of exactly that pair of segments.
        (ci, "ci-runner+staging-workloads", &["payments"], &[]),
        // `**` matches the prefix itself.
        (
            &format!("{PROD}/ledger"),
            "ledger",
            &["frontend"],
            &["agent", "payments"],
        ),
        // A node's edge to itself makes it its own reach and caller.
        (
            "spiffe://example.org/ns/staging/sa/web",
            "staging-workloads",
            &["staging-workloads"],
            &["staging-workloads"],
        ),
        // `*` is exactly one segment, so this ID is in no segment.
        (
            "spiffe://example.org/agent/x/y/read",
            "(unsegmented)",
            &["frontend"],
            &[],
        ),
    ];
    let (_dir, path) = page(&fleet());
    for (search, selected, reach, callers) in table {
        let dom = dump_dom(&path, &format!("search={search}"));
        let nodes = tags_with(&dom, "data-node");
        assert_eq!(names_with(&nodes, "selected"), [selected], "{search}");
        assert_eq!(names_with(&nodes, "reach"), reach, "{search}: reach");
        assert_eq!(names_with(&nodes, "caller"), callers, "{search}: callers");
        let s = summary(&dom);
        assert_eq!(
            s.attr("data-reach"),
            Some(&*reach.len().to_string()),
            "{search}"
        );
        assert_eq!(s.attr("data-callers"), Some(&*callers.len().to_string()));
        let lit = tags_with(&dom, "data-edge");
        let lit = lit.iter().filter(|t| t.has_class("reach")).count();
        assert_eq!(lit, reach.len(), "{search}: one lit line per reached node");
    }
}

#[test]
fn chromium_screenshot_is_a_full_size_png() {
    if !chromium_or_skip("chromium_screenshot_is_a_full_size_png") {
        return;
    }
    let (dir, path) = page(&fleet());
    let png = dir.path().join("report.png");
    screenshot(&path, "search=frontend", &png, (1400, 900));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1400, 900));
    assert!(bytes.len() > 20_000, "a blank page compresses to far less");
    // To look at it: SEGWARD_REPORT_PNG=docs/report.png cargo test chromium_screenshot
    if let Some(keep) = std::env::var_os("SEGWARD_REPORT_PNG") {
        std::fs::copy(&png, Path::new(&keep)).unwrap();
    }
}

/// The shipped policy, built by `policy report`'s own `build`: chromium draws one node per
/// identity class and one line per pair with reach, and a search highlights exactly what
/// `reach --from` / `--to` that segment answer.
#[test]
fn chromium_shows_the_shipped_policy_reach_exactly() {
    if !chromium_or_skip("chromium_shows_the_shipped_policy_reach_exactly") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let compiled = crate::policy::load(&root).unwrap();
    let data = build(&compiled, "policies/", "env").unwrap();
    let (_dir, path) = page(&data);
    let pairs = |r: &crate::policy::Reach| -> std::collections::BTreeSet<(String, String)> {
        let names = r
            .edges
            .iter()
            .map(|e| (e.source.name.clone(), e.destination.name.clone()));
        names.collect()
    };
    let all =
        crate::policy::reach(&compiled, ("*", &Selector::Any), ("*", &Selector::Any)).unwrap();
    let dom = dump_dom(&path, "");
    let s = summary(&dom);
    assert_eq!(s.attr("data-nodes"), Some(&*data.nodes.len().to_string()));
    assert_eq!(s.attr("data-edges"), Some(&*pairs(&all).len().to_string()));
    assert_eq!(tags_with(&dom, "data-edge").len(), pairs(&all).len());
    let classes = identity_classes(&compiled).unwrap().len();
    assert_eq!(tags_with(&dom, "data-node").len(), classes);

    for segment in ["frontend", "agent-read", "payments", "staging-workloads"] {
        let sel = Selector::parse(&compiled, segment).unwrap();
        let out = crate::policy::reach(&compiled, (segment, &sel), ("*", &Selector::Any)).unwrap();
        let inn = crate::policy::reach(&compiled, ("*", &Selector::Any), (segment, &sel)).unwrap();
        let mut want_reach: Vec<String> = pairs(&out)
            .into_iter()
            .filter(|(s, _)| s == segment)
            .map(|(_, d)| d)
            .collect();
        let mut want_callers: Vec<String> = pairs(&inn)
            .into_iter()
            .filter(|(_, d)| d == segment)
            .map(|(s, _)| s)
            .collect();
        want_reach.sort();
        want_callers.sort();
        let dom = dump_dom(&path, &format!("search={segment}"));
        let nodes = tags_with(&dom, "data-node");
        assert_eq!(names_with(&nodes, "selected"), [segment]);
        // A node that is both reached and a caller carries both classes.
        assert_eq!(names_with(&nodes, "reach"), want_reach, "{segment}: reach");
        assert_eq!(
            names_with(&nodes, "caller"),
            want_callers,
            "{segment}: callers"
        );
    }
    if let Some(png) = std::env::var_os("SEGWARD_REPORT_PNG") {
        screenshot(&path, "search=payments", Path::new(&png), (1400, 900));
    }
}

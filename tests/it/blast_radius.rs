//! `policy reach`, `policy diff` and `policy report` through the real binary (docs/blast-radius.md):
//! output shapes, exit codes, and diffs whose widened and narrowed edges are known by
//! construction.

use serde_json::Value;

use crate::cli::{json, policy_dir, segward, segward_in};

const STAGING: &str = "spiffe://example.org/ns/staging/**";

#[test]
fn reach_from_a_leaked_staging_pattern_stays_in_staging() {
    let out = segward(&["policy", "reach", "policies/", "--from", STAGING, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let answer = json(&out.stdout);
    assert_eq!(answer["query"]["from"], STAGING);
    assert_eq!(answer["query"]["to"], "*");
    assert!(
        answer["policy_version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let edges = answer["edges"].as_array().unwrap();
    assert!(!edges.is_empty(), "{out:?}");
    for e in edges {
        for key in [
            "source",
            "destination",
            "methods",
            "paths",
            "except",
            "allow_rules",
            "deny_rules",
        ] {
            assert!(e.get(key).is_some(), "edge without {key}: {e}");
        }
        // Every destination is a staging class: nothing in prod is reachable.
        let dst: Vec<&str> = e["destination_segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(dst.contains(&"staging-workloads"), "{e}");
    }
}

#[test]
fn reach_to_payments_names_every_caller_with_its_requests() {
    let out = segward(&["policy", "reach", "policies/", "--to", "payments"]);
    assert_eq!(out.code, 0, "{out:?}");
    let row = |source: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{source} ")))
            .unwrap_or_else(|| panic!("no row for {source}: {}", out.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("frontend"),
        [
            "frontend",
            "payments",
            "GET,POST",
            "/v1/charges",
            "/v1/charges/*",
            "-",
            "frontend-creates-charges"
        ]
    );
    assert_eq!(row("agent-write")[2..4], ["POST", "/v1/refunds"]);
    assert!(!out.stdout.contains("staging"), "{}", out.stdout);
    let dot = segward(&["policy", "reach", "policies/", "--to", "payments", "--dot"]);
    assert_eq!(dot.code, 0);
    assert!(dot.stdout.starts_with("digraph reach {"), "{dot:?}");
    assert!(
        dot.stdout.contains("\"frontend\" -> \"payments\""),
        "{dot:?}"
    );
}

#[test]
fn reach_refuses_bad_selectors_and_the_whole_matrix_with_usage_errors() {
    let out = segward(&["policy", "reach", "policies/", "--from", "payment"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("did you mean `payments`?"), "{out:?}");
    let out = segward(&["policy", "reach", "policies/", "--to", "env=qa"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("`env` is one of"), "{out:?}");
    let out = segward(&[
        "policy",
        "reach",
        "policies/",
        "--from",
        "spiffe://example.org/a/**/b",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = segward(&["policy", "reach", "policies/", "--json"]);
    assert_eq!(out.code, 2, "neither side given: {out:?}");
    let bad = policy_dir(&[("p.yaml", "segments: [\n")]);
    let out = segward_in(bad.path(), &["policy", "reach", "p.yaml", "--from", "*"]);
    assert_eq!(out.code, 1, "{out:?}");
}

const BASE: &str = r#"
segments:
  web:  { identities: ["spiffe://t.org/web"], labels: { env: prod } }
  pay:  { identities: ["spiffe://t.org/pay"], labels: { env: prod } }
  ci:   { identities: ["spiffe://t.org/ci"], labels: { env: staging } }
rules:
  - { name: web-pays, from: [web], to: [pay], methods: [GET, POST], paths: ["/v1/**"] }
  - { name: ci-reads, from: [ci], to: [web], methods: [GET] }
"#;

/// A diff of two policies, as JSON: (change, source, destination) per changed pair.
fn diff(old: &str, new: &str, extra: &[&str]) -> (i32, Vec<(String, String, String)>) {
    let dir = policy_dir(&[("old.yaml", old), ("new.yaml", new)]);
    let mut args = vec!["policy", "diff", "old.yaml", "new.yaml", "--json"];
    args.extend_from_slice(extra);
    let out = segward_in(dir.path(), &args);
    let changes = json(&out.stdout)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c: &Value| {
            let s = |k: &str| c[k].as_str().unwrap().to_owned();
            (s("change"), s("source"), s("destination"))
        })
        .collect();
    (out.code, changes)
}

fn t(change: &str, source: &str, destination: &str) -> (String, String, String) {
    (change.into(), source.into(), destination.into())
}

#[test]
fn diff_finds_the_edges_a_change_adds_widens_narrows_and_removes() {
    // Widened: web may now DELETE; added: ci reaches pay; narrowed: ci loses /admin on web.
    let new = BASE
        .replace("methods: [GET, POST], paths", "methods: [GET, POST, DELETE], paths")
        .replace("rules:\n", "rules:\n  - { name: ci-pays, from: [ci], to: [pay], paths: [\"/x\"] }\n  - { name: no-admin, effect: deny, from: [ci], to: [web], paths: [\"/admin/**\"] }\n");
    let (code, changes) = diff(BASE, &new, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        changes,
        [
            t("added", "ci", "pay"),
            t("narrowed", "ci", "web"),
            t("widened", "web", "pay"),
        ]
    );
    let (code, _) = diff(BASE, &new, &["--fail-on-widen"]);
    assert_eq!(code, 3, "reach grew");
    // Reversed, the same change removes, widens and narrows.
    let (code, back) = diff(&new, BASE, &["--fail-on-widen"]);
    assert_eq!(code, 3);
    assert_eq!(
        back,
        [
            t("removed", "ci", "pay"),
            t("widened", "ci", "web"),
            t("narrowed", "web", "pay"),
        ]
    );
    // Only narrowing: the CI gate passes.
    let narrower = BASE.replace("paths: [\"/v1/**\"]", "paths: [\"/v1/charges\"]");
    let (code, changes) = diff(BASE, &narrower, &["--fail-on-widen"]);
    assert_eq!((code, changes), (0, vec![t("narrowed", "web", "pay")]));
    // The same reach written differently (rules split, reordered) is no change at all.
    let split = BASE.replace(
        "  - { name: web-pays, from: [web], to: [pay], methods: [GET, POST], paths: [\"/v1/**\"] }\n",
        "  - { name: web-posts, from: [web], to: [pay], methods: [POST], paths: [\"/v1/**\"] }\n  - { name: web-gets, from: [web], to: [pay], methods: [GET], paths: [\"/v1\", \"/v1/*/**\"] }\n",
    );
    assert_ne!(split, BASE);
    assert_eq!(diff(BASE, &split, &["--fail-on-widen"]), (0, vec![]));
}

#[test]
fn report_writes_one_self_contained_page() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let out = segward(&[
        "policy",
        "report",
        "policies/",
        "--out",
        page.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"));
    // Nothing fetched: no external script, style or URL but the SVG namespace.
    for needle in ["<script src", "<link", "@import"] {
        assert!(!html.contains(needle), "{needle}");
    }
    let urls = html.matches("http://").count() + html.matches("https://").count();
    let svg_ns = html.matches("http://www.w3.org/2000/svg").count();
    assert_eq!(urls, svg_ns, "only the SVG namespace is a URL");
    assert!(html.contains("payments-writes-ledger"));
    let bad = policy_dir(&[("p.yaml", "rules: 3\n")]);
    let out = segward_in(
        bad.path(),
        &["policy", "report", "p.yaml", "--out", "r.html"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!bad.path().join("r.html").exists());
}

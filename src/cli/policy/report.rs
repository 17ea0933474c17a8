//! The page `segward policy report` writes (PRODUCT.md §9): one self-contained HTML file with
//! the segment graph grouped by the boundary label, an edge per allowed reach, a search box that
//! highlights an identity's or segment's blast radius and its callers, and the lint findings.
//! Inline CSS and JS from one asset (`report/report.html`); nothing is fetched. The data goes in
//! as JSON in a `<script type="application/json">` block, escaped so that hostile policy text
//! cannot close it. Takes the reach edges as computed elsewhere; it only renders them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::{Outcome, report_invalid};
use crate::atomic_file::AtomicWrite;
use crate::policy::lint::{self, DEFAULT_BOUNDARY_LABEL, LintOptions};
use crate::policy::{self, CompiledPolicy, Methods, ReachError, Selector};

/// The page: CSS, markup and JS; [`DATA_SLOT`] appears once, inside the data block.
const TEMPLATE: &str = include_str!("report/report.html");
/// Where [`render`] puts the escaped JSON.
const DATA_SLOT: &str = "__SEGWARD_REPORT_DATA__";

/// Everything the page shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportData {
    /// The compiled policy's version hash.
    pub policy_version: String,
    /// The label whose values group the nodes (`env` by default).
    pub boundary_label: String,
    /// The policy file or folder the report was made from.
    pub generated_from: String,
    /// Every segment of the policy, with its identity patterns and labels.
    pub segments: Vec<SegmentInfo>,
    /// The graph's nodes; an edge names them by `id`, their index in this list.
    pub nodes: Vec<Node>,
    /// Allowed reach; several edges may join one pair of nodes (different method sets).
    pub edges: Vec<Edge>,
    /// `policy check` lint findings.
    pub findings: Vec<Finding>,
}

/// One segment as the policy declares it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: String,
    /// SPIFFE ID patterns (`*` one path segment, trailing `**` the prefix and below).
    pub identities: Vec<String>,
    /// The segment's labels.
    pub labels: BTreeMap<String, String>,
}

/// One node of the graph: the identities that belong to exactly one set of segments.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Node {
    /// This node's index in [`ReportData::nodes`].
    pub id: usize,
    /// A segment name, several joined with `+`, or `(unsegmented)`.
    pub name: String,
    /// The segments the node's identities belong to; empty for `(unsegmented)`.
    pub segments: Vec<String>,
    /// The boundary label's value(s), joined with `+`; `(none)` when unlabelled.
    pub group: String,
}

/// Requests `source` may send to `destination`, written as `decide` allows them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Edge {
    /// The calling node's `id`.
    pub source: usize,
    /// The called node's `id`.
    pub destination: usize,
    /// Allowed methods; `["*"]` means any.
    pub methods: Vec<String>,
    /// Methods carved out of `methods` by deny rules on every path.
    pub except_methods: Vec<String>,
    /// Allowed path patterns.
    pub paths: Vec<String>,
    /// Path patterns carved out by deny rules.
    pub except: Vec<String>,
    /// The allow rules that grant this edge.
    pub allow_rules: Vec<String>,
    /// The deny rules that carve out of it.
    pub deny_rules: Vec<String>,
    /// Dry-run deny rules that would carve out of it (reported as allowed).
    pub dry_run_rules: Vec<String>,
}

/// One lint finding of `policy check`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Finding {
    /// The lint's name, e.g. `reach-crosses-boundary`.
    pub kind: String,
    /// Where, as `file:line:col`.
    pub at: String,
    /// What is wrong, in one sentence.
    pub message: String,
}

/// `policy report` arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A policy file or folder.
    path: PathBuf,
    /// Where to write the HTML file (overwritten).
    #[arg(long, value_name = "FILE.html")]
    out: PathBuf,
    /// The label whose values group the segments, and that the segmentation lints treat as
    /// the boundary.
    #[arg(long, value_name = "LABEL", default_value = DEFAULT_BOUNDARY_LABEL)]
    boundary_label: String,
}

/// Runs `policy report`: computes every edge and the lints, writes the page.
pub(super) fn run(args: ReportArgs) -> anyhow::Result<Outcome> {
    let compiled = match policy::load(&args.path) {
        Ok(p) => p,
        Err(errors) => return Ok(report_invalid(&errors, false)),
    };
    let data = build(
        &compiled,
        &args.path.display().to_string(),
        &args.boundary_label,
    )?;
    let html = render(&data);
    AtomicWrite::new()
        .write(&args.out, &html)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} bytes): {} nodes, {} edges, {} findings",
        args.out.display(),
        html.len(),
        data.nodes.len(),
        data.edges.len(),
        data.findings.len()
    );
    Ok(Outcome::Success)
}

/// The report of `compiled`: its segments, every identity class that has an edge or is one
/// segment, the complete reach (`policy reach --from '*' --to '*'`), and the lint findings.
pub(super) fn build(
    compiled: &CompiledPolicy,
    generated_from: &str,
    boundary_label: &str,
) -> Result<ReportData, ReachError> {
    let reach = compiled.reach(("*", &Selector::Any), ("*", &Selector::Any))?;
    let segments: Vec<SegmentInfo> = compiled
        .segments()
        .iter()
        .map(|s| SegmentInfo {
            name: s.name.clone(),
            identities: s.identities.iter().map(ToString::to_string).collect(),
            labels: s.labels.clone(),
        })
        .collect();
    let group_of = |names: &[String]| -> String {
        let mut values: Vec<&str> = names
            .iter()
            .filter_map(|n| compiled.segment_id(n))
            .filter_map(|s| compiled.segments()[s as usize].labels.get(boundary_label))
            .map(String::as_str)
            .collect();
        values.sort_unstable();
        values.dedup();
        if values.is_empty() {
            "(none)".to_owned()
        } else {
            values.join("+")
        }
    };
    // Every identity class is a node (a segment whose identities are all in other segments
    // too has none of its own), then the folded `*` destination if an edge names it.
    let mut nodes: Vec<Node> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut node_for = |name: &str, names: &[String], nodes: &mut Vec<Node>| -> usize {
        if let Some(&i) = index.get(name) {
            return i;
        }
        let id = nodes.len();
        nodes.push(Node {
            id,
            name: name.to_owned(),
            segments: names.to_vec(),
            group: group_of(names),
        });
        index.insert(name.to_owned(), id);
        id
    };
    for class in compiled.identity_classes()? {
        let name = if class.is_empty() {
            policy::reach::UNSEGMENTED.to_owned()
        } else {
            class.join("+")
        };
        node_for(&name, &class, &mut nodes);
    }
    let mut edges = Vec::with_capacity(reach.edges.len());
    for e in &reach.edges {
        let source = node_for(&e.source.name, &e.source.segments, &mut nodes);
        let destination = node_for(&e.destination.name, &e.destination.segments, &mut nodes);
        let (methods, except_methods) = match &e.methods {
            Methods::Only(list) => (list.clone(), Vec::new()),
            Methods::AllBut(list) => (vec!["*".to_owned()], list.clone()),
        };
        let texts = |ps: &[std::sync::Arc<policy::pattern::PathPattern>]| -> Vec<String> {
            ps.iter().map(|p| p.as_str().to_owned()).collect()
        };
        edges.push(Edge {
            source,
            destination,
            methods,
            except_methods,
            paths: texts(&e.paths),
            except: texts(&e.except),
            allow_rules: e.allow_rules.clone(),
            deny_rules: e.deny_rules.clone(),
            dry_run_rules: e.dry_run_rules.clone(),
        });
    }
    let options = LintOptions {
        boundary_label: boundary_label.to_owned(),
        ..LintOptions::default()
    };
    let findings = lint::lint_with_reach(compiled, &options, Some(&reach))
        .into_iter()
        .map(|l| Finding {
            kind: l.kind.to_owned(),
            at: l.at,
            message: l.message,
        })
        .collect();
    Ok(ReportData {
        policy_version: compiled.version().to_owned(),
        boundary_label: boundary_label.to_owned(),
        generated_from: generated_from.to_owned(),
        segments,
        nodes,
        edges,
        findings,
    })
}

/// Renders the report as one self-contained HTML document.
pub fn render(data: &ReportData) -> String {
    // Invariant: these types hold only strings, integers, lists and string-keyed maps, which
    // serde_json always serializes.
    let json = serde_json::to_string(data).expect("report data serializes to JSON");
    TEMPLATE.replacen(DATA_SLOT, &escape_for_script(&json), 1)
}

/// Makes JSON safe inside a `<script>` element: `<`, `>` and `&` (so no `</script` or `<!--`)
/// and U+2028/U+2029 become `\uXXXX` escapes. They occur only inside JSON strings, where the
/// escape means the same character, so the text still parses to the same value.
fn escape_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod browser;
#[cfg(test)]
mod tests;

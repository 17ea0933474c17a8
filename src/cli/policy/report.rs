//! The page `segward policy report` writes (PRODUCT.md §9): one self-contained HTML file with
//! the segment graph grouped by the boundary label, an edge per allowed reach, a search box that
//! highlights an identity's or segment's blast radius and its callers, and the lint findings.
//! Inline CSS and JS from one asset (`report/report.html`); nothing is fetched. The data goes in
//! as JSON in a `<script type="application/json">` block, escaped so that hostile policy text
//! cannot close it. Takes the reach edges as computed elsewhere; it only renders them.

use std::collections::BTreeMap;

use serde::Serialize;

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

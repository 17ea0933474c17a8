//! The data of `policy report` (docs/blast-radius.md): the segments, one node per identity class
//! (grouped by the boundary label's value), one edge per allowed reach as `policy reach
//! --from '*' --to '*'` computes it, and the lint findings. Pure: the CLI renders it as the
//! self-contained HTML page.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::lint::{self, LintOptions};
use super::reach::{self, Methods, ReachError, Selector, UNSEGMENTED};
use crate::policy::compiled::CompiledPolicy;
use crate::policy::pattern::PathPattern;

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

/// The report of `compiled`: its segments, every identity class that has an edge or is one
/// segment, the complete reach (`policy reach --from '*' --to '*'`), and the lint findings
/// with `boundary_label` as the segmentation boundary.
///
/// # Errors
/// [`ReachError`] when the identity patterns overlap beyond the reach walk's bound.
pub fn build(
    compiled: &CompiledPolicy,
    generated_from: &str,
    boundary_label: &str,
) -> Result<ReportData, ReachError> {
    let reach = reach::reach(compiled, ("*", &Selector::Any), ("*", &Selector::Any))?;
    // Every identity class is a node (a segment whose identities are all in other segments
    // too has none of its own), then the folded `*` destination if an edge names it.
    let mut nodes = Nodes::new(compiled, boundary_label);
    for class in reach::identity_classes(compiled)? {
        let name = if class.is_empty() {
            UNSEGMENTED.to_owned()
        } else {
            class.join("+")
        };
        nodes.id(&name, &class);
    }
    let edges = reach
        .edges
        .iter()
        .map(|e| Edge::of(e, &mut nodes))
        .collect();
    let options = LintOptions {
        boundary_label: boundary_label.to_owned(),
        ..LintOptions::default()
    };
    let findings = lint::lint_with_reach(compiled, &options, Some(&reach));
    Ok(ReportData {
        policy_version: compiled.version().to_owned(),
        boundary_label: boundary_label.to_owned(),
        generated_from: generated_from.to_owned(),
        segments: compiled.segments().iter().map(SegmentInfo::of).collect(),
        nodes: nodes.list,
        edges,
        findings: findings.into_iter().map(Finding::of).collect(),
    })
}

impl Finding {
    fn of(lint: lint::Lint) -> Self {
        Self {
            kind: lint.kind.to_owned(),
            at: lint.at,
            message: lint.message,
        }
    }
}

impl SegmentInfo {
    fn of(segment: &crate::policy::compiled::Segment) -> Self {
        Self {
            name: segment.name.clone(),
            identities: segment.identities.iter().map(ToString::to_string).collect(),
            labels: segment.labels.clone(),
        }
    }
}

/// The nodes made so far, each made once, by name.
struct Nodes<'p> {
    compiled: &'p CompiledPolicy,
    boundary_label: &'p str,
    list: Vec<Node>,
    index: BTreeMap<String, usize>,
}

impl<'p> Nodes<'p> {
    fn new(compiled: &'p CompiledPolicy, boundary_label: &'p str) -> Self {
        Self {
            compiled,
            boundary_label,
            list: Vec::new(),
            index: BTreeMap::new(),
        }
    }

    /// The node of the class `name` (segments `names`), made on first use.
    fn id(&mut self, name: &str, names: &[String]) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let id = self.list.len();
        self.list.push(Node {
            id,
            name: name.to_owned(),
            segments: names.to_vec(),
            group: self.group_of(names),
        });
        self.index.insert(name.to_owned(), id);
        id
    }

    /// The boundary label's values of these segments, `+`-joined, or `(none)`.
    fn group_of(&self, names: &[String]) -> String {
        let segments = self.compiled.segments();
        let mut values: Vec<&str> = names
            .iter()
            .filter_map(|n| self.compiled.segment_id(n))
            .filter_map(|s| segments[s as usize].labels.get(self.boundary_label))
            .map(String::as_str)
            .collect();
        values.sort_unstable();
        values.dedup();
        if values.is_empty() {
            "(none)".to_owned()
        } else {
            values.join("+")
        }
    }
}

impl Edge {
    /// A reach edge as the page draws it, between the nodes of its parties.
    fn of(e: &reach::Edge, nodes: &mut Nodes<'_>) -> Self {
        let (methods, except_methods) = match &e.methods {
            Methods::Only(list) => (list.clone(), Vec::new()),
            Methods::AllBut(list) => (vec!["*".to_owned()], list.clone()),
        };
        let texts = |ps: &[Arc<PathPattern>]| -> Vec<String> {
            ps.iter().map(|p| p.as_str().to_owned()).collect()
        };
        Self {
            source: nodes.id(&e.source.name, &e.source.segments),
            destination: nodes.id(&e.destination.name, &e.destination.segments),
            methods,
            except_methods,
            paths: texts(&e.paths),
            except: texts(&e.except),
            allow_rules: e.allow_rules.clone(),
            deny_rules: e.deny_rules.clone(),
            dry_run_rules: e.dry_run_rules.clone(),
        }
    }
}

//! `policy diff` (docs/blast-radius.md): the blast-radius effect of a policy change — which pairs
//! of identity classes gained reach, lost it, or had it widened or narrowed — computed from
//! the two policies' complete reach answers, exactly: an edge widened when some request is
//! covered by the new edges of the pair and not by the old ones. Pairs are matched by their
//! party names (segment names), so renaming a segment reads as one pair removed, one added.
//! PURE: no I/O.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::reach::{Edge, Methods, Reach};
use super::region;
use crate::policy::pattern::PathPattern;

mod text;

pub use text::{Layout, change_line, changes_text};

/// What happened to the reach between one pair of classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Nothing was reachable before.
    Added,
    /// Nothing is reachable now.
    Removed,
    /// Some request is allowed now that was not, and none lost.
    Widened,
    /// Some request is refused now that was allowed, and none gained.
    Narrowed,
    /// Both: some requests gained, others lost.
    Changed,
}

impl Change {
    /// `added`, `removed`, `widened`, `narrowed`, `changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Widened => "widened",
            Self::Narrowed => "narrowed",
            Self::Changed => "changed",
        }
    }

    /// Whether some request is allowed now that was not.
    pub fn grows(self) -> bool {
        matches!(self, Self::Added | Self::Widened | Self::Changed)
    }
}

/// One pair whose reach changed, with its edges before and after.
#[derive(Debug, Clone)]
pub struct PairChange {
    /// What happened.
    pub change: Change,
    /// The source class's name.
    pub source: String,
    /// The destination class's name.
    pub destination: String,
    /// The pair's edges under the old policy.
    pub old: Vec<Edge>,
    /// The pair's edges under the new policy.
    pub new: Vec<Edge>,
}

/// The JSON shape of `policy diff --json` and `policy contain --json`: `{change, destination,
/// new, old, source}` (keys sorted, as serde_json writes a map), `old`/`new` as edges of
/// `policy reach --json`.
impl Serialize for PairChange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("change", self.change.as_str())?;
        map.serialize_entry("destination", &self.destination)?;
        map.serialize_entry("new", &self.new)?;
        map.serialize_entry("old", &self.old)?;
        map.serialize_entry("source", &self.source)?;
        map.end()
    }
}

/// Every pair whose reach changed, sorted by source and destination.
#[derive(Debug, Clone)]
pub struct Diff {
    /// The old policy's version.
    pub old_version: String,
    /// The new policy's version.
    pub new_version: String,
    /// The changed pairs.
    pub changes: Vec<PairChange>,
}

impl Diff {
    /// Whether any reach grew (`--fail-on-widen`).
    pub fn grows(&self) -> bool {
        self.changes.iter().any(|c| c.change.grows())
    }

    /// How many pairs changed in this way.
    pub fn count(&self, change: Change) -> usize {
        self.changes.iter().filter(|c| c.change == change).count()
    }
}

/// Compares two complete reach answers (`--from '*' --to '*'` of each policy).
pub fn diff(old: &Reach, new: &Reach) -> Diff {
    type Pairs<'a> = BTreeMap<(&'a str, &'a str), (Vec<&'a Edge>, Vec<&'a Edge>)>;
    let mut pairs: Pairs<'_> = BTreeMap::new();
    for e in &old.edges {
        let key = (e.source.name.as_str(), e.destination.name.as_str());
        pairs.entry(key).or_default().0.push(e);
    }
    for e in &new.edges {
        let key = (e.source.name.as_str(), e.destination.name.as_str());
        pairs.entry(key).or_default().1.push(e);
    }
    let changes = pairs
        .into_iter()
        .filter_map(|((source, destination), (before, after))| {
            let change = match (before.is_empty(), after.is_empty()) {
                (true, _) => Change::Added,
                (_, true) => Change::Removed,
                _ => match (!contains(&before, &after), !contains(&after, &before)) {
                    (false, false) => return None,
                    (true, false) => Change::Widened,
                    (false, true) => Change::Narrowed,
                    (true, true) => Change::Changed,
                },
            };
            Some(PairChange {
                change,
                source: source.to_owned(),
                destination: destination.to_owned(),
                old: before.into_iter().cloned().collect(),
                new: after.into_iter().cloned().collect(),
            })
        })
        .collect();
    Diff {
        old_version: old.policy_version.clone(),
        new_version: new.policy_version.clone(),
        changes,
    }
}

/// Whether every request `inner` covers is covered by `outer` (edges of one pair, whose
/// method groups are disjoint on each side).
fn contains(outer: &[&Edge], inner: &[&Edge]) -> bool {
    let mut named: Vec<&str> = outer
        .iter()
        .chain(inner)
        .flat_map(|e| match &e.methods {
            Methods::Only(l) | Methods::AllBut(l) => l.iter().map(String::as_str),
        })
        .collect();
    named.sort_unstable();
    named.dedup();
    named.into_iter().map(Some).chain([None]).all(|method| {
        match (for_method(inner, method), for_method(outer, method)) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(i), Some(o)) => paths_contain(o, i),
        }
    })
}

/// The edge of a pair for requests of `method` (`None`: a method no edge names).
fn for_method<'e>(edges: &[&'e Edge], method: Option<&str>) -> Option<&'e Edge> {
    edges.iter().copied().find(|e| match (method, &e.methods) {
        (Some(m), methods) => methods.contains(m),
        (None, Methods::AllBut(_)) => true,
        (None, Methods::Only(_)) => false,
    })
}

/// Path patterns by reference.
fn refs(ps: &[std::sync::Arc<PathPattern>]) -> Vec<&PathPattern> {
    ps.iter().map(|p| &**p).collect()
}

/// `inner.paths − inner.except ⊆ outer.paths − outer.except`, pattern by pattern: each
/// inner pattern leaves nothing outside the outer patterns, and nothing of it meets an outer
/// carve-out.
fn paths_contain(outer: &Edge, inner: &Edge) -> bool {
    let inner_except = refs(&inner.except);
    let mut beyond = inner_except.clone();
    beyond.extend(refs(&outer.paths));
    inner.paths.iter().all(|a| {
        !region::exists(&[a], &beyond)
            && outer
                .except
                .iter()
                .all(|e| !region::exists(&[&**a, &**e], &inner_except))
    })
}

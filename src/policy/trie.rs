//! `IdentityIndex`: identity patterns in a per-trust-domain segment trie, so classifying a
//! SPIFFE ID costs one hash lookup per path segment, whatever the number of segments
//! defined (docs/policy-language.md identity patterns; §7 decision figures).

use rustc_hash::{FxHashMap, FxHashSet};

use super::pattern::IdentityPattern;
use crate::identity::SpiffeId;

/// Maps identity patterns to values (segment ids, revoked entries).
#[derive(Debug, Default)]
pub struct IdentityIndex {
    domains: FxHashMap<Box<str>, Node>,
}

/// One path segment's node. Kept small (48 bytes): most nodes of a fleet's trie are leaves,
/// one per exactly named ID, stored inline in their parent's table; a leaf has no table of
/// children and one value.
#[derive(Debug, Default)]
struct Node {
    /// Literal segment → child; `None` until the first child.
    children: Option<Box<Children>>,
    star: Option<Box<Node>>,
    /// Values of patterns that end exactly here.
    exact: Box<[u32]>,
    /// Values of patterns ending in `**` here: this node and everything below.
    below: Box<[u32]>,
}

type Children = FxHashMap<Box<str>, Node>;

impl IdentityIndex {
    /// Adds `pattern` with `value`; a value may be added under several patterns.
    pub fn insert(&mut self, pattern: &IdentityPattern, value: u32) {
        let td = pattern.trust_domain();
        let (path, globstar) = (pattern.path(), pattern.globstar());
        if let Some(root) = self.domains.get_mut(td) {
            return root.insert(path, globstar, value);
        }
        let root = self.domains.entry(td.into()).or_default();
        root.insert(path, globstar, value);
    }

    /// Calls `found` with the value of every pattern matching `id` (a value may repeat).
    pub fn lookup(&self, id: &SpiffeId, found: &mut impl FnMut(u32)) {
        if let Some(root) = self.domains.get(id.trust_domain()) {
            walk(root, id.path(), found);
        }
    }

    /// Calls `found` with the value of every pattern that [overlaps](IdentityPattern::overlaps)
    /// `pattern` (a value may repeat). For an exact pattern this is [`Self::lookup`]; a
    /// wildcard one visits only the branches it can match.
    pub fn overlapping(&self, pattern: &IdentityPattern, found: &mut impl FnMut(u32)) {
        if let Some(root) = self.domains.get(pattern.trust_domain()) {
            walk_overlapping(root, pattern.path(), pattern.globstar(), found);
        }
    }
}

impl Node {
    /// The child for the literal `segment`.
    fn child(&self, segment: &str) -> Option<&Node> {
        self.children.as_ref()?.get(segment)
    }

    /// Every literal child.
    fn child_nodes(&self) -> impl Iterator<Item = &Node> {
        self.children.iter().flat_map(|c| c.values())
    }

    /// Files `value` under the pattern path `rest` (`/seg/*/seg`, then `**` when `globstar`)
    /// below this node (one call per segment: a pattern has at most ~1,000, its text being
    /// ≤ 2,048 bytes). A child's key is allocated only when the child is new: most segments
    /// of a fleet's IDs (`ns`, the namespace, `sa`) are shared by thousands of patterns.
    fn insert(&mut self, rest: &str, globstar: bool, value: u32) {
        let Some((first, rest)) = split_segment(rest) else {
            let values = if globstar {
                &mut self.below
            } else {
                &mut self.exact
            };
            if !values.contains(&value) {
                let mut grown = std::mem::take(values).into_vec();
                grown.push(value);
                *values = grown.into_boxed_slice();
            }
            return;
        };
        let child = if first == "*" {
            self.star.get_or_insert_with(Box::default)
        } else {
            let children = self.children.get_or_insert_with(Box::default);
            if let Some(child) = children.get_mut(first) {
                return child.insert(rest, globstar, value);
            }
            children.entry(first.into()).or_default()
        };
        child.insert(rest, globstar, value);
    }
}

/// The first segment of `rest` (empty or `/seg(/seg)*`) and what follows it.
fn split_segment(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.strip_prefix('/')?;
    let end = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
    Some(rest.split_at(end))
}

/// More walk states than this and [`IdentityIndex::classes`] gives up rather than run on: a
/// policy needs tens of thousands of overlapping `*` patterns to get near it.
pub const MAX_CLASS_STATES: usize = 4_000_000;

/// The class walk went over [`MAX_CLASS_STATES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooComplex;

impl IdentityIndex {
    /// Trust domains with at least one pattern, sorted.
    pub fn trust_domains(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.domains.keys().map(|d| &**d).collect();
        out.sort_unstable();
        out
    }

    /// Every distinct set of values that some SPIFFE ID of `trust_domain` with a non-empty
    /// path can match — restricted, when `within` is given, to IDs that also match one of
    /// `within`'s patterns (its values are ignored). Each set is sorted and de-duplicated.
    ///
    /// Computed on the tries, never by listing identities: the walk follows, level by level,
    /// every literal some pattern names there plus one "fresh" segment that no pattern names
    /// (only `*` matches it), so each distinct combination of matching patterns is met.
    ///
    /// # Errors
    /// [`TooComplex`] after [`MAX_CLASS_STATES`] walk states.
    pub fn classes(
        &self,
        trust_domain: &str,
        within: Option<&IdentityIndex>,
    ) -> Result<Vec<Vec<u32>>, TooComplex> {
        let query_root = match within {
            Some(q) => match q.domains.get(trust_domain) {
                Some(root) => Some(root),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let Some(root) = self.domains.get(trust_domain) else {
            // No pattern of the policy in this trust domain: its IDs match nothing.
            return Ok(vec![Vec::new()]);
        };
        let mut walk = ClassWalk {
            restricted: query_root.is_some(),
            seen: FxHashSet::default(),
            out: FxHashSet::default(),
        };
        let start = State {
            policy: vec![root],
            query: query_root.into_iter().collect(),
            values: root.below.to_vec(),
            query_hit: query_root.is_some_and(|q| !q.below.is_empty()),
        };
        walk.expand(&start)?;
        let mut out: Vec<Vec<u32>> = walk.out.into_iter().collect();
        out.sort_unstable();
        Ok(out)
    }
}

/// Where the class walk stands after some path segments: the policy's and the query's trie
/// nodes reached, the values of `**` patterns passed, and whether a query `**` was passed.
struct State<'a> {
    policy: Vec<&'a Node>,
    query: Vec<&'a Node>,
    values: Vec<u32>,
    query_hit: bool,
}

/// A walk state as a hashable key: node addresses (the tries outlive the walk), values, hit.
type StateKey = (Vec<*const Node>, Vec<*const Node>, Vec<u32>, bool);

struct ClassWalk {
    restricted: bool,
    seen: FxHashSet<StateKey>,
    out: FxHashSet<Vec<u32>>,
}

impl ClassWalk {
    /// Records the classes of IDs ending below `state` (at least one more segment).
    fn expand<'a>(&mut self, state: &State<'a>) -> Result<(), TooComplex> {
        let mut literals: Vec<&'a str> = state
            .policy
            .iter()
            .chain(&state.query)
            .flat_map(|n| n.children.iter().flat_map(|c| c.keys().map(|k| &**k)))
            .collect();
        literals.sort_unstable();
        literals.dedup();
        for next in literals.into_iter().map(Some).chain([None]) {
            let step = |nodes: &[&'a Node]| {
                let mut out: Vec<&'a Node> = Vec::new();
                for n in nodes {
                    if let Some(child) = next.and_then(|l| n.child(l)) {
                        out.push(child);
                    }
                    if let Some(star) = &n.star {
                        out.push(star);
                    }
                }
                out.sort_unstable_by_key(|n| *n as *const Node);
                out.dedup_by_key(|n| *n as *const Node);
                out
            };
            let (policy, query) = (step(&state.policy), step(&state.query));
            let mut values = state.values.clone();
            policy.iter().for_each(|n| values.extend(n.below.iter()));
            values.sort_unstable();
            values.dedup();
            let query_hit = state.query_hit || query.iter().any(|n| !n.below.is_empty());
            self.visit(State {
                policy,
                query,
                values,
                query_hit,
            })?;
        }
        Ok(())
    }

    /// An ID may end at `state` (one class) or go on (more classes, found by `expand`).
    fn visit<'a>(&mut self, state: State<'a>) -> Result<(), TooComplex> {
        let ptrs = |nodes: &[&Node]| nodes.iter().map(|n| *n as *const Node).collect();
        let key = (
            ptrs(&state.policy),
            ptrs(&state.query),
            state.values.clone(),
            state.query_hit,
        );
        if !self.seen.insert(key) {
            return Ok(());
        }
        if self.seen.len() > MAX_CLASS_STATES {
            return Err(TooComplex);
        }
        let query_alive = state.query_hit || !state.query.is_empty();
        if self.restricted && !query_alive {
            return Ok(());
        }
        let query_ends = state.query_hit || state.query.iter().any(|n| !n.exact.is_empty());
        if !self.restricted || query_ends {
            let mut here = state.values.clone();
            state
                .policy
                .iter()
                .for_each(|n| here.extend(n.exact.iter()));
            here.sort_unstable();
            here.dedup();
            self.out.insert(here);
        }
        if state.policy.is_empty() {
            // No policy pattern continues: every longer ID has exactly `values`, and one
            // exists that the query matches (a live query node always leads to a pattern end).
            if self.restricted && !state.query.is_empty() {
                self.out.insert(state.values);
            }
            return Ok(());
        }
        self.expand(&state)
    }
}

/// `rest` is the part of the path not yet consumed: empty or `/seg(/seg)*`.
fn walk(node: &Node, rest: &str, found: &mut impl FnMut(u32)) {
    node.below.iter().for_each(|&v| found(v));
    let Some((segment, tail)) = split_segment(rest) else {
        node.exact.iter().for_each(|&v| found(v));
        return;
    };
    if let Some(child) = node.child(segment) {
        walk(child, tail, found);
    }
    if let Some(star) = &node.star {
        walk(star, tail, found);
    }
}

/// `rest` is the part of the pattern's path not yet consumed (empty or `/seg(/seg)*`, a
/// segment a literal or `*`); `globstar` is whether the pattern ends in `**`.
fn walk_overlapping(node: &Node, rest: &str, globstar: bool, found: &mut impl FnMut(u32)) {
    // A stored `**` here covers every ID the rest of the pattern can name.
    node.below.iter().for_each(|&v| found(v));
    let Some((first, tail)) = split_segment(rest) else {
        node.exact.iter().for_each(|&v| found(v));
        if globstar {
            node.child_nodes().for_each(|c| every_value(c, found));
            node.star.iter().for_each(|c| every_value(c, found));
        }
        return;
    };
    if first == "*" {
        node.child_nodes()
            .for_each(|c| walk_overlapping(c, tail, globstar, found));
    } else if let Some(child) = node.child(first) {
        walk_overlapping(child, tail, globstar, found);
    }
    if let Some(star) = &node.star {
        walk_overlapping(star, tail, globstar, found);
    }
}

/// Every value stored at `node` or below it.
fn every_value(node: &Node, found: &mut impl FnMut(u32)) {
    node.below
        .iter()
        .chain(node.exact.iter())
        .for_each(|&v| found(v));
    node.child_nodes().for_each(|c| every_value(c, found));
    node.star.iter().for_each(|c| every_value(c, found));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_stays_small_as_every_exactly_named_id_is_one() {
        assert!(
            std::mem::size_of::<Node>() <= 48,
            "{}",
            std::mem::size_of::<Node>()
        );
    }

    fn index(patterns: &[&str]) -> IdentityIndex {
        let mut index = IdentityIndex::default();
        for (i, p) in patterns.iter().enumerate() {
            index.insert(&IdentityPattern::parse(p).unwrap(), i as u32);
        }
        index
    }

    fn matches(index: &IdentityIndex, id: &str) -> Vec<u32> {
        let mut out = Vec::new();
        index.lookup(&SpiffeId::parse(id).unwrap(), &mut |v| out.push(v));
        out.sort_unstable();
        out
    }

    #[test]
    fn exact_star_and_globstar_patterns_match_as_specified() {
        let idx = index(&[
            "spiffe://example.org/ns/prod/sa/payments",
            "spiffe://example.org/ns/staging/**",
            "spiffe://example.org/ns/prod/agent/*/read",
            "spiffe://example.org/**",
            "spiffe://other.org/ns/prod/sa/payments",
        ]);
        assert_eq!(
            matches(&idx, "spiffe://example.org/ns/prod/sa/payments"),
            [0, 3]
        );
        // `**` covers the prefix itself and everything below it.
        assert_eq!(matches(&idx, "spiffe://example.org/ns/staging"), [1, 3]);
        assert_eq!(
            matches(&idx, "spiffe://example.org/ns/staging/ci/runner"),
            [1, 3]
        );
        assert_eq!(matches(&idx, "spiffe://example.org/ns/stagingx"), [3]);
        // `*` is exactly one segment.
        assert_eq!(
            matches(&idx, "spiffe://example.org/ns/prod/agent/a1/read"),
            [2, 3]
        );
        assert_eq!(
            matches(&idx, "spiffe://example.org/ns/prod/agent/a/b/read"),
            [3]
        );
        assert_eq!(
            matches(&idx, "spiffe://example.org/ns/prod/agent/read"),
            [3]
        );
        // The trust domain is literal.
        assert_eq!(matches(&idx, "spiffe://other.org/ns/prod/sa/payments"), [4]);
        assert_eq!(
            matches(&idx, "spiffe://evil.org/ns/prod/sa/payments"),
            Vec::<u32>::new()
        );
        assert_eq!(
            matches(&idx, "spiffe://example.org.evil/ns/prod/sa/payments"),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn overlapping_finds_exactly_the_patterns_that_overlap() {
        let patterns = [
            "spiffe://t.org/sa/api",
            "spiffe://t.org/sa/*",
            "spiffe://t.org/sa/**",
            "spiffe://t.org/*/api/v1",
            "spiffe://t.org/ns/x/**",
            "spiffe://t.org/sa",
            "spiffe://t.org/**",
            "spiffe://u.org/sa/api",
        ];
        let idx = index(&patterns);
        let probes = patterns.iter().chain(&[
            "spiffe://t.org/*/*/**",
            "spiffe://t.org/ns/*",
            "spiffe://t.org/zz",
        ]);
        for probe in probes {
            let probe = IdentityPattern::parse(probe).unwrap();
            let mut got = Vec::new();
            idx.overlapping(&probe, &mut |v| got.push(v));
            got.sort_unstable();
            got.dedup();
            // The reference: the pure pairwise test.
            let want: Vec<u32> = (0..patterns.len() as u32)
                .filter(|&i| {
                    IdentityPattern::parse(patterns[i as usize])
                        .unwrap()
                        .overlaps(&probe)
                })
                .collect();
            assert_eq!(got, want, "{probe}");
        }
    }

    #[test]
    fn exact_patterns_do_not_match_longer_or_shorter_ids() {
        let idx = index(&["spiffe://example.org/a/b"]);
        assert_eq!(matches(&idx, "spiffe://example.org/a/b"), [0]);
        assert!(matches(&idx, "spiffe://example.org/a").is_empty());
        assert!(matches(&idx, "spiffe://example.org/a/b/c").is_empty());
        assert!(matches(&idx, "spiffe://example.org/a/B").is_empty());
    }
}

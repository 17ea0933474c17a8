//! `IdentityIndex`: identity patterns in a per-trust-domain segment trie, so classifying a
//! SPIFFE ID costs one hash lookup per path segment, whatever the number of segments
//! defined (PRODUCT.md §3 identity patterns; §7 decision figures).

use rustc_hash::FxHashMap;

use super::pattern::{IdentityPattern, PatternSegment};
use crate::identity::SpiffeId;

/// Maps identity patterns to values (segment ids, revoked entries).
#[derive(Debug, Default)]
pub struct IdentityIndex {
    domains: FxHashMap<Box<str>, Node>,
}

#[derive(Debug, Default)]
struct Node {
    children: FxHashMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    /// Values of patterns that end exactly here.
    exact: Vec<u32>,
    /// Values of patterns ending in `**` here: this node and everything below.
    below: Vec<u32>,
}

impl IdentityIndex {
    /// Adds `pattern` with `value`; a value may be added under several patterns.
    pub fn insert(&mut self, pattern: &IdentityPattern, value: u32) {
        let mut node = self
            .domains
            .entry(pattern.trust_domain.as_str().into())
            .or_default();
        for segment in &pattern.segments {
            node = match segment {
                PatternSegment::Literal(lit) => {
                    node.children.entry(lit.as_str().into()).or_default()
                }
                PatternSegment::Star => node.star.get_or_insert_with(Box::default),
            };
        }
        let values = if pattern.globstar {
            &mut node.below
        } else {
            &mut node.exact
        };
        if !values.contains(&value) {
            values.push(value);
        }
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
        if let Some(root) = self.domains.get(pattern.trust_domain.as_str()) {
            walk_overlapping(root, &pattern.segments, pattern.globstar, found);
        }
    }
}

/// `rest` is the part of the path not yet consumed: empty or `/seg(/seg)*`.
fn walk(node: &Node, rest: &str, found: &mut impl FnMut(u32)) {
    node.below.iter().for_each(|&v| found(v));
    let Some(rest) = rest.strip_prefix('/') else {
        node.exact.iter().for_each(|&v| found(v));
        return;
    };
    let end = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
    let (segment, tail) = rest.split_at(end);
    if let Some(child) = node.children.get(segment) {
        walk(child, tail, found);
    }
    if let Some(star) = &node.star {
        walk(star, tail, found);
    }
}

/// `rest` is the part of the pattern not yet consumed; `globstar` is whether it ends in `**`.
fn walk_overlapping(
    node: &Node,
    rest: &[PatternSegment],
    globstar: bool,
    found: &mut impl FnMut(u32),
) {
    // A stored `**` here covers every ID the rest of the pattern can name.
    node.below.iter().for_each(|&v| found(v));
    let Some((first, tail)) = rest.split_first() else {
        node.exact.iter().for_each(|&v| found(v));
        if globstar {
            node.children.values().for_each(|c| every_value(c, found));
            node.star.iter().for_each(|c| every_value(c, found));
        }
        return;
    };
    match first {
        PatternSegment::Literal(lit) => {
            if let Some(child) = node.children.get(lit.as_str()) {
                walk_overlapping(child, tail, globstar, found);
            }
        }
        PatternSegment::Star => node
            .children
            .values()
            .for_each(|c| walk_overlapping(c, tail, globstar, found)),
    }
    if let Some(star) = &node.star {
        walk_overlapping(star, tail, globstar, found);
    }
}

/// Every value stored at `node` or below it.
fn every_value(node: &Node, found: &mut impl FnMut(u32)) {
    node.below.iter().chain(&node.exact).for_each(|&v| found(v));
    node.children.values().for_each(|c| every_value(c, found));
    node.star.iter().for_each(|c| every_value(c, found));
}

#[cfg(test)]
mod tests {
    use super::*;

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

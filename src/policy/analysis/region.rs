//! Exact questions about sets of request paths written as path patterns (docs/policy-language.md, §9):
//! "is some path matched by all of these and by none of those?". Reach uses it to drop an
//! allowed pattern that deny rules carve out entirely, to keep only the carve-outs that touch
//! what is allowed, and `diff` to tell whether one edge's paths contain another's.
//!
//! Exact, not sampled: a normalized path is a list of non-empty segments, and a pattern only
//! compares a segment with its own literals or accepts any (`*`, `**`). So it suffices to
//! try, at each depth, every literal some pattern names there plus one segment none names.

use crate::policy::pattern::{PathPattern, PatternSegment};

/// How far one pattern got along the path being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Matched this many of its segments so far.
    At(usize),
    /// Its trailing `**` was reached: it matches this path and every longer one.
    Below,
    /// It can no longer match.
    Dead,
}

/// Whether some normalized path is matched by every pattern of `inside` (at least one) and
/// by no pattern of `outside`.
pub fn exists(inside: &[&PathPattern], outside: &[&PathPattern]) -> bool {
    if inside.is_empty() {
        return false;
    }
    let patterns: Vec<&PathPattern> = inside.iter().chain(outside).copied().collect();
    let start: Vec<Progress> = patterns.iter().map(|p| settle(p, 0)).collect();
    search(&patterns, inside.len(), &start)
}

/// Whether some path is matched by `pattern` and by none of `outside`.
pub fn remains(pattern: &PathPattern, outside: &[&PathPattern]) -> bool {
    exists(&[pattern], outside)
}

/// Whether `a` and `b` match some path in common.
pub fn overlaps(a: &PathPattern, b: &PathPattern) -> bool {
    exists(&[a, b], &[])
}

/// `At(n)` becomes `Below` once a globstar pattern has matched all its segments.
fn settle(pattern: &PathPattern, matched: usize) -> Progress {
    if pattern.globstar && matched == pattern.segments.len() {
        Progress::Below
    } else {
        Progress::At(matched)
    }
}

/// Depth-first over the paths that extend the current one by zero or more segments.
fn search(patterns: &[&PathPattern], inside: usize, state: &[Progress]) -> bool {
    if state[..inside].contains(&Progress::Dead) {
        return false;
    }
    let ends_here = |(p, s): (&&PathPattern, &Progress)| match s {
        Progress::Below => true,
        Progress::At(n) => *n == p.segments.len(),
        Progress::Dead => false,
    };
    let mut matched = patterns.iter().zip(state).map(ends_here);
    let inside_all = matched.by_ref().take(inside).all(|m| m);
    if inside_all && !matched.any(|m| m) {
        return true;
    }
    // Once no pattern can change its answer by a longer path, longer paths add nothing.
    let pending = |s: &Progress| matches!(s, Progress::At(_));
    if !state.iter().any(pending) {
        return false;
    }
    let mut literals: Vec<&str> = patterns
        .iter()
        .zip(state)
        .filter_map(|(p, s)| match (s, p.segments.get(at(s)?)) {
            (_, Some(PatternSegment::Literal(l))) => Some(l.as_str()),
            _ => None,
        })
        .collect();
    literals.sort_unstable();
    literals.dedup();
    literals
        .into_iter()
        .map(Some)
        .chain([None])
        .any(|segment| search(patterns, inside, &advance(patterns, state, segment)))
}

fn at(state: &Progress) -> Option<usize> {
    match state {
        Progress::At(n) => Some(*n),
        _ => None,
    }
}

/// Every pattern's progress after one more segment: `Some(literal)`, or `None` for a segment
/// that no pattern names (only `*` takes it).
fn advance(patterns: &[&PathPattern], state: &[Progress], segment: Option<&str>) -> Vec<Progress> {
    patterns
        .iter()
        .zip(state)
        .map(|(p, s)| match *s {
            Progress::Below => Progress::Below,
            Progress::Dead => Progress::Dead,
            Progress::At(n) => match p.segments.get(n) {
                Some(PatternSegment::Star) => settle(p, n + 1),
                Some(PatternSegment::Literal(l)) if Some(l.as_str()) == segment => settle(p, n + 1),
                _ => Progress::Dead,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> PathPattern {
        PathPattern::parse(text).unwrap()
    }

    fn exists_t(inside: &[&str], outside: &[&str]) -> bool {
        let (i, o): (Vec<_>, Vec<_>) = (
            inside.iter().map(|t| p(t)).collect(),
            outside.iter().map(|t| p(t)).collect(),
        );
        exists(&i.iter().collect::<Vec<_>>(), &o.iter().collect::<Vec<_>>())
    }

    #[test]
    fn a_pattern_carved_out_entirely_leaves_nothing() {
        assert!(!exists_t(&["/**"], &["/**"]));
        assert!(!exists_t(&["/v1/charges"], &["/v1/*"]));
        assert!(!exists_t(&["/admin/x/y"], &["/admin/**"]));
        // `/a/**` is `/a` and everything below: both carve-outs together cover it.
        assert!(!exists_t(&["/a/**"], &["/a", "/a/*/**"]));
        assert!(exists_t(&["/a/**"], &["/a/*/**"]));
        assert!(exists_t(&["/a/**"], &["/a"]));
        assert!(!exists_t(&["/a/*"], &["/a/*/**"]));
        assert!(exists_t(&["/a/*"], &["/a/x", "/a/y"]));
        assert!(exists_t(&["/"], &["/*/**"]));
        assert!(!exists_t(&["/"], &["/**"]));
    }

    #[test]
    fn overlap_needs_a_common_path() {
        assert!(overlaps(&p("/v1/**"), &p("/v1/admin/**")));
        assert!(overlaps(&p("/a/*/c"), &p("/a/b/*")));
        assert!(!overlaps(&p("/a/*/c"), &p("/a/b")));
        assert!(!overlaps(&p("/v1/charges"), &p("/admin/**")));
        assert!(overlaps(&p("/a/**"), &p("/a")));
        assert!(!overlaps(&p("/a/*"), &p("/a")));
        assert!(overlaps(&p("/"), &p("/**")));
        assert!(!overlaps(&p("/"), &p("/*")));
    }

    #[test]
    fn several_inside_patterns_must_all_match() {
        assert!(exists_t(&["/a/*", "/*/b"], &[]));
        assert!(!exists_t(&["/a/*", "/*/b"], &["/a/b"]));
        assert!(!exists_t(&[], &[]));
    }
}

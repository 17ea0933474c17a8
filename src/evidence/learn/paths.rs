//! Path generalization for `policy learn` (docs/least-privilege.md#learn): the trie of
//! observed paths, which positions vary (ids, UUIDs, hex, opaque tokens, [`MANY`] distinct
//! values → `*`; varying depth → `**`), and the patterns that cover them.

use std::collections::{BTreeMap, BTreeSet};

use super::MANY;
use crate::evidence::observe::Stats;
use crate::policy::pattern::PathPattern;

/// Whether a path segment names one of many things: a number, a UUID, hex, an opaque token.
pub fn id_like(segment: &str) -> bool {
    let b = segment.as_bytes();
    if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    let hex =
        b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit);
    let token = b.len() >= 16
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_alphabetic);
    uuid || hex || token
}

/// What ended at a node of the path trie.
#[derive(Debug, Default, Clone)]
pub(super) struct End {
    /// Method → its stats.
    pub(super) methods: BTreeMap<String, Stats>,
    /// Distinct observed paths.
    pub(super) distinct: usize,
    pub(super) sample: String,
}

impl End {
    fn merge(&mut self, other: End) {
        for (m, s) in other.methods {
            self.methods.entry(m).or_default().merge(&s);
        }
        self.distinct += other.distinct;
        if self.sample.is_empty() || (!other.sample.is_empty() && other.sample < self.sample) {
            self.sample = other.sample;
        }
    }
}

/// A path trie node: what ends here, literal children, and a `*` child.
#[derive(Debug, Default, Clone)]
struct Node {
    end: Option<End>,
    children: BTreeMap<String, Node>,
    star: Option<Box<Node>>,
    /// The subtree below this position collapsed into `**`.
    globstar: Option<End>,
}

impl Node {
    fn insert(&mut self, segments: &[&str], end: End) {
        match segments.split_first() {
            None => self.end.get_or_insert_with(End::default).merge(end),
            Some((first, rest)) => self
                .children
                .entry((*first).to_owned())
                .or_default()
                .insert(rest, end),
        }
    }

    fn absorb(&mut self, other: Node) {
        if let Some(e) = other.end {
            self.end.get_or_insert_with(End::default).merge(e);
        }
        for (k, child) in other.children {
            self.children.entry(k).or_default().absorb(child);
        }
        if let Some(star) = other.star {
            self.star.get_or_insert_with(Box::default).absorb(*star);
        }
        if let Some(g) = other.globstar {
            self.globstar.get_or_insert_with(End::default).merge(g);
        }
    }

    /// Everything ending in this subtree, as one.
    fn all_ends(&self) -> End {
        let mut all = End::default();
        if let Some(e) = &self.end {
            all.merge(e.clone());
        }
        if let Some(g) = &self.globstar {
            all.merge(g.clone());
        }
        for child in self.children.values() {
            all.merge(child.all_ends());
        }
        if let Some(star) = &self.star {
            all.merge(star.all_ends());
        }
        all
    }

    /// The depths (below this node) at which paths end.
    fn end_depths(&self, depth: usize, into: &mut BTreeSet<usize>) {
        if self.end.is_some() {
            into.insert(depth);
        }
        if self.globstar.is_some() {
            into.insert(depth + 1);
            into.insert(depth + 2);
        }
        for child in self.children.values() {
            child.end_depths(depth + 1, into);
        }
        if let Some(star) = &self.star {
            star.end_depths(depth + 1, into);
        }
    }

    /// Whether a variable position (`*` or `**`) lies below.
    fn varies_below(&self) -> bool {
        self.globstar.is_some()
            || self
                .children
                .values()
                .chain(self.star.as_deref())
                .any(|c| c.star.is_some() || c.globstar.is_some() || c.varies_below())
    }

    /// Generalizes this subtree in place (see the module docs).
    fn generalize(&mut self) {
        let children = std::mem::take(&mut self.children);
        let mut literal = BTreeMap::new();
        let mut star = self.star.take().map(|s| *s);
        for (k, child) in children {
            // A `*` in a segment would be read as a wildcard (or refused): not literal.
            let expressible = !k.contains('*') && PathPattern::parse(&format!("/{k}")).is_ok();
            if id_like(&k) || !expressible {
                star.get_or_insert_with(Node::default).absorb(child);
            } else {
                literal.insert(k, child);
            }
        }
        if literal.len() >= MANY {
            let all = star.get_or_insert_with(Node::default);
            for child in std::mem::take(&mut literal).into_values() {
                all.absorb(child);
            }
        }
        self.children = literal;
        for child in self.children.values_mut() {
            child.generalize();
        }
        if let Some(mut s) = star {
            s.generalize();
            let mut depths = BTreeSet::new();
            s.end_depths(0, &mut depths);
            if depths.len() > 1 && s.varies_below() {
                self.globstar
                    .get_or_insert_with(End::default)
                    .merge(s.all_ends());
            } else {
                self.star = Some(Box::new(s));
            }
        }
    }

    /// (pattern, what ended there), depth first.
    fn patterns(&self, prefix: &str, out: &mut Vec<(String, End)>) {
        if let Some(end) = &self.end {
            let pattern = if prefix.is_empty() { "/" } else { prefix };
            out.push((pattern.to_owned(), end.clone()));
        }
        if let Some(g) = &self.globstar {
            let mut all = g.clone();
            // `/a/**` also covers `/a`: fold what ended here into it.
            if let Some((pattern, end)) = out.last()
                && *pattern == if prefix.is_empty() { "/" } else { prefix }
            {
                all.merge(end.clone());
                out.pop();
            }
            out.push((format!("{prefix}/**"), all));
        }
        for (k, child) in &self.children {
            child.patterns(&format!("{prefix}/{k}"), out);
        }
        if let Some(star) = &self.star {
            star.patterns(&format!("{prefix}/*"), out);
        }
    }
}

/// The path patterns that cover `paths` (normalized request paths, each with its methods),
/// generalized as the module docs say; each with what it covers.
pub(super) fn generalize_paths(paths: Vec<(String, End)>) -> Vec<(String, End)> {
    let mut root = Node::default();
    for (path, end) in paths {
        let trimmed = crate::policy::pattern::trim_trailing_slash(&path);
        let segments: Vec<&str> = trimmed
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .collect();
        root.insert(&segments, end);
    }
    root.generalize();
    let mut out = Vec::new();
    root.patterns("", &mut out);
    out
}

/// Generalized path patterns of these observed paths (each seen once with GET): for tests
/// and the docs' examples.
pub fn patterns_of<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let ends = paths.into_iter().map(|p| {
        let mut e = End {
            distinct: 1,
            sample: p.to_owned(),
            ..End::default()
        };
        e.methods.insert("GET".into(), Stats::default());
        (p.to_owned(), e)
    });
    let mut out: Vec<String> = generalize_paths(ends.collect())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    out.sort();
    out
}

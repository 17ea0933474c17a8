//! Random policies over a small universe, as plain data (for the reference evaluator) and
//! as YAML text (for the engine), so proptest drives parse → compile → decide end to end.
//!
//! Universe: trust domains `a.org`/`b.org`; ID segments `x`, `y`, `z`, depth 1–3; segments
//! `s0`…`s5`; labels `env: prod|staging`, `tier: web|critical`; a few methods (some spelled
//! in lower or mixed case, one extension method) and paths (some raw, with dot segments,
//! escapes and `;parameters`, so normalization and the upstream spelling both matter).

use std::fmt::{self, Write as _};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use segward::path::normalize;

/// Trust domains of the universe.
pub const TRUST_DOMAINS: [&str; 2] = ["a.org", "b.org"];
/// Path segments of SPIFFE IDs.
pub const ID_SEGMENTS: [&str; 3] = ["x", "y", "z"];
/// Methods a rule may list (always upper case; `PURGE` is an extension method).
pub const RULE_METHODS: [&str; 5] = ["GET", "POST", "HEAD", "DELETE", "PURGE"];
/// Methods a request may use: `PATCH` is in no rule; `get`, `post`, `Delete` and `purge`
/// match their upper-case spellings.
pub const REQUEST_METHODS: [&str; 10] = [
    "GET", "POST", "HEAD", "DELETE", "PATCH", "PURGE", "get", "post", "Delete", "purge",
];
/// Path patterns a rule may list.
pub const PATH_PATTERNS: [&str; 7] = ["/", "/a", "/a/*", "/a/**", "/b/c", "/**", "/a:b"];
/// Request paths, before normalization: plain ones, then ones that normalization changes
/// (`//a`, `/a/./b`, `/%61/b`), then ones whose upstream spelling differs (`;parameters`,
/// escaped `;` and `:`), two of which climb above the root for the upstream (`/..;/a`).
pub const REQUEST_PATHS: [&str; 27] = [
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/a/b/c",
    "/b/c",
    "/b",
    "//a",
    "/a/./b",
    "/%61/b",
    "/a/b/../c",
    "/a;x",
    "/a;x/b",
    "/a%3Bx/b",
    "/a%3bx/",
    "/a/..;/b",
    "/a/b;p/..;/c",
    "/..;/a",
    "/%2e%2e;/b/c",
    "/b/c;v=1",
    "/b;/c",
    "/;x/a",
    "/a:b",
    "/a%3Ab",
    "/a%3ab;x",
    "/a%3B",
    "/a%25%3Bx",
];
/// Segments of composed request paths (joined with `/` behind a leading `/`); compositions
/// that normalization rejects (a raw `..` above the root) are skipped.
pub const PATH_ATOMS: [&str; 15] = [
    "a",
    "b",
    "c",
    "",
    ".",
    "..",
    "..;",
    "..;x",
    "%2E%2E%3B",
    "a;x",
    "a%3Bx",
    "c;v=1",
    "%61",
    "a:b",
    "a%3Ab",
];

/// Segments per policy: `s0`…`s5`.
pub const SEGMENTS: usize = 6;
/// At most this many rules per policy.
pub const MAX_RULES: usize = 12;

/// A SPIFFE ID of the universe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id {
    pub trust_domain: &'static str,
    pub segments: Vec<&'static str>,
}

/// One segment of an identity pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Literal(&'static str),
    Star,
}

/// An identity pattern: literal trust domain, parts, optional trailing `**`.
#[derive(Debug, Clone)]
pub struct IdPattern {
    pub trust_domain: &'static str,
    pub parts: Vec<Part>,
    pub globstar: bool,
}

/// Labels, sorted by key, each key at most once.
pub type Labels = Vec<(&'static str, &'static str)>;

/// A segment definition.
#[derive(Debug, Clone)]
pub struct SegmentSpec {
    pub name: String,
    pub identities: Vec<IdPattern>,
    pub labels: Labels,
}

/// A `from`/`to` selector.
#[derive(Debug, Clone)]
pub enum Selector {
    Segment(String),
    Any,
    Labels(Labels),
}

/// A rule definition; `dry_run` is only ever set on deny rules.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub deny: bool,
    pub dry_run: bool,
    pub from: Vec<Selector>,
    pub to: Vec<Selector>,
    pub methods: Option<Vec<&'static str>>,
    pub paths: Option<Vec<&'static str>>,
}

/// A whole policy.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    pub segments: Vec<SegmentSpec>,
    pub rules: Vec<RuleSpec>,
    pub revoked: Vec<IdPattern>,
}

/// A request, with the path as sent (normalized by the test).
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub source: Id,
    pub destination: Id,
    pub method: &'static str,
    pub path: String,
}

/// Any ID of the universe.
pub fn id() -> impl Strategy<Value = Id> {
    (
        select(&TRUST_DOMAINS[..]),
        vec(select(&ID_SEGMENTS[..]), 1..=3),
    )
        .prop_map(|(trust_domain, segments)| Id {
            trust_domain,
            segments,
        })
}

/// An exact pattern, a pattern with `*` parts, or one ending in `/**`.
pub fn id_pattern() -> impl Strategy<Value = IdPattern> {
    let literal = || select(&ID_SEGMENTS[..]).prop_map(Part::Literal);
    let part = prop_oneof![2 => literal(), 1 => Just(Part::Star)];
    let td = || select(&TRUST_DOMAINS[..]);
    prop_oneof![
        (td(), vec(literal(), 1..=3)).prop_map(|(t, p)| pattern(t, p, false)),
        (td(), vec(part.clone(), 1..=3)).prop_map(|(t, p)| pattern(t, p, false)),
        (td(), vec(part, 0..=2)).prop_map(|(t, p)| pattern(t, p, true)),
    ]
}

/// A policy of six segments, 1–12 rules (named in an order unrelated to the list order)
/// and 0–2 revoked patterns. Built without `prop_flat_map`, so failures shrink well.
pub fn policy() -> impl Strategy<Value = PolicySpec> {
    let segments = vec(segment_body(), SEGMENTS);
    let rules = vec(rule_body(), 1..=MAX_RULES);
    (
        segments,
        rules,
        permutation(MAX_RULES),
        vec(id_pattern(), 0..=2),
    )
        .prop_map(|(bodies, mut rules, keys, revoked)| {
            let segments = bodies
                .into_iter()
                .enumerate()
                .map(|(i, (identities, labels))| SegmentSpec {
                    name: format!("s{i}"),
                    identities,
                    labels,
                })
                .collect();
            // Names `r{k}` from shuffled keys: name order (`r10` < `r2`) is not list order.
            for (rule, k) in rules.iter_mut().zip(keys) {
                rule.name = format!("r{k}");
            }
            PolicySpec {
                segments,
                rules,
                revoked,
            }
        })
}

/// A shuffled `0..n`.
pub fn permutation(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<_>>()).prop_shuffle()
}

/// A request to be resolved against a policy: each party is often an instance of one of
/// the policy's identity patterns (so rules actually match), otherwise any ID.
pub fn request_draft() -> impl Strategy<Value = RequestDraft> {
    let party = || {
        let member = (any::<usize>(), vec(select(&ID_SEGMENTS[..]), 3), 0..=3usize).prop_map(
            |(pattern, fill, extra)| Party::Member {
                pattern,
                fill,
                extra,
            },
        );
        prop_oneof![1 => id().prop_map(Party::Any), 3 => member]
    };
    (
        party(),
        party(),
        select(&REQUEST_METHODS[..]),
        request_path(),
    )
        .prop_map(|(source, destination, method, path)| RequestDraft {
            source,
            destination,
            method,
            path,
        })
}

/// A raw request path that [`normalize`] accepts: one of [`REQUEST_PATHS`], or 1–3
/// [`PATH_ATOMS`] joined.
pub fn request_path() -> impl Strategy<Value = String> {
    let listed = select(&REQUEST_PATHS[..]).prop_map(str::to_owned);
    let composed = vec(select(&PATH_ATOMS[..]), 1..=3).prop_map(|atoms| {
        atoms.iter().fold(String::new(), |mut path, atom| {
            path.push('/');
            path.push_str(atom);
            path
        })
    });
    prop_oneof![3 => listed, 1 => composed]
        .prop_filter("normalize rejects the path", |p| normalize(p).is_ok())
}

/// A request whose parties may still name "an instance of pattern number n".
#[derive(Debug, Clone)]
pub struct RequestDraft {
    source: Party,
    destination: Party,
    method: &'static str,
    path: String,
}

#[derive(Debug, Clone)]
enum Party {
    Any(Id),
    /// An ID matched by pattern `pattern` (modulo their count), with `*` and `**` filled
    /// from `fill`; `extra` picks how deep a `**` reaches (the universe caps depth at 3).
    Member {
        pattern: usize,
        fill: Vec<&'static str>,
        extra: usize,
    },
}

impl RequestDraft {
    /// The concrete request against `policy`'s identity patterns (segments, then revoked).
    pub fn resolve(&self, policy: &PolicySpec) -> RequestSpec {
        let patterns: Vec<&IdPattern> = policy
            .segments
            .iter()
            .flat_map(|s| &s.identities)
            .chain(&policy.revoked)
            .collect();
        RequestSpec {
            source: self.source.resolve(&patterns),
            destination: self.destination.resolve(&patterns),
            method: self.method,
            path: self.path.clone(),
        }
    }
}

impl Party {
    fn resolve(&self, patterns: &[&IdPattern]) -> Id {
        let (index, fill, extra) = match self {
            Self::Any(id) => return id.clone(),
            Self::Member {
                pattern,
                fill,
                extra,
            } => (*pattern, fill, *extra),
        };
        let p = patterns[index % patterns.len()];
        let fixed = p.parts.len();
        let depth = if p.globstar {
            (fixed + extra % (4 - fixed)).max(1)
        } else {
            fixed
        };
        let mut segments = fill[..depth].to_vec();
        for (seg, part) in segments.iter_mut().zip(&p.parts) {
            if let Part::Literal(lit) = part {
                *seg = lit;
            }
        }
        Id {
            trust_domain: p.trust_domain,
            segments,
        }
    }
}

impl PolicySpec {
    /// The whole policy as one YAML file.
    pub fn to_yaml(&self) -> String {
        document(&self.segments, &self.rules, &self.revoked)
    }
}

/// A YAML policy file holding these parts; empty parts are left out.
pub fn document(segments: &[SegmentSpec], rules: &[RuleSpec], revoked: &[IdPattern]) -> String {
    let mut out = String::new();
    if !segments.is_empty() {
        out.push_str("segments:\n");
        for s in segments {
            let ids = quoted_list(&s.identities);
            let _ = writeln!(out, "  {}:\n    identities: {ids}", s.name);
            if !s.labels.is_empty() {
                let _ = writeln!(out, "    labels: {}", label_map(&s.labels));
            }
        }
    }
    if !rules.is_empty() {
        out.push_str("rules:\n");
        rules.iter().for_each(|r| write_rule(&mut out, r));
    }
    if !revoked.is_empty() {
        let _ = writeln!(out, "revoked: {}", quoted_list(revoked));
    }
    out
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/{}",
            self.trust_domain,
            self.segments.join("/")
        )
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}", self.trust_domain)?;
        for part in &self.parts {
            match part {
                Part::Literal(s) => write!(f, "/{s}")?,
                Part::Star => f.write_str("/*")?,
            }
        }
        if self.globstar {
            f.write_str("/**")?;
        }
        Ok(())
    }
}

impl fmt::Display for RequestSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, d, m, p) = (&self.source, &self.destination, self.method, &self.path);
        write!(f, "{s} -> {d} {m} {p}")
    }
}

fn pattern(trust_domain: &'static str, parts: Vec<Part>, globstar: bool) -> IdPattern {
    IdPattern {
        trust_domain,
        parts,
        globstar,
    }
}

fn labels() -> impl Strategy<Value = Labels> {
    let env = option::of(select(&["prod", "staging"][..]));
    let tier = option::of(select(&["web", "critical"][..]));
    (env, tier).prop_map(|(env, tier)| {
        let env = env.map(|v| ("env", v));
        let tier = tier.map(|v| ("tier", v));
        env.into_iter().chain(tier).collect()
    })
}

fn segment_body() -> impl Strategy<Value = (Vec<IdPattern>, Labels)> {
    (vec(id_pattern(), 1..=2), labels())
}

fn selector() -> impl Strategy<Value = Selector> {
    let name = (0..SEGMENTS).prop_map(|i| Selector::Segment(format!("s{i}")));
    let by_labels = labels()
        .prop_filter("a label selector is non-empty", |l| !l.is_empty())
        .prop_map(Selector::Labels);
    prop_oneof![3 => name, 1 => Just(Selector::Any), 2 => by_labels]
}

fn rule_body() -> impl Strategy<Value = RuleSpec> {
    let methods = option::of(subsequence(&RULE_METHODS[..], 1..=4));
    let paths = option::of(subsequence(&PATH_PATTERNS[..], 1..=3));
    let effect =
        prop_oneof![3 => Just((false, false)), 2 => Just((true, false)), 1 => Just((true, true))];
    let from = vec(selector(), 1..=2);
    let to = vec(selector(), 1..=2);
    (effect, from, to, methods, paths).prop_map(|((deny, dry_run), from, to, methods, paths)| {
        RuleSpec {
            name: String::new(),
            deny,
            dry_run,
            from,
            to,
            methods,
            paths,
        }
    })
}

fn write_rule(out: &mut String, r: &RuleSpec) {
    let _ = writeln!(out, "  - name: \"{}\"", r.name);
    if r.deny {
        out.push_str("    effect: deny\n");
    }
    if r.dry_run {
        out.push_str("    dry_run: true\n");
    }
    let _ = writeln!(out, "    from: {}", selectors(&r.from));
    let _ = writeln!(out, "    to: {}", selectors(&r.to));
    if let Some(methods) = &r.methods {
        let _ = writeln!(out, "    methods: [{}]", methods.join(", "));
    }
    if let Some(paths) = &r.paths {
        let _ = writeln!(out, "    paths: {}", quoted_list(paths));
    }
}

fn selectors(list: &[Selector]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|s| match s {
            Selector::Segment(name) => name.clone(),
            Selector::Any => "\"*\"".to_owned(),
            Selector::Labels(labels) => label_map(labels),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn label_map(labels: &Labels) -> String {
    let items: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{ {} }}", items.join(", "))
}

fn quoted_list<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", items.join(", "))
}

//! `policy learn` (docs/least-privilege.md#learn): allow rules that cover the observed traffic
//! that went through (`allow`, and `would-deny` of audit mode), at segment granularity, with
//! the methods seen and path patterns generalized only where the evidence says a position
//! varies:
//! - a path segment that is a number, a UUID, a hex string (8+ digits) or an opaque token
//!   (16+ letters and digits) is a variable position → `*`; so is a position with at least
//!   [`MANY`] distinct values;
//! - `**` only where depth varies: a variable position whose observed paths end at different
//!   depths below it *and* vary again further down (`/blobs/<hash>`, `/blobs/<hash>/<hash>`);
//! - everything else stays literal (`/v1/health`), so a learned rule is as narrow as its
//!   evidence.
//!
//! With a current policy, what it already allows is not learned again: the rules cover only
//! what it would refuse.
//!
//! Rules are named `learn-<from>-to-<to>[-N]`, one per (source segment, destination segment,
//! set of methods); a TCP connection seen gives a rule with neither methods nor paths
//! (`-tcp`). The source and destination are a segment of `current` (the first by name that
//! holds the identity) or, for identities in no segment, a new segment of that one ID
//! (`id-<its path>`). The YAML carries counts and first/last seen as comments,
//! and `tests:` from observed samples.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::observe::{Observations, Protocol, Stats};
use super::time;
use crate::identity::SpiffeId;
use crate::policy::CompiledPolicy;
use crate::policy::method::MethodSet;

/// Distinct literal values at one position that make it variable (`*`).
pub const MANY: usize = 16;

/// A segment the learned policy defines or reuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedSegment {
    /// Its name.
    pub name: String,
    /// Its identity patterns, as text.
    pub identities: Vec<String>,
    /// Its labels (a reused segment's).
    pub labels: BTreeMap<String, String>,
    /// Taken from the current policy (else made for one unsegmented identity).
    pub reused: bool,
}

/// One learned path pattern and its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedPath {
    /// The pattern (`/v1/charges/*`).
    pub pattern: String,
    /// Requests it covers.
    pub stats: Stats,
    /// Distinct observed paths it covers.
    pub distinct: usize,
    /// One observed path it covers.
    pub sample: String,
}

/// An observed request a `tests:` entry asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The calling identity.
    pub source: String,
    /// The identity reached.
    pub destination: String,
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
}

/// A learned allow rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRule {
    /// Deterministic name.
    pub name: String,
    /// Source segment.
    pub from: String,
    /// Destination segment.
    pub to: String,
    /// Methods seen (`None`: a TCP rule, all).
    pub methods: Option<Vec<String>>,
    /// Path patterns (`None`: a TCP rule, all).
    pub paths: Option<Vec<LearnedPath>>,
    /// Everything it covers.
    pub stats: Stats,
    /// Observed requests it must allow.
    pub samples: Vec<Sample>,
}

/// The answer of `learn`.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    /// Segments the rules use, by name.
    pub segments: Vec<LearnedSegment>,
    /// The rules, by name.
    pub rules: Vec<LearnedRule>,
    /// Requests that went through, covered by the rules.
    pub covered: u64,
    /// Observations not learned from: a source or destination that is not a SPIFFE ID, a
    /// method that is not a token, a path refused before any rule (`ambiguous-path`).
    pub unusable: u64,
    /// Some lines were sampled: counts are lower bounds.
    pub sampled: bool,
    /// Requests that went through and the current policy already allows: not learned.
    pub already_allowed: u64,
}

/// A method as a rule writes it, if it is a token.
fn rule_method(method: &str) -> Option<String> {
    let upper = method.to_ascii_uppercase();
    MethodSet::default().insert(&upper).ok().map(|()| upper)
}

/// other characters as `-`, at most 100 characters (a rule name of two stays under 253); a
/// clash gets `-2`, `-3`, ….
fn id_segment_name(id: &str) -> String {
    let body = id.strip_prefix("spiffe://").unwrap_or(id);
    let body = match body.split_once('/') {
        Some((_, path)) if !path.is_empty() => path,
        _ => body,
    };
    let mut name: String = format!("id-{body}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(100);
    name
}

/// Where each identity belongs in the learned policy.
struct Classes<'p> {
    current: Option<&'p CompiledPolicy>,
    by_id: BTreeMap<String, Option<String>>,
    made: BTreeMap<String, LearnedSegment>,
    taken: BTreeSet<String>,
}

impl Classes<'_> {
    fn of(&mut self, id: &str) -> Option<String> {
        if let Some(known) = self.by_id.get(id) {
            return known.clone();
        }
        // A workload's ID has a path (an X509-SVID leaf's must): a bare trust domain in a
        // line is no party a rule could name, so nothing is learned from it.
        let workload = SpiffeId::parse(id).ok().filter(|p| !p.path().is_empty());
        let class = workload.map(|parsed| {
            let reused = self
                .current
                .and_then(|p| p.segment_names(&parsed).first().map(|n| (*n).to_owned()));
            reused.unwrap_or_else(|| {
                let base = id_segment_name(id);
                let mut name = base.clone();
                let mut n = 2;
                while self.taken.contains(&name) {
                    name = format!("{base}-{n}");
                    n += 1;
                }
                self.taken.insert(name.clone());
                self.made.insert(
                    name.clone(),
                    LearnedSegment {
                        name: name.clone(),
                        identities: vec![id.to_owned()],
                        labels: BTreeMap::new(),
                        reused: false,
                    },
                );
                name
            })
        });
        self.by_id.insert(id.to_owned(), class.clone());
        class
    }
}

/// Learns allow rules from `observations`; segments of `current` are reused when given.
pub fn learn(observations: &Observations, current: Option<&CompiledPolicy>) -> Learned {
    let mut classes = Classes {
        current,
        by_id: BTreeMap::new(),
        made: BTreeMap::new(),
        taken: current
            .map(|p| p.segments().iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default(),
    };
    let mut out = Learned {
        sampled: observations.sampled,
        ..Learned::default()
    };
    // (from, to) → path → End; and the pairs with TCP connections.
    let mut http: BTreeMap<(String, String), BTreeMap<String, End>> = BTreeMap::new();
    let mut tcp: BTreeMap<(String, String), (Stats, Sample)> = BTreeMap::new();
    // (from, to, method, path) → an observed (source, destination) pair, for tests.
    let mut parties: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for (key, stats) in observations.sorted() {
        if !key.went_through() {
            continue;
        }
        // A path refused before any rule (audit mode let it through): no rule can allow it.
        let ambiguous = key.protocol == Protocol::Http
            && crate::path::normalize(key.path)
                .is_ok_and(|p| matches!(crate::path::upstream_variant(p.as_str()), Some(Err(_))));
        if ambiguous || key.reason == Some("ambiguous-path") {
            out.unusable += stats.count;
            continue;
        }
        // What the current policy already allows needs no new rule.
        if let Some(p) = current
            && super::replay::decide_again(p, &key).is_some_and(|v| super::replay::allows(&v))
        {
            out.already_allowed += stats.count;
            continue;
        }
        let (Some(from), Some(to)) = (classes.of(key.source), classes.of(key.destination)) else {
            out.unusable += stats.count;
            continue;
        };
        let pair = (from, to);
        parties
            .entry(pair.clone())
            .or_insert_with(|| (key.source.to_owned(), key.destination.to_owned()));
        match key.protocol {
            Protocol::Tcp => {
                let entry = tcp.entry(pair).or_insert_with(|| {
                    (
                        Stats::default(),
                        Sample {
                            source: key.source.to_owned(),
                            destination: key.destination.to_owned(),
                            method: String::new(),
                            path: String::new(),
                        },
                    )
                });
                entry.0.merge(stats);
            }
            Protocol::Http => {
                // Sidecars log normalized paths; a log from elsewhere may not.
                let (Some(method), Ok(path)) =
                    (rule_method(key.method), crate::path::normalize(key.path))
                else {
                    out.unusable += stats.count;
                    continue;
                };
                let path = path.as_str();
                let end = http
                    .entry(pair)
                    .or_default()
                    .entry(path.to_owned())
                    .or_insert_with(|| End {
                        distinct: 1,
                        sample: path.to_owned(),
                        ..End::default()
                    });
                end.methods.entry(method).or_default().merge(stats);
            }
        }
        out.covered += stats.count;
    }
    for ((from, to), paths) in http {
        let (source, destination) = parties[&(from.clone(), to.clone())].clone();
        // Patterns grouped by the exact set of methods seen on them.
        let mut by_methods: BTreeMap<Vec<String>, Vec<LearnedPath>> = BTreeMap::new();
        for (pattern, end) in generalize_paths(paths.into_iter().collect()) {
            let mut stats = Stats::default();
            end.methods.values().for_each(|s| stats.merge(s));
            let methods: Vec<String> = end.methods.keys().cloned().collect();
            by_methods.entry(methods).or_default().push(LearnedPath {
                pattern,
                stats,
                distinct: end.distinct,
                sample: end.sample,
            });
        }
        let several = by_methods.len() > 1;
        for (i, (methods, paths)) in by_methods.into_iter().enumerate() {
            let mut stats = Stats::default();
            paths.iter().for_each(|p| stats.merge(&p.stats));
            let samples = paths
                .iter()
                .map(|p| Sample {
                    source: source.clone(),
                    destination: destination.clone(),
                    method: methods[0].clone(),
                    path: p.sample.clone(),
                })
                .collect();
            let name = if several {
                format!("learn-{from}-to-{to}-{}", i + 1)
            } else {
                format!("learn-{from}-to-{to}")
            };
            out.rules.push(LearnedRule {
                name,
                from: from.clone(),
                to: to.clone(),
                methods: Some(methods),
                paths: Some(paths),
                stats,
                samples,
            });
        }
    }
    for ((from, to), (stats, sample)) in tcp {
        out.rules.push(LearnedRule {
            name: format!("learn-{from}-to-{to}-tcp"),
            from,
            to,
            methods: None,
            paths: None,
            stats,
            samples: vec![sample],
        });
    }
    // A name the current policy already uses gets `-2`, `-3`, …
    let mut names: BTreeSet<String> = current
        .map(|p| p.rules().iter().map(|r| r.name.clone()).collect())
        .unwrap_or_default();
    for rule in &mut out.rules {
        let base = rule.name.clone();
        let mut n = 2;
        while names.contains(&rule.name) {
            rule.name = format!("{base}-{n}");
            n += 1;
        }
        names.insert(rule.name.clone());
    }
    out.rules.sort_by(|a, b| a.name.cmp(&b.name));
    let used: BTreeSet<&str> = out
        .rules
        .iter()
        .flat_map(|r| [r.from.as_str(), r.to.as_str()])
        .collect();
    let mut segments: Vec<LearnedSegment> = classes.made.into_values().collect();
    if let Some(p) = current {
        segments.extend(
            p.segments()
                .iter()
                .filter(|s| used.contains(s.name.as_str()))
                .map(|s| LearnedSegment {
                    name: s.name.clone(),
                    identities: s.identities.iter().map(ToString::to_string).collect(),
                    labels: s.labels.clone(),
                    reused: true,
                }),
        );
    }
    segments.retain(|s| used.contains(s.name.as_str()));
    segments.sort_by(|a, b| a.name.cmp(&b.name));
    out.segments = segments;
    out
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

/// A method in YAML: bare when it is letters (`GET`), quoted otherwise (a token may hold
/// `#`, `*`, `&`, `!`, which YAML reads as a comment, alias, anchor or tag).
fn yaml_method(method: &str) -> String {
    if method.bytes().all(|b| b.is_ascii_alphanumeric()) {
        method.to_owned()
    } else {
        quoted(method)
    }
}

fn counted(stats: &Stats) -> String {
    let seen = match (stats.first, stats.last) {
        (Some(a), Some(b)) => format!(", first {} last {}", time::format(a), time::format(b)),
        _ => String::new(),
    };
    let bound = if stats.sampled {
        " (at least: sampled)"
    } else {
        ""
    };
    format!("{} seen{bound}{seen}", stats.count)
}

/// A learned file joined with the files of the policy it extends, compiled.
#[derive(Debug)]
pub struct Joined {
    /// The learned file's text (its `tests:`: the samples the joined policy allows).
    pub yaml: String,
    /// The joined policy, compiled with every `tests:`.
    pub policy: CompiledPolicy,
    /// Samples the joined policy refuses (a deny rule of the current policy), not written
    /// as tests.
    pub dropped: usize,
}

/// Joins `learned` (as `file`, with `header`) to the files `current` (name, text; empty:
/// alone) and compiles the result: first without tests, to keep as `tests:` only the samples
/// the joined policy allows; then with them.
///
/// # Errors
/// The joined policy does not compile (a bug of `learn`, or a name clash across files).
pub fn join(
    learned: &mut Learned,
    header: &str,
    current: &[(String, String)],
    file: &str,
) -> Result<Joined, crate::policy::PolicyErrors> {
    let compile = |yaml: &str| {
        let texts = current
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .chain([(file, yaml)]);
        crate::policy::PolicySource::from_texts(texts).and_then(|s| crate::policy::compile(&s))
    };
    let mut untested = learned.clone();
    untested.rules.iter_mut().for_each(|r| r.samples.clear());
    let dropped = learned.keep_allowed_samples(&compile(&untested.to_yaml(header))?);
    let yaml = learned.to_yaml(header);
    let policy = compile(&yaml)?;
    Ok(Joined {
        yaml,
        policy,
        dropped,
    })
}

impl Learned {
    /// Keeps as `tests:` only the samples `merged` (the learned rules with the policy they
    /// join) allows: a deny rule of the current policy may refuse an observed request the
    /// learned rules would allow (an audited probe), and a test must not assert otherwise.
    /// Returns how many samples were dropped.
    pub fn keep_allowed_samples(&mut self, merged: &CompiledPolicy) -> usize {
        let mut dropped = 0;
        for rule in &mut self.rules {
            rule.samples.retain(|s| {
                let allowed = s.method.is_empty() || {
                    let parsed = (
                        SpiffeId::parse(&s.source),
                        SpiffeId::parse(&s.destination),
                        crate::path::normalize(&s.path),
                    );
                    match parsed {
                        (Ok(from), Ok(to), Ok(path)) => {
                            let verdict = merged.decide(&crate::policy::Request {
                                source: &from,
                                destination: &to,
                                method: &s.method,
                                path: &path,
                            });
                            verdict.decision == crate::policy::Decision::Allow
                        }
                        _ => false,
                    }
                };
                dropped += usize::from(!allowed);
                allowed
            });
        }
        dropped
    }

    /// The learned rules as one YAML file: the segments made for unsegmented identities,
    /// the rules (counts and first/last seen as comments), and `tests:` from the samples
    /// kept in the rules. Segments reused from the current policy are not repeated: the file
    /// joins that policy's files (alone when nothing was reused).
    pub fn to_yaml(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            let _ = writeln!(out, "# {line}");
        }
        // Reused segments are defined by the current policy this file joins.
        let own: Vec<&LearnedSegment> = self.segments.iter().filter(|s| !s.reused).collect();
        if !own.is_empty() {
            out.push_str("segments:\n");
        }
        for s in own {
            let ids: Vec<String> = s.identities.iter().map(|i| quoted(i)).collect();
            let _ = writeln!(out, "  {}:", s.name);
            let _ = writeln!(out, "    identities: [{}]", ids.join(", "));
        }
        if self.rules.is_empty() {
            out.push_str("rules: []\n");
        } else {
            out.push_str("rules:\n");
        }
        for r in &self.rules {
            let _ = writeln!(out, "  # {}", counted(&r.stats));
            let _ = writeln!(out, "  - name: {}", r.name);
            let _ = writeln!(out, "    from: [{}]", r.from);
            let _ = writeln!(out, "    to: [{}]", r.to);
            if let Some(methods) = &r.methods {
                let quoted: Vec<String> = methods.iter().map(|m| yaml_method(m)).collect();
                let _ = writeln!(out, "    methods: [{}]", quoted.join(", "));
            }
            if let Some(paths) = &r.paths {
                out.push_str("    paths:\n");
                for p in paths {
                    let _ = writeln!(
                        out,
                        "      - {}  # {}, {} distinct path(s), e.g. {}",
                        quoted(&p.pattern),
                        counted(&p.stats),
                        p.distinct,
                        p.sample
                    );
                }
            }
        }
        let tests: Vec<&Sample> = self
            .rules
            .iter()
            .flat_map(|r| &r.samples)
            .filter(|s| !s.method.is_empty())
            .collect();
        if !tests.is_empty() {
            out.push_str("tests:\n");
        }
        for s in tests {
            let _ = writeln!(
                out,
                "  - {{ from: {}, to: {}, method: {}, path: {}, expect: allow }}",
                quoted(&s.source),
                quoted(&s.destination),
                yaml_method(&s.method),
                quoted(&s.path)
            );
        }
        out
    }
}

mod paths;

use paths::{End, generalize_paths};
pub use paths::{id_like, patterns_of};

#[cfg(test)]
mod tests;

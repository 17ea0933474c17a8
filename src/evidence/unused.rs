//! `policy unused` (docs/least-privilege.md#unused): what of a policy's allow rules the
//! evidence never used. Every observation that went through is decided under the policy; the
//! deciding allow rule is "used" by it (its source and destination segments, method, path).
//! Per allow rule:
//! - `rule-unused`: it decided nothing;
//! - `rule-wider-than-used`: methods, path patterns, source or destination segments it grants
//!   that were never used;
//!
//! and per segment an allow rule names, `identity-unseen`: identity patterns no observed
//! source or destination matched.
//!
//! [`Unused::proposal`] narrows each rule to what was used (unused rules removed, unused
//! methods, path patterns and segments dropped; a rule granting all paths gets the learned
//! patterns of the paths it decided): every request it decided stays allowed, so replaying
//! the same evidence under the proposal flips no allow to deny.

use std::collections::{BTreeMap, BTreeSet};

use super::learn;
use super::observe::{Observations, Protocol, Stats};
use crate::identity::SpiffeId;
use crate::path::normalize;
use crate::policy::method::MethodBit;
use crate::policy::source::Effect;
use crate::policy::{CompiledPolicy, PolicySource, Reason, Request, Rule, Target};

/// What one allow rule decided in the evidence.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Requests and connections it decided.
    pub stats: Stats,
    /// Methods (upper case) of the requests it decided.
    pub methods: BTreeSet<String>,
    /// Paths of the requests it decided.
    pub paths: BTreeSet<String>,
    /// Source segments (ids) seen, and whether a source in no segment was.
    pub sources: BTreeSet<u32>,
    /// Destination segments (ids) seen.
    pub destinations: BTreeSet<u32>,
    /// It decided a TCP connection.
    pub tcp: bool,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `rule-unused`, `rule-wider-than-used` or `identity-unseen`.
    pub kind: &'static str,
    /// The rule or segment it is about.
    pub subject: String,
    /// Where it is defined (`file:line:col`).
    pub at: String,
    /// What was never used.
    pub message: String,
}

/// A rule narrowed to its use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed {
    /// The rule's index in the policy.
    pub rule: usize,
    /// `None`: removed (never used). Otherwise the narrowed rule as a YAML flow mapping.
    pub yaml: Option<String>,
}

/// The answer of `unused`.
#[derive(Debug, Clone, Default)]
pub struct Unused {
    /// The findings: rules in name order, then segments.
    pub findings: Vec<Finding>,
    /// Each allow rule that is unused or wider than used, narrowed.
    pub narrowed: Vec<Narrowed>,
    /// Requests and connections that went through and were decided under the policy.
    pub considered: u64,
    /// Of those, allowed by no rule of the policy (already broken by it: see `replay`).
    pub not_allowed: u64,
    /// Observations left out by `since`.
    pub older: u64,
    /// Some lines were sampled: "never used" means never seen in the sample.
    pub sampled: bool,
}

/// Whether `targets` select a party in `segments` (`"*"` selects anyone).
fn selects(policy: &CompiledPolicy, targets: &[Target], segments: &BTreeSet<u32>) -> bool {
    targets.iter().any(|&t| match t {
        Target::Any => true,
        t => policy.members(t).iter().any(|m| segments.contains(m)),
    })
}

/// Whether allow rule `rule`'s methods and paths cover the request (or, for a connection,
/// whether it applies to connections at all).
fn grants(rule: &Rule, protocol: Protocol, method: &str, path: &str) -> bool {
    if protocol == Protocol::Tcp {
        return rule.matches_connection();
    }
    let method_ok = rule
        .methods
        .as_ref()
        .is_none_or(|m| m.contains(MethodBit::of(method), method));
    let path_ok = rule.paths.as_ref().is_none_or(|ps| {
        normalize(path).is_ok_and(|p| ps.iter().any(|pattern| pattern.matches(p.as_str())))
    });
    method_ok && path_ok
}

/// Appended to a finding whose rule a proposal keeps whole.
const KEPT: &str = "; kept whole by a proposal: the policy's tests: assert it";

fn selector(policy: &CompiledPolicy, target: Target) -> String {
    match target {
        Target::Any => "\"*\"".to_owned(),
        Target::Segment(s) => policy.segments()[s as usize].name.clone(),
        Target::Group(g) => {
            let labels: Vec<String> = policy.groups()[g as usize]
                .labels
                .iter()
                .map(|(k, v)| format!("{}: {}", quoted(k), quoted(v)))
                .collect();
            format!("{{ {} }}", labels.join(", "))
        }
    }
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// Whether any segment of `seen` is selected by `target`.
fn target_seen(policy: &CompiledPolicy, target: Target, seen: &BTreeSet<u32>) -> bool {
    match target {
        // A used rule was used by someone: `"*"` is never narrowed away.
        Target::Any => true,
        t => policy.members(t).iter().any(|m| seen.contains(m)),
    }
}

/// The rules that decide a request of the policy's own `tests:`: the operator asserted the
/// access they grant, so a proposal keeps them whole (evidence of intent, not of use).
pub fn asserted_rules(policy: &CompiledPolicy, source: &PolicySource) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for test in source.files.iter().flat_map(|f| &f.doc.tests) {
        let test = &test.value;
        let (Ok(from), Ok(to)) = (
            SpiffeId::parse(&test.from.value),
            SpiffeId::parse(&test.to.value),
        ) else {
            continue;
        };
        let method = test.method.as_ref().map_or("GET", |m| m.value.as_str());
        let path = test.path.as_ref().map_or("/", |p| p.value.as_str());
        let Ok(path) = normalize(path) else { continue };
        let verdict = policy.decide(&Request {
            source: &from,
            destination: &to,
            method,
            path: &path,
        });
        if let Some(rule) = verdict.rule {
            out.insert(rule.to_owned());
        }
    }
    out
}

/// Analyses `observations` (only those last seen at or after `since`, unix seconds) under
/// `policy`; the rules in `keep` are reported but not narrowed.
pub fn unused(
    policy: &CompiledPolicy,
    observations: &Observations,
    since: Option<i64>,
    keep: &BTreeSet<String>,
) -> Unused {
    let mut out = Unused {
        sampled: observations.sampled,
        ..Unused::default()
    };
    let mut usage: BTreeMap<usize, Usage> = BTreeMap::new();
    let index: BTreeMap<&str, usize> = policy
        .rules()
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let mut seen_ids: BTreeSet<String> = BTreeSet::new();
    for (key, stats) in observations.sorted() {
        if !key.went_through() {
            continue;
        }
        if since.is_some_and(|s| stats.last.is_some_and(|last| last < s)) {
            out.older += stats.count;
            continue;
        }
        let (Ok(source), Ok(destination)) = (
            SpiffeId::parse(key.source),
            SpiffeId::parse(key.destination),
        ) else {
            continue;
        };
        seen_ids.insert(key.source.to_owned());
        seen_ids.insert(key.destination.to_owned());
        let Some(verdict) = super::replay::decide_again(policy, &key) else {
            continue;
        };
        out.considered += stats.count;
        let segs = |id: &SpiffeId| -> BTreeSet<u32> {
            policy
                .segment_names(id)
                .into_iter()
                .filter_map(|n| policy.segment_id(n))
                .collect()
        };
        let (source_segments, destination_segments) = (segs(&source), segs(&destination));
        let mut used: Vec<usize> = Vec::new();
        if verdict.reason == Reason::DryRunDeny {
            // A dry-run deny names itself, not the allow rule that lets the request through:
            // every matching allow rule is in use.
            used = policy
                .rules()
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.effect == Effect::Allow
                        && !r.expired
                        && selects(policy, &r.from, &source_segments)
                        && selects(policy, &r.to, &destination_segments)
                        && grants(r, key.protocol, key.method, key.path)
                })
                .map(|(i, _)| i)
                .collect();
        } else if let Some(i) = verdict
            .rule
            .and_then(|name| index.get(name).copied())
            .filter(|&i| {
                super::replay::allows(&verdict) && policy.rules()[i].effect == Effect::Allow
            })
        {
            used.push(i);
        }
        if used.is_empty() {
            out.not_allowed += stats.count;
            continue;
        }
        for rule in used {
            let u = usage.entry(rule).or_default();
            u.stats.merge(stats);
            match key.protocol {
                Protocol::Tcp => u.tcp = true,
                Protocol::Http => {
                    u.methods.insert(key.method.to_ascii_uppercase());
                    if let Ok(path) = normalize(key.path) {
                        u.paths.insert(path.as_str().to_owned());
                    }
                }
            }
            u.sources.extend(&source_segments);
            u.destinations.extend(&destination_segments);
        }
    }
    let mut rules: Vec<(usize, &Rule)> = policy
        .rules()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.effect == Effect::Allow && !r.expired)
        .collect();
    rules.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    let mut named: BTreeSet<u32> = BTreeSet::new();
    for &(i, rule) in &rules {
        for t in rule.from.iter().chain(&rule.to) {
            if let Target::Segment(s) = t {
                named.insert(*s);
            } else if let Target::Group(_) = t {
                named.extend(policy.members(*t));
            }
        }
        let at = policy.locate(rule.at);
        let Some(u) = usage.get(&i) else {
            let kept = keep.contains(&rule.name);
            out.findings.push(Finding {
                kind: "rule-unused",
                subject: rule.name.clone(),
                at,
                message: format!(
                    "decided no observed request or connection{}",
                    if kept { KEPT } else { "" }
                ),
            });
            if !kept {
                out.narrowed.push(Narrowed {
                    rule: i,
                    yaml: None,
                });
            }
            continue;
        };
        let (wider, yaml) = narrow(policy, rule, u);
        if !wider.is_empty() {
            let kept = keep.contains(&rule.name);
            out.findings.push(Finding {
                kind: "rule-wider-than-used",
                subject: rule.name.clone(),
                at,
                message: format!(
                    "{} ({} used){}",
                    wider.join("; "),
                    u.stats.count,
                    if kept { KEPT } else { "" }
                ),
            });
            if !kept {
                out.narrowed.push(Narrowed {
                    rule: i,
                    yaml: Some(yaml),
                });
            }
        }
    }
    let ids: Vec<SpiffeId> = seen_ids
        .iter()
        .filter_map(|i| SpiffeId::parse(i).ok())
        .collect();
    for s in named {
        let segment = &policy.segments()[s as usize];
        for pattern in &segment.identities {
            if !ids.iter().any(|id| pattern.matches(id)) {
                out.findings.push(Finding {
                    kind: "identity-unseen",
                    subject: segment.name.clone(),
                    at: policy.locate(segment.at),
                    message: format!("no observed identity matches {pattern}"),
                });
            }
        }
    }
    out
}

/// What `rule` grants beyond `u`, and the rule narrowed to `u` as a YAML flow mapping.
fn narrow(policy: &CompiledPolicy, rule: &Rule, u: &Usage) -> (Vec<String>, String) {
    let mut wider = Vec::new();
    let keep_side =
        |targets: &[Target], seen: &BTreeSet<u32>, side: &str, wider: &mut Vec<String>| {
            let mut kept = Vec::new();
            for &t in targets {
                if target_seen(policy, t, seen) {
                    kept.push(selector(policy, t));
                } else {
                    wider.push(format!("{side} {} never seen", selector(policy, t)));
                }
            }
            kept
        };
    let from = keep_side(&rule.from, &u.sources, "source", &mut wider);
    let to = keep_side(&rule.to, &u.destinations, "destination", &mut wider);
    // A rule that decided a connection must keep matching connections: no methods, no paths.
    let (methods, paths) = if u.tcp {
        (
            rule.methods
                .as_ref()
                .map(|m| m.names().into_iter().map(str::to_owned).collect()),
            rule.paths
                .as_ref()
                .map(|ps| ps.iter().map(|p| p.as_str().to_owned()).collect()),
        )
    } else {
        let used: Vec<String> = u.methods.iter().cloned().collect();
        let granted: Option<Vec<String>> = rule
            .methods
            .as_ref()
            .map(|m| m.names().into_iter().map(str::to_owned).collect());
        match &granted {
            None => wider.push(format!("all methods granted, used {}", used.join(","))),
            Some(g) if g.len() > used.len() => {
                let unused: Vec<&str> = g
                    .iter()
                    .filter(|m| !used.contains(m))
                    .map(String::as_str)
                    .collect();
                wider.push(format!("methods never used: {}", unused.join(",")));
            }
            Some(_) => {}
        }
        let paths = match &rule.paths {
            None => {
                let learned = learn::patterns_of(u.paths.iter().map(String::as_str));
                wider.push(format!("all paths granted, used {}", learned.join(" ")));
                learned
            }
            Some(patterns) => {
                let (kept, never): (Vec<_>, Vec<_>) = patterns
                    .iter()
                    .partition(|p| u.paths.iter().any(|path| p.matches(path)));
                if !never.is_empty() {
                    let texts: Vec<&str> = never.iter().map(|p| p.as_str()).collect();
                    wider.push(format!("paths never used: {}", texts.join(" ")));
                }
                kept.iter().map(|p| p.as_str().to_owned()).collect()
            }
        };
        (Some(used), Some(paths))
    };
    let mut yaml = format!(
        "{{ name: {}, from: {}, to: {}",
        quoted(&rule.name),
        list(&from),
        list(&to)
    );
    if let Some(m) = methods {
        yaml.push_str(&format!(", methods: {}", list(&m)));
    }
    if let Some(p) = paths {
        let quoted: Vec<String> = p.iter().map(|p| quoted(p)).collect();
        yaml.push_str(&format!(", paths: {}", list(&quoted)));
    }
    if let Some(t) = rule.expires {
        yaml.push_str(&format!(", expires: {}", crate::policy::format_time(t)));
    }
    for (key, value) in [
        ("owner", &rule.owner),
        ("ticket", &rule.ticket),
        ("reason", &rule.reason),
    ] {
        if let Some(v) = value {
            yaml.push_str(&format!(", {key}: {}", quoted(v)));
        }
    }
    yaml.push_str(" }");
    (wider, yaml)
}

/// The policy's files with the narrowing applied: each narrowed rule's list item replaced by
/// its flow mapping (a removed rule's item deleted), other text — comments included — kept.
///
/// # Errors
/// A rule whose list item cannot be found in its file's text (not block style).
pub fn rewrite(
    policy: &CompiledPolicy,
    texts: &[(String, String)],
    narrowed: &[Narrowed],
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, Vec<String>)> = texts
        .iter()
        .map(|(n, t)| (n.clone(), t.lines().map(str::to_owned).collect()))
        .collect();
    // Bottom-up within each file, so earlier line numbers stay valid.
    let mut edits: Vec<(usize, usize, &Narrowed)> = narrowed
        .iter()
        .map(|n| {
            let at = policy.rules()[n.rule].at;
            (at.file, at.line as usize, n)
        })
        .collect();
    edits.sort_by_key(|e| (e.0, std::cmp::Reverse(e.1)));
    for (file, line, n) in edits {
        let name = &policy.rules()[n.rule].name;
        let lines = &mut out.get_mut(file).ok_or("no such file")?.1;
        let (start, end, dash) = item_span(lines, line.saturating_sub(1))
            .ok_or_else(|| format!("rule `{name}`: its list item is not in block style (`- name: …`); narrow it by hand"))?;
        let replacement: Vec<String> = match &n.yaml {
            None => Vec::new(),
            Some(y) => vec![format!("{}- {y}", " ".repeat(dash))],
        };
        lines.splice(start..end, replacement);
    }
    for (_, lines) in &mut out {
        empty_lists_as_flow(lines);
    }
    Ok(out
        .into_iter()
        .map(|(n, lines)| {
            let mut text = lines.join("\n");
            text.push('\n');
            (n, text)
        })
        .collect())
}

/// A `rules:` whose every item was removed would read as null: it becomes `rules: []`.
fn empty_lists_as_flow(lines: &mut [String]) {
    let indent = |l: &str| l.len() - l.trim_start().len();
    for i in 0..lines.len() {
        if lines[i].trim_end().trim_start() != "rules:" {
            continue;
        }
        let k = indent(&lines[i]);
        let next = lines[i + 1..].iter().find(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        });
        let has_items = next
            .is_some_and(|l| indent(l) > k || (indent(l) == k && l.trim_start().starts_with('-')));
        if !has_items {
            lines[i] = format!("{}rules: []", " ".repeat(k));
        }
    }
}

/// The lines `[start, end)` of the block-style list item holding line `at` (0-based), and
/// the column of its `-`.
fn item_span(lines: &[String], at: usize) -> Option<(usize, usize, usize)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let start = (0..=at.min(lines.len().checked_sub(1)?))
        .rev()
        .find(|&i| lines[i].trim_start().starts_with("- ") || lines[i].trim() == "-")?;
    let dash = indent(&lines[start]);
    if lines[start].trim_start().starts_with("- {") && !lines[start].trim_end().ends_with('}') {
        return None;
    }
    let end = (start + 1..lines.len())
        .find(|&i| {
            let t = lines[i].trim();
            !t.is_empty() && !t.starts_with('#') && indent(&lines[i]) <= dash
        })
        .unwrap_or(lines.len());
    // Trailing blank and comment lines belong to what follows.
    let mut end = end;
    while end > start + 1 {
        let t = lines[end - 1].trim();
        if t.is_empty() || t.starts_with('#') {
            end -= 1;
        } else {
            break;
        }
    }
    Some((start, end, dash))
}

//! `policy replay` (docs/least-privilege.md#replay): every observation decided again under a
//! policy, and the flips — *allow → deny* (the policy breaks observed traffic) and *deny →
//! allow* (it admits observed attempts) — grouped by direction, source class, destination
//! class and the rule that now decides, each group with its counts, first/last seen and one
//! example.
//!
//! "Allowed" means what the policy lets through when enforced: `allow`, or a `would-deny` of
//! a `dry_run` rule (which decides nothing). A `would-deny` of audit mode is a denial the
//! audit let pass: a new policy that allows it is a *deny → allow* flip, not a break.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::observe::{Direction, Key, Observations, Protocol, Stats};
use crate::identity::SpiffeId;
use crate::path::normalize;
use crate::policy::{Classification, CompiledPolicy, Decision, Reason, Verdict};

/// Which way a decision flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flip {
    /// Allowed when logged, denied now: the change breaks observed traffic.
    AllowToDeny,
    /// Denied (or audited as `would-deny`) when logged, allowed now.
    DenyToAllow,
}

impl Flip {
    /// The word of reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllowToDeny => "allow-to-deny",
            Self::DenyToAllow => "deny-to-allow",
        }
    }
}

/// One observation of a group, shown as its example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The calling identity.
    pub source: String,
    /// The identity reached.
    pub destination: String,
    /// `http` or `tcp`.
    pub protocol: Protocol,
    /// The method (empty for TCP).
    pub method: String,
    /// The path (empty for TCP).
    pub path: String,
    /// The decision logged, with its rule or reason.
    pub logged: String,
    /// The decision now, with its rule or reason.
    pub now: String,
}

/// The flips of one direction, source class, destination class and deciding rule.
#[derive(Debug, Clone)]
pub struct Group {
    /// Which way.
    pub flip: Flip,
    /// Which side decided.
    pub direction: Direction,
    /// The source's segments under the replayed policy (`a,b`), or its ID when in none.
    pub source: String,
    /// The destination's, likewise.
    pub destination: String,
    /// The rule (or `default-deny`, `revoked`, …) that decides now.
    pub rule: String,
    /// The observations' counts and first/last seen, added up.
    pub stats: Stats,
    /// Distinct observations in the group.
    pub distinct: usize,
    /// The first of them (in key order).
    pub example: Example,
}

/// The answer of a replay.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// The version of the replayed policy.
    pub policy_version: String,
    /// Observed requests and connections decided again (their counts added up).
    pub replayed: u64,
    /// Of those, decided the same way (allowed or not) as logged.
    pub unchanged: u64,
    /// Distinct observations.
    pub distinct: usize,
    /// Observations with an ID that is not a SPIFFE ID or a path that does not normalize:
    /// not replayed (a request the sidecar would have refused before deciding).
    pub invalid: u64,
    /// Requests refused before any decision (counted by the reader): not replayed.
    pub refused: u64,
    /// Some lines passed the sampler: counts are lower bounds.
    pub sampled: bool,
    /// The flips, breaks first, then by count.
    pub groups: Vec<Group>,
}

impl Replay {
    /// Requests and connections the policy now denies that were allowed.
    pub fn breaks(&self) -> u64 {
        self.total(Flip::AllowToDeny)
    }

    /// Requests and connections the policy now allows that were denied.
    pub fn admits(&self) -> u64 {
        self.total(Flip::DenyToAllow)
    }

    fn total(&self, flip: Flip) -> u64 {
        self.groups
            .iter()
            .filter(|g| g.flip == flip)
            .map(|g| g.stats.count)
            .sum()
    }
}

/// The identities of a replay, each classified once.
struct Parties<'p> {
    policy: &'p CompiledPolicy,
    known: FxHashMap<String, Option<(Classification<'p>, String)>>,
}

impl<'p> Parties<'p> {
    fn ensure(&mut self, id: &str) {
        if !self.known.contains_key(id) {
            let entry = SpiffeId::parse(id).ok().map(|parsed| {
                let names = self.policy.segment_names(&parsed);
                let class = if names.is_empty() {
                    id.to_owned()
                } else {
                    names.join(",")
                };
                (self.policy.classify(&parsed), class)
            });
            self.known.insert(id.to_owned(), entry);
        }
    }

    fn get(&self, id: &str) -> Option<&(Classification<'p>, String)> {
        self.known.get(id).and_then(Option::as_ref)
    }
}

/// How `policy` decides `key` now: `None` when an ID or the path cannot be decided at all.
pub fn decide_again<'p>(policy: &'p CompiledPolicy, key: &Key<'_>) -> Option<Verdict<'p>> {
    let source = policy.classify(&SpiffeId::parse(key.source).ok()?);
    let destination = policy.classify(&SpiffeId::parse(key.destination).ok()?);
    decide_classified(policy, &source, &destination, key)
}

fn decide_classified<'p>(
    policy: &'p CompiledPolicy,
    source: &Classification<'_>,
    destination: &Classification<'_>,
    key: &Key<'_>,
) -> Option<Verdict<'p>> {
    match key.protocol {
        Protocol::Tcp => Some(policy.decide_connection_classified(source, destination)),
        Protocol::Http => {
            let path = normalize(key.path).ok()?;
            Some(policy.decide_classified(source, destination, key.method, &path))
        }
    }
}

/// Whether `verdict` lets the request through when enforced (a `dry_run` deny decides nothing).
pub fn allows(verdict: &Verdict<'_>) -> bool {
    verdict.decision == Decision::Allow
        || (verdict.decision == Decision::WouldDeny && verdict.reason == Reason::DryRunDeny)
}

/// The flip of `key` under `verdict`, if any.
pub fn flip_of(key: &Key<'_>, verdict: &Verdict<'_>) -> Option<Flip> {
    match (key.was_allowed(), allows(verdict)) {
        (true, false) => Some(Flip::AllowToDeny),
        (false, true) => Some(Flip::DenyToAllow),
        _ => None,
    }
}

/// `allow (rule r)`, `deny (default-deny)`, `deny (rule r, rule-expired)`: the reason is
/// named when the rule alone does not say it.
fn described(decision: &str, rule: Option<&str>, reason: Option<&str>) -> String {
    match (rule, reason) {
        (Some(rule), Some(reason)) if !matches!(reason, "allow-rule" | "deny-rule") => {
            format!("{decision} (rule {rule}, {reason})")
        }
        (Some(rule), _) => format!("{decision} (rule {rule})"),
        (None, Some(reason)) => format!("{decision} ({reason})"),
        (None, None) => decision.to_owned(),
    }
}

/// Decides every observation of `observations` again under `policy`.
pub fn replay(policy: &CompiledPolicy, observations: &Observations) -> Replay {
    let mut parties = Parties {
        policy,
        known: FxHashMap::default(),
    };
    let mut out = Replay {
        policy_version: policy.version().to_owned(),
        distinct: observations.len(),
        refused: observations.refused,
        sampled: observations.sampled,
        ..Replay::default()
    };
    type GroupKey = (Flip, Direction, String, String, String);
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    for (key, stats) in observations.sorted() {
        parties.ensure(key.source);
        parties.ensure(key.destination);
        let (Some((source, source_class)), Some((destination, destination_class))) =
            (parties.get(key.source), parties.get(key.destination))
        else {
            out.invalid += stats.count;
            continue;
        };
        let Some(verdict) = decide_classified(policy, source, destination, &key) else {
            out.invalid += stats.count;
            continue;
        };
        out.replayed += stats.count;
        let Some(flip) = flip_of(&key, &verdict) else {
            out.unchanged += stats.count;
            continue;
        };
        let rule = verdict.rule_label().to_owned();
        let group = groups
            .entry((
                flip,
                key.direction,
                source_class.clone(),
                destination_class.clone(),
                rule,
            ))
            .or_insert_with_key(|(flip, direction, source, destination, rule)| Group {
                flip: *flip,
                direction: *direction,
                source: source.clone(),
                destination: destination.clone(),
                rule: rule.clone(),
                stats: Stats::default(),
                distinct: 0,
                example: Example {
                    source: key.source.to_owned(),
                    destination: key.destination.to_owned(),
                    protocol: key.protocol,
                    method: key.method.to_owned(),
                    path: key.path.to_owned(),
                    logged: described(key.decision.as_str(), key.rule, key.reason),
                    now: described(
                        verdict.decision.as_str(),
                        verdict.rule,
                        Some(verdict.reason.as_str()),
                    ),
                },
            });
        group.stats.merge(stats);
        group.distinct += 1;
    }
    out.groups = groups.into_values().collect();
    out.groups.sort_by(|a, b| {
        (a.flip, std::cmp::Reverse(a.stats.count)).cmp(&(b.flip, std::cmp::Reverse(b.stats.count)))
    });
    out
}

#[cfg(test)]
mod tests;

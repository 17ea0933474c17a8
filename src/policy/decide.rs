//! `CompiledPolicy::decide`: the decision for one request, following docs/policy-language.md in order:
//! 1. source revoked → deny (`revoked`);
//! 2. any matching `effect: deny` rule → deny (that rule);
//! 3. any matching allow rule → allow (that rule);
//! 4. otherwise → deny (`default-deny`).
//!
//! Deny always overrides allow; when several rules of a kind match, the first by name is
//! reported, so the answer never depends on rule or file order. A matching `dry_run` deny
//! turns an allow into `would-deny` without deciding.

use std::fmt;

use super::classify::Classification;
use super::compiled::{CompiledPolicy, Rule};
use super::method::MethodBit;
use super::pattern::trim_trailing_slash;
use super::source::Effect;
use crate::identity::SpiffeId;
use crate::path::{NormalizedPath, upstream_variant};

/// What happens to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Let through.
    Allow,
    /// Refused with 403.
    Deny,
    /// Let through, but logged as a deny would have refused it (audit mode, `dry_run`).
    WouldDeny,
}

impl Decision {
    /// The decision log's word: `allow`, `deny`, `would-deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::WouldDeny => "would-deny",
        }
    }
}

/// Which step of §3 decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Step 1: the source identity is revoked.
    Revoked,
    /// Step 2: a deny rule matched.
    DenyRule,
    /// Step 3: an allow rule matched.
    AllowRule,
    /// Step 3, with a matching `dry_run` deny rule reported as `would-deny`.
    DryRunDeny,
    /// Step 4: nothing allowed the request.
    DefaultDeny,
    /// A caller passed a classification made by another policy version (a bug in the
    /// caller; refused rather than guessed).
    StaleClassification,
    /// The path climbs above the root once `;parameters` are cut or escapes decoded, as
    /// some upstreams do (e.g. `/..;/admin`): refused before any rule.
    AmbiguousPath,
    /// Step 4, but an allow rule whose `expires:` has passed would have matched: the
    /// deciding rule reported is that expired rule (docs/runbook.md).
    RuleExpired,
    /// The source is contained on this sidecar after a probe (docs/probes.md): refused before
    /// the policy is consulted, until the containment lifts.
    ProbeContained,
}

impl Reason {
    /// Bounded label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::DenyRule => "deny-rule",
            Self::AllowRule => "allow-rule",
            Self::DryRunDeny => "dry-run-deny",
            Self::DefaultDeny => "default-deny",
            Self::AmbiguousPath => "ambiguous-path",
            Self::StaleClassification => "stale-classification",
            Self::RuleExpired => "rule-expired",
            Self::ProbeContained => "probe-contained",
        }
    }
}

/// A decision, its reason and the deciding rule (borrowed from the policy snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'p> {
    /// What happens to the request.
    pub decision: Decision,
    /// Which step decided.
    pub reason: Reason,
    /// The deciding rule's name, when a rule decided.
    pub rule: Option<&'p str>,
}

impl<'p> Verdict<'p> {
    /// A deny that no rule decided (revoked, ambiguous path, …).
    pub(super) fn refused(reason: Reason) -> Self {
        Self {
            decision: Decision::Deny,
            reason,
            rule: None,
        }
    }

    /// The deny of a source contained after a probe (docs/probes.md): no rule decided.
    pub fn probe_contained() -> Verdict<'static> {
        Verdict::refused(Reason::ProbeContained)
    }

    /// The rule name, or `revoked` / `default-deny` when no rule decided.
    pub fn rule_label(&self) -> &'p str {
        self.rule.unwrap_or(self.reason.as_str())
    }

    /// The same verdict under `mode: audit`: a deny becomes `would-deny`.
    pub fn audited(self) -> Self {
        match self.decision {
            Decision::Deny => Self {
                decision: Decision::WouldDeny,
                ..self
            },
            _ => self,
        }
    }

    /// Whether the request goes through (`allow` or `would-deny`).
    pub fn lets_through(&self) -> bool {
        self.decision != Decision::Deny
    }
}

impl fmt::Display for Verdict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Some(rule) => write!(f, "{} (rule {rule})", self.decision.as_str()),
            None => write!(f, "{} ({})", self.decision.as_str(), self.reason.as_str()),
        }
    }
}

/// The facts a decision is made on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The authenticated peer (from its X509-SVID).
    pub source: &'a SpiffeId,
    /// The workload being reached.
    pub destination: &'a SpiffeId,
    /// The HTTP method, as sent.
    pub method: &'a str,
    /// The normalized path (no query).
    pub path: &'a NormalizedPath,
}

/// Everything `policy explain` shows about one request.
#[derive(Debug, Clone)]
pub struct Explanation<'p> {
    /// The decision.
    pub verdict: Verdict<'p>,
    /// Segments the source belongs to.
    pub source_segments: Vec<&'p str>,
    /// Segments the destination belongs to.
    pub destination_segments: Vec<&'p str>,
    /// Every rule matching the request, by name.
    pub matched: Vec<&'p Rule>,
}

impl CompiledPolicy {
    /// Decides one request (docs/policy-language.md steps 1–4); never scans the whole rule list.
    pub fn decide(&self, req: &Request<'_>) -> Verdict<'_> {
        let source = self.classify(req.source);
        let destination = self.classify(req.destination);
        self.decide_classified(&source, &destination, req.method, req.path)
    }

    /// [`Self::decide`] for identities classified by [`Self::classify`] of this same policy,
    /// so that one classification can serve many decisions. The data plane does not use it
    /// (the proxy calls [`Self::decide`], which classifies both parties per request); `explain`,
    /// the decide benchmark and the tests do. A classification made by another policy is
    /// refused (`stale-classification`), never reinterpreted.
    pub fn decide_classified(
        &self,
        source: &Classification<'_>,
        destination: &Classification<'_>,
        method: &str,
        path: &NormalizedPath,
    ) -> Verdict<'_> {
        if let Some(refused) = self.refused_before_rules(source, destination) {
            return refused;
        }
        let mut best = Best::default();
        let unambiguous = self.each_match_both_spellings(
            &Parties {
                source,
                destination,
            },
            method,
            path,
            |i, r| best.note(i, r),
        );
        if !unambiguous {
            return Verdict::refused(Reason::AmbiguousPath);
        }
        best.verdict(self)
    }

    /// What is refused before any rule is consulted, for a request and a connection alike: a
    /// classification made by another policy (`stale-classification`), then step 1 — a
    /// revoked source is refused whatever the rules say.
    pub(super) fn refused_before_rules(
        &self,
        source: &Classification<'_>,
        destination: &Classification<'_>,
    ) -> Option<Verdict<'_>> {
        if !self.classifier.made(source) || !self.classifier.made(destination) {
            return Some(Verdict::refused(Reason::StaleClassification));
        }
        source.revoked.then(|| Verdict::refused(Reason::Revoked))
    }

    /// Decides and also reports segments and every matching rule, for `policy explain`.
    pub fn explain(&self, req: &Request<'_>) -> Explanation<'_> {
        let (source, destination) = (self.classify(req.source), self.classify(req.destination));
        let mut matched = Vec::new();
        let parties = Parties {
            source: &source,
            destination: &destination,
        };
        // An expired rule matches nothing; `explain_rules` shows it as a candidate that expired.
        self.each_match_both_spellings(&parties, req.method, req.path, |i, rule| {
            if !rule.expired {
                matched.push(i);
            }
        });
        matched.sort_unstable();
        matched.dedup();
        Explanation {
            verdict: self.decide_classified(&source, &destination, req.method, req.path),
            source_segments: self.segment_names(req.source),
            destination_segments: self.segment_names(req.destination),
            matched: matched
                .into_iter()
                .map(|i| &self.rules[i as usize])
                .collect(),
        }
    }

    /// The first (by name) `tripwire: true` deny rule in force that matches `req`, on either
    /// spelling of its path (docs/probes.md#tripwires). The data plane asks only after a
    /// deny, so it costs nothing on an allowed request.
    pub fn tripwire(&self, req: &Request<'_>) -> Option<&str> {
        let (source, destination) = (self.classify(req.source), self.classify(req.destination));
        let parties = Parties {
            source: &source,
            destination: &destination,
        };
        let mut first: Option<u32> = None;
        self.each_match_both_spellings(&parties, req.method, req.path, |i, rule| {
            if rule.tripwire && rule.effect == Effect::Deny && !rule.expired && !rule.dry_run {
                first = Some(first.map_or(i, |f| f.min(i)));
            }
        });
        first.map(|i| self.rules[i as usize].name.as_str())
    }

    /// [`Self::tripwire`] for a TCP connection, which every deny rule covers (docs/l4.md).
    pub fn tripwire_connection(&self, source: &SpiffeId, destination: &SpiffeId) -> Option<&str> {
        let (source, destination) = (self.classify(source), self.classify(destination));
        let parties = Parties {
            source: &source,
            destination: &destination,
        };
        let mut first: Option<u32> = None;
        self.each_filed(&parties, |i, rule| {
            if rule.tripwire && rule.effect == Effect::Deny && !rule.expired && !rule.dry_run {
                first = Some(first.map_or(i, |f| f.min(i)));
            }
        });
        first.map(|i| self.rules[i as usize].name.as_str())
    }

    /// Names of the segments `id` belongs to, sorted.
    pub fn segment_names(&self, id: &SpiffeId) -> Vec<&str> {
        self.classifier
            .segment_ids(id)
            .into_iter()
            .map(|s| self.segments[s as usize].name.as_str())
            .collect()
    }

    /// [`Self::each_match`] on the path, then deny rules only on the spelling a lenient
    /// upstream may route ([`upstream_variant`]): such spellings can add denials, never
    /// allows. False when that spelling climbs above the root (the request is refused).
    fn each_match_both_spellings(
        &self,
        parties: &Parties<'_, '_>,
        method: &str,
        path: &NormalizedPath,
        mut found: impl FnMut(u32, &Rule),
    ) -> bool {
        self.each_match(parties, method, path, &mut found);
        match upstream_variant(path.as_str()) {
            None => true,
            Some(Err(_)) => false,
            Some(Ok(variant)) => {
                self.each_match(parties, method, &variant, |i, rule| {
                    if rule.effect == Effect::Deny {
                        found(i, rule);
                    }
                });
                true
            }
        }
    }

    /// Calls `found` for every rule filed under the parties' keys whose methods and paths
    /// match. Steps 2–3 look only here.
    fn each_match(
        &self,
        parties: &Parties<'_, '_>,
        method: &str,
        path: &NormalizedPath,
        mut found: impl FnMut(u32, &Rule),
    ) {
        let bit = MethodBit::of(method);
        let path = trim_trailing_slash(path.as_str());
        self.each_filed(parties, |index, rule| {
            if rule.matches(bit, method, path) {
                found(index, rule);
            }
        });
    }

    /// Calls `found` for every rule filed under the parties' keys, whatever its methods and
    /// paths: the candidates of a request, or of a connection (`decide_connection`).
    pub(super) fn each_filed(
        &self,
        Parties {
            source,
            destination,
        }: &Parties<'_, '_>,
        mut found: impl FnMut(u32, &Rule),
    ) {
        for &d in destination.keys.dst.iter() {
            // `get`: a classification is only ever indexed against its own policy's keys.
            let Some(Some(bucket)) = self.by_dst.get(d as usize) else {
                continue;
            };
            for s in source.keys.src.iter() {
                let Some(rules) = bucket.rules_for(*s) else {
                    continue;
                };
                for &index in rules.iter() {
                    found(index, &self.rules[index as usize]);
                }
            }
        }
    }
}

/// The two classified identities of one request, as the match walks take them.
pub(super) struct Parties<'c, 'p> {
    pub(super) source: &'c Classification<'p>,
    pub(super) destination: &'c Classification<'p>,
}

impl Rule {
    /// Whether the rule's methods and paths admit the request (`path` already trimmed).
    fn matches(&self, bit: MethodBit, method: &str, path: &str) -> bool {
        let method_ok = self
            .methods
            .as_ref()
            .is_none_or(|m| m.contains(bit, method));
        method_ok
            && self
                .paths
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| p.matches_trimmed(path)))
    }
}

/// The first matching rule (by name order) of each kind; expired rules decide nothing, but
/// an expired allow is remembered to name it when nothing else allowed.
#[derive(Default)]
pub(super) struct Best {
    deny: Option<u32>,
    dry_run: Option<u32>,
    allow: Option<u32>,
    expired_allow: Option<u32>,
}

impl Best {
    pub(super) fn note(&mut self, index: u32, rule: &Rule) {
        let slot = match (rule.effect, rule.dry_run, rule.expired) {
            (Effect::Allow, _, true) => &mut self.expired_allow,
            (Effect::Deny, _, true) => return,
            (Effect::Deny, false, _) => &mut self.deny,
            (Effect::Deny, true, _) => &mut self.dry_run,
            (Effect::Allow, _, false) => &mut self.allow,
        };
        *slot = Some(slot.map_or(index, |s| s.min(index)));
    }

    pub(super) fn verdict(self, policy: &CompiledPolicy) -> Verdict<'_> {
        let name = |i: u32| Some(policy.rules[i as usize].name.as_str());
        let (decision, reason, rule) = match (self.deny, self.allow, self.dry_run) {
            (Some(d), _, _) => (Decision::Deny, Reason::DenyRule, name(d)),
            (None, Some(_), Some(dry)) => (Decision::WouldDeny, Reason::DryRunDeny, name(dry)),
            (None, Some(a), None) => (Decision::Allow, Reason::AllowRule, name(a)),
            (None, None, _) => match self.expired_allow {
                Some(e) => (Decision::Deny, Reason::RuleExpired, name(e)),
                None => (Decision::Deny, Reason::DefaultDeny, None),
            },
        };
        Verdict {
            decision,
            reason,
            rule,
        }
    }
}

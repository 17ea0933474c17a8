//! `CompiledPolicy::explain_rules`: for `policy explain`, every *candidate* rule of one request
//! — a rule whose `from` selects the source or whose `to` selects the destination — with the
//! first check it failed, and the decision re-derived from those checks (docs/policy-language.md).
//!
//! Never on the request path: it scans the whole rule list. Its verdict must equal
//! [`CompiledPolicy::decide`]'s; the tests hold it to that. PURE: std, identity, path only.

use super::compiled::{CompiledPolicy, Rule, Target};
use super::decide::{Decision, Reason, Request, Verdict};
use super::method::MethodBit;
use super::pattern::trim_trailing_slash;
use super::source::Effect;
use crate::path::{NormalizedPath, upstream_variant};

/// The first check a candidate rule failed, in the order the checks are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No selector of `from` selects the source.
    Source,
    /// No selector of `to` selects the destination.
    Destination,
    /// The request's method is not in `methods`.
    Method,
    /// No pattern of `paths` matches the request's path.
    Path,
    /// An allow rule naming `methods` or `paths`, asked about a TCP connection, which has
    /// neither: it never allows one (docs/l4.md).
    Http,
}

/// How one candidate rule stands against the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `from`, `to`, `methods` and `paths` all admit the request.
    Matched,
    /// A `dry_run` deny rule that admits the request: it reports `would-deny`, never refuses.
    DryRun,
    /// The rule would admit the request, but its `expires:` has passed: it matches nothing.
    Expired,
    /// The rule does not apply, for this reason.
    Missed(Miss),
}

impl Check {
    /// Short label for `--json`: `matched`, `dry-run`, `source`, `destination`, `method`, `path`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::DryRun => "dry-run",
            Self::Expired => "expired",
            Self::Missed(Miss::Source) => "source",
            Self::Missed(Miss::Destination) => "destination",
            Self::Missed(Miss::Method) => "method",
            Self::Missed(Miss::Path) => "path",
            Self::Missed(Miss::Http) => "http-only",
        }
    }
}

/// One candidate rule and how it stands.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'p> {
    /// The rule.
    pub rule: &'p Rule,
    /// Whether it matched, and if not, why.
    pub check: Check,
}

/// The candidate rules of one request, by name, and the decision they lead to.
#[derive(Debug, Clone)]
pub struct RuleExplanation<'p> {
    /// The decision re-derived from `candidates` (equal to [`CompiledPolicy::decide`]'s).
    pub verdict: Verdict<'p>,
    /// Rules selecting the source or the destination, sorted by name.
    pub candidates: Vec<Candidate<'p>>,
}

impl CompiledPolicy {
    /// Checks every candidate rule against `req` and re-derives the decision (§3 steps 1–4).
    pub fn explain_rules(&self, req: &Request<'_>) -> RuleExplanation<'_> {
        let variant = upstream_variant(req.path.as_str());
        let ambiguous = matches!(variant, Some(Err(_)));
        let facts = Facts {
            source: self.classifier.segment_ids(req.source),
            destination: self.classifier.segment_ids(req.destination),
            method: req.method,
            path: req.path,
            variant: variant.and_then(Result::ok),
            connection: false,
        };
        self.explain_facts(&facts, req.source, ambiguous)
    }

    /// [`Self::explain_rules`] for a TCP connection (docs/l4.md): allow rules naming
    /// methods or paths miss (`http-only`), deny rules match whatever they name. `req`'s
    /// method and path are not read. Its verdict equals [`Self::decide_connection`]'s.
    pub fn explain_connection_rules(&self, req: &Request<'_>) -> RuleExplanation<'_> {
        let facts = Facts {
            source: self.classifier.segment_ids(req.source),
            destination: self.classifier.segment_ids(req.destination),
            method: req.method,
            path: req.path,
            variant: None,
            connection: true,
        };
        self.explain_facts(&facts, req.source, false)
    }

    fn explain_facts(
        &self,
        facts: &Facts<'_>,
        source: &crate::identity::SpiffeId,
        ambiguous: bool,
    ) -> RuleExplanation<'_> {
        let candidates: Vec<_> = self
            .rules
            .iter()
            .filter_map(|rule| facts.candidate(self, rule))
            .collect();
        let verdict = if self.classify(source).is_revoked() {
            refused(Reason::Revoked)
        } else if ambiguous {
            refused(Reason::AmbiguousPath)
        } else {
            from_candidates(&candidates)
        };
        RuleExplanation {
            verdict,
            candidates,
        }
    }

    /// A selector as written in the policy: a segment name, `"*"`, or `{ key: value, … }`.
    pub fn selector_text(&self, target: Target) -> String {
        match target {
            Target::Any => "\"*\"".to_owned(),
            Target::Segment(s) => self.segments[s as usize].name.clone(),
            Target::Group(g) => {
                let labels = &self.groups[g as usize].labels;
                let pairs: Vec<_> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{ {} }}", pairs.join(", "))
            }
        }
    }

    /// Whether `target` selects an identity in the segments `ids` (`"*"` selects any).
    fn selects(&self, target: Target, ids: &[u32]) -> bool {
        match target {
            Target::Any => true,
            Target::Segment(s) => ids.binary_search(&s).is_ok(),
            Target::Group(g) => self.groups[g as usize]
                .members
                .iter()
                .any(|m| ids.binary_search(m).is_ok()),
        }
    }
}

impl RuleExplanation<'_> {
    /// One sentence on which step of §3 decided, naming the rules involved.
    pub fn decision_path(&self) -> String {
        let v = &self.verdict;
        let rule = v.rule.unwrap_or("-");
        match v.reason {
            Reason::Revoked => "step 1: the source is revoked → deny; no rule is consulted".into(),
            Reason::AmbiguousPath => "the path climbs above the root in the spelling a lenient \
                upstream routes → deny (ambiguous-path) before any rule"
                .into(),
            Reason::DenyRule => format!("step 2: deny rule `{rule}` matched → deny"),
            Reason::DryRunDeny => format!(
                "step 3: allow rule `{}` matched, and dry_run deny rule `{rule}` matched → \
                 would-deny (let through, logged)",
                self.first_allow().unwrap_or("-")
            ),
            Reason::AllowRule => {
                format!("step 3: allow rule `{rule}` matched, no deny did → allow")
            }
            Reason::DefaultDeny => {
                "step 4: no deny or allow rule matched → deny (default-deny)".into()
            }
            Reason::StaleClassification => "stale classification → deny".into(),
            Reason::RuleExpired => format!(
                "step 4: no rule in force matched; allow rule `{rule}` would have, but it \
                 expired → deny (rule-expired)"
            ),
            Reason::ProbeContained => {
                "the source is contained on this sidecar after a probe → deny; no rule is \
                 consulted"
                    .into()
            }
        }
    }

    /// Whether `candidate` is the rule the verdict names.
    pub fn decides(&self, candidate: &Candidate<'_>) -> bool {
        self.verdict.rule == Some(candidate.rule.name.as_str())
    }

    /// Why `candidate` did not decide: the check it failed (naming the selectors, methods or
    /// patterns the request missed), `dry_run`, or what decided instead. `None` when it decided.
    pub fn why_not(
        &self,
        candidate: &Candidate<'_>,
        policy: &CompiledPolicy,
        req: &Request<'_>,
    ) -> Option<String> {
        match candidate.check {
            Check::Missed(miss) => Some(miss_text(miss, candidate.rule, policy, req)),
            Check::DryRun => Some("dry_run: reported as would-deny, never refuses".into()),
            Check::Expired => Some(format!(
                "expired at {}: matches nothing since",
                candidate
                    .rule
                    .expires
                    .map_or_else(String::new, super::validate::format_time)
            )),
            Check::Matched if self.decides(candidate) => None,
            Check::Matched => Some(self.outranked_text(candidate.rule)),
        }
    }

    /// Why a rule that matched did not decide.
    fn outranked_text(&self, rule: &Rule) -> String {
        let decider = self.verdict.rule.unwrap_or("-");
        match (self.verdict.reason, rule.effect) {
            (Reason::Revoked, _) => "not consulted: the source is revoked (step 1)".into(),
            (Reason::AmbiguousPath, _) => "not consulted: the path is ambiguous".into(),
            (Reason::DenyRule, Effect::Allow) => format!("overridden by deny rule `{decider}`"),
            (Reason::DryRunDeny, Effect::Allow) => {
                format!("lets the request through; dry_run rule `{decider}` reports would-deny")
            }
            _ => format!("`{decider}` decides: the first matching rule of its kind by name"),
        }
    }

    /// The first matched allow rule by name.
    fn first_allow(&self) -> Option<&str> {
        self.candidates
            .iter()
            .find(|c| c.check == Check::Matched && c.rule.effect == Effect::Allow)
            .map(|c| c.rule.name.as_str())
    }
}

/// The check `rule` failed, with what the request missed.
fn miss_text(miss: Miss, rule: &Rule, policy: &CompiledPolicy, req: &Request<'_>) -> String {
    let list = |items: Vec<String>| format!("[{}]", items.join(", "));
    let selectors = |ts: &[Target]| list(ts.iter().map(|&t| policy.selector_text(t)).collect());
    match miss {
        Miss::Source => format!("source not selected by from: {}", selectors(&rule.from)),
        Miss::Destination => format!("destination not selected by to: {}", selectors(&rule.to)),
        Miss::Method => {
            let names = rule.methods.as_ref().map(|m| m.names()).unwrap_or_default();
            let names = names.into_iter().map(str::to_owned).collect();
            format!("method {} not in methods: {}", req.method, list(names))
        }
        Miss::Http => {
            "names methods or paths: an HTTP rule, it never allows a TCP connection".to_owned()
        }
        Miss::Path => {
            let patterns = rule.paths.iter().flatten().map(|p| p.to_string()).collect();
            format!(
                "path {} matches none of paths: {}",
                req.path,
                list(patterns)
            )
        }
    }
}

/// The request as the checks need it: segment ids, method, both spellings of the path.
struct Facts<'a> {
    source: Vec<u32>,
    destination: Vec<u32>,
    method: &'a str,
    path: &'a NormalizedPath,
    /// The spelling a lenient upstream routes, when it differs and stays under the root.
    variant: Option<NormalizedPath>,
    /// A TCP connection: no method, no path (`method` and `path` are not read).
    connection: bool,
}

impl Facts<'_> {
    /// The rule as a candidate, or `None` when it selects neither party.
    fn candidate<'p>(&self, policy: &CompiledPolicy, rule: &'p Rule) -> Option<Candidate<'p>> {
        let from = rule.from.iter().any(|&t| policy.selects(t, &self.source));
        let to = rule
            .to
            .iter()
            .any(|&t| policy.selects(t, &self.destination));
        let check = match (from, to) {
            (false, false) => return None,
            (false, true) => Check::Missed(Miss::Source),
            (true, false) => Check::Missed(Miss::Destination),
            (true, true) => self.check_request(rule),
        };
        Some(Candidate { rule, check })
    }

    /// Methods, then paths; deny rules also on the upstream spelling (it can add denials,
    /// never allows — as in `decide`).
    fn check_request(&self, rule: &Rule) -> Check {
        if self.connection {
            return match (rule.matches_connection(), rule.effect == Effect::Deny) {
                (false, _) => Check::Missed(Miss::Http),
                (true, _) if rule.expired => Check::Expired,
                (true, true) if rule.dry_run => Check::DryRun,
                (true, _) => Check::Matched,
            };
        }
        let bit = MethodBit::of(self.method);
        if !rule
            .methods
            .as_ref()
            .is_none_or(|m| m.contains(bit, self.method))
        {
            return Check::Missed(Miss::Method);
        }
        let deny = rule.effect == Effect::Deny;
        let mut spellings = std::iter::once(self.path).chain(self.variant.iter().filter(|_| deny));
        let path_ok = |path: &NormalizedPath| {
            let trimmed = trim_trailing_slash(path.as_str());
            rule.paths
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| p.matches_trimmed(trimmed)))
        };
        match (spellings.any(path_ok), deny && rule.dry_run) {
            (false, _) => Check::Missed(Miss::Path),
            (true, _) if rule.expired => Check::Expired,
            (true, true) => Check::DryRun,
            (true, false) => Check::Matched,
        }
    }
}

/// §3 steps 2–4 read off the candidates (sorted by name, so "first" is first by name).
fn from_candidates<'p>(candidates: &[Candidate<'p>]) -> Verdict<'p> {
    let first = |check: Check, effect: Effect| {
        candidates
            .iter()
            .find(|c| c.check == check && c.rule.effect == effect)
            .map(|c| c.rule.name.as_str())
    };
    let deny = first(Check::Matched, Effect::Deny);
    let (decision, reason, rule) = match (deny, first(Check::Matched, Effect::Allow)) {
        (Some(d), _) => (Decision::Deny, Reason::DenyRule, Some(d)),
        (None, Some(a)) => match first(Check::DryRun, Effect::Deny) {
            Some(dry) => (Decision::WouldDeny, Reason::DryRunDeny, Some(dry)),
            None => (Decision::Allow, Reason::AllowRule, Some(a)),
        },
        (None, None) => match first(Check::Expired, Effect::Allow) {
            Some(e) => (Decision::Deny, Reason::RuleExpired, Some(e)),
            None => (Decision::Deny, Reason::DefaultDeny, None),
        },
    };
    Verdict {
        decision,
        reason,
        rule,
    }
}

/// A deny decided before any rule.
fn refused<'p>(reason: Reason) -> Verdict<'p> {
    Verdict {
        decision: Decision::Deny,
        reason,
        rule: None,
    }
}

#[cfg(test)]
mod tests;

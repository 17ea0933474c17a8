//! Lints for `segward policy check` (docs/policy-language.md): findings about a *valid* policy that an
//! operator probably did not mean. Never on the request path; a lint never rejects a policy.
//!
//! - `shadowed-by-deny`: an allow rule every request of which a deny rule refuses.
//! - `crosses-denied-boundary`: an allow rule partly inside a label boundary a deny refuses.
//! - `wildcard-allow-on-critical`: `"*"` allowed to reach a segment labelled `critical`.
//! - `unused-segment`: a segment no rule selects, by name or by label.
//! - `empty-label-selector`: a label selector that matches no segment.
//! - `rule-expired` / `rule-expiring`: an exception whose `expires:` passed / comes within
//!   [`LintOptions::warn_within_secs`]; `revocation-lifted`: a `revoked:` entry past `until`;
//!   `test-suspended`: a test a `suspend_tests` containment keeps from running.
//!
//! The segmentation lints of docs/blast-radius.md read [`LintOptions::boundary_label`] (`env`):
//! - `identity-spans-boundary`: a segment shares an identity (some SPIFFE ID matches a
//!   pattern of each, see [`IdentityPattern::overlaps`](crate::policy::pattern::IdentityPattern::overlaps))
//!   with a segment of another boundary value; reported once, at the later-defined segment.
//!   A segment without the boundary label has no value, so it never differs.
//! - `wide-source`: an allow rule into a segment labelled `tier: critical` whose source is
//!   *wider* than [`LintOptions::wide_source_threshold`]. A source's width is the number of
//!   distinct identities the patterns of the segments its `from` covers can name: an exact
//!   pattern names one; a pattern with `*` or `**` names unboundedly many, and so does any
//!   selector (a name or labels) covering a segment with such a pattern. A `"*"` source is
//!   `wildcard-allow-on-critical`'s finding and is not reported again here.
//! - `reach-crosses-boundary`: an allow rule grants reach (after deny carve-outs, as
//!   `policy reach` computes it) from a class of one boundary value into a class whose
//!   value differs, and neither its `from` nor its `to` is a label selector on the boundary
//!   label. Classes without the label, and folded `→ *` edges, are not judged.
//!
//! The connection lints ([`http_only_allows`], [`http_denies_matching_connections`]) are not
//! findings of `policy check`: the sidecar warns with them at start-up for its TCP listener
//! and destinations.

use std::collections::BTreeMap;
use std::fmt;

use super::reach::{Reach, Selector, reach};
use crate::policy::compiled::{CompiledPolicy, Loc, Rule, Target};
use crate::policy::method::MethodSet;
use crate::policy::pattern::{PathPattern, PatternSegment, segments_overlap};
use crate::policy::source::Effect;

mod connection;
mod expiry;
mod segmentation;

pub use connection::{http_denies_matching_connections, http_only_allows};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// Short kebab-case name of the lint, e.g. `shadowed-by-deny`.
    pub kind: &'static str,
    /// `file:line:col` of the rule or segment concerned.
    pub at: String,
    /// What is wrong and what it means.
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning[{}]: {}", self.at, self.kind, self.message)
    }
}

/// The label whose values are the segmentation boundaries unless `--boundary-label` says so.
pub const DEFAULT_BOUNDARY_LABEL: &str = "env";

/// `wide-source` fires above this many identities. Ten or fewer exact identities were each
/// named on purpose and fit in one review; one `*` or `**` is already unbounded.
pub const WIDE_SOURCE_THRESHOLD: usize = 10;

/// What the lints take as given; the default is `policy check` without flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintOptions {
    /// The label whose values are the segmentation boundaries (`env`, `--boundary-label`).
    pub boundary_label: String,
    /// `wide-source` fires when a source can name more identities than this.
    pub wide_source_threshold: usize,
    /// `rule-expiring` fires for rules expiring within this many seconds (`--warn-within`).
    pub warn_within_secs: i64,
}

/// `--warn-within` by default: a week.
pub const DEFAULT_WARN_WITHIN_SECS: i64 = 7 * 24 * 3600;

impl Default for LintOptions {
    fn default() -> Self {
        Self {
            boundary_label: DEFAULT_BOUNDARY_LABEL.to_owned(),
            wide_source_threshold: WIDE_SOURCE_THRESHOLD,
            warn_within_secs: DEFAULT_WARN_WITHIN_SECS,
        }
    }
}

/// Every finding with the default [`LintOptions`], in a stable order (by location).
pub fn lint(policy: &CompiledPolicy) -> Vec<Lint> {
    lint_with(policy, &LintOptions::default())
}

/// Every finding under `options`, in a stable order (by location). Computes the complete
/// reach for `reach-crosses-boundary`; a caller that has it already passes it to
/// [`lint_with_reach`].
pub fn lint_with(policy: &CompiledPolicy, options: &LintOptions) -> Vec<Lint> {
    let all = reach(policy, ("*", &Selector::Any), ("*", &Selector::Any)).ok();
    lint_with_reach(policy, options, all.as_ref())
}

/// [`lint_with`] on the complete reach already computed (`None`: the reach walk gave up, so
/// `reach-crosses-boundary` is skipped).
pub fn lint_with_reach(
    policy: &CompiledPolicy,
    options: &LintOptions,
    reach: Option<&Reach>,
) -> Vec<Lint> {
    let sides: Vec<Sides> = policy
        .rules()
        .iter()
        .map(|r| Sides::of(policy, r))
        .collect();
    let mut out = Vec::new();
    deny_overlaps(policy, &sides, &mut out);
    wildcard_on_critical(policy, &sides, &mut out);
    unused_segments(policy, &mut out);
    empty_label_selectors(policy, &mut out);
    segmentation::identity_spans_boundary(policy, &options.boundary_label, &mut out);
    segmentation::wide_source(policy, &sides, options.wide_source_threshold, &mut out);
    if let Some(reach) = reach {
        segmentation::reach_crosses_boundary(policy, reach, &options.boundary_label, &mut out);
    }
    expiry::expiries(policy, options.warn_within_secs, &mut out);
    out.sort_by(|a, b| (&a.at, a.kind).cmp(&(&b.at, b.kind)));
    out
}

/// What a selector list covers: every identity (`"*"`), or a set of segments.
#[derive(Debug, Default)]
struct Cover {
    any: bool,
    /// Segment ids, ascending.
    segments: Vec<u32>,
}

impl Cover {
    fn of(policy: &CompiledPolicy, targets: &[Target]) -> Self {
        let mut cover = Self::default();
        for &t in targets {
            cover.any |= t == Target::Any;
            if t != Target::Any {
                cover.segments.extend(policy.members(t));
            }
        }
        cover.segments.sort_unstable();
        cover.segments.dedup();
        cover
    }

    fn has(&self, segment: u32) -> bool {
        self.any || self.segments.binary_search(&segment).is_ok()
    }

    /// Every identity `other` selects, `self` selects too.
    fn covers(&self, other: &Cover) -> bool {
        self.any || (!other.any && other.segments.iter().all(|s| self.has(*s)))
    }

    fn overlaps(&self, other: &Cover) -> bool {
        let some = |c: &Cover| c.any || !c.segments.is_empty();
        (self.any && some(other))
            || (other.any && some(self))
            || other
                .segments
                .iter()
                .any(|s| self.segments.binary_search(s).is_ok())
    }
}

/// Both sides of a rule, resolved to segment sets once.
struct Sides {
    from: Cover,
    to: Cover,
}

impl Sides {
    fn of(policy: &CompiledPolicy, rule: &Rule) -> Self {
        Self {
            from: Cover::of(policy, &rule.from),
            to: Cover::of(policy, &rule.to),
        }
    }
}

fn finding(policy: &CompiledPolicy, kind: &'static str, at: Loc, message: String) -> Lint {
    Lint {
        kind,
        at: policy.locate(at),
        message,
    }
}

/// Allow rules a deny rule shadows entirely, or cuts through along a label boundary.
fn deny_overlaps(policy: &CompiledPolicy, sides: &[Sides], out: &mut Vec<Lint>) {
    let rules = policy.rules();
    let candidates = AllowsByDestination::new(policy, sides);
    for (d, deny) in rules.iter().enumerate() {
        if deny.effect != Effect::Deny || deny.dry_run {
            continue;
        }
        let labelled = deny
            .from
            .iter()
            .chain(&deny.to)
            .any(|t| matches!(t, Target::Group(_)));
        for a in candidates.reaching(&sides[d].to) {
            let allow = &rules[a];
            if !sides[d].from.overlaps(&sides[a].from) || !overlaps_requests(deny, allow) {
                continue;
            }
            let shadowed = sides[d].from.covers(&sides[a].from)
                && sides[d].to.covers(&sides[a].to)
                && covers_requests(deny, allow);
            let (name, what) = (&allow.name, &deny.name);
            if shadowed {
                let msg = format!(
                    "allow rule `{name}` never allows anything: deny rule `{what}` refuses every request it matches"
                );
                out.push(finding(policy, "shadowed-by-deny", allow.at, msg));
            } else if labelled {
                let msg = format!(
                    "allow rule `{name}` crosses the label boundary denied by `{what}`; the deny wins for the requests both match"
                );
                out.push(finding(policy, "crosses-denied-boundary", allow.at, msg));
            }
        }
    }
}

/// Allow rules filed by the destination segments they reach, so a deny is compared only
/// with the allows that share a destination (50k rules would be 10^9 pairs otherwise).
struct AllowsByDestination {
    by_segment: Vec<Vec<usize>>,
    to_any: Vec<usize>,
    all: Vec<usize>,
}

impl AllowsByDestination {
    fn new(policy: &CompiledPolicy, sides: &[Sides]) -> Self {
        let mut index = Self {
            by_segment: vec![Vec::new(); policy.segments().len()],
            to_any: Vec::new(),
            all: Vec::new(),
        };
        for (r, _) in policy
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.effect == Effect::Allow)
        {
            index.all.push(r);
            if sides[r].to.any {
                index.to_any.push(r);
            }
            sides[r]
                .to
                .segments
                .iter()
                .for_each(|&s| index.by_segment[s as usize].push(r));
        }
        index
    }

    /// Allow rules whose destinations overlap `to`, each once, ascending.
    fn reaching(&self, to: &Cover) -> Vec<usize> {
        if to.any {
            return self.all.clone();
        }
        let mut out = self.to_any.clone();
        to.segments
            .iter()
            .for_each(|&s| out.extend(&self.by_segment[s as usize]));
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// `"*"` allowed into a segment carrying a label whose value is `critical`.
fn wildcard_on_critical(policy: &CompiledPolicy, sides: &[Sides], out: &mut Vec<Lint>) {
    let critical: Vec<usize> = (0..policy.segments().len())
        .filter(|&s| {
            policy.segments()[s]
                .labels
                .values()
                .any(|v| v == "critical")
        })
        .collect();
    for (r, rule) in policy.rules().iter().enumerate() {
        if rule.effect != Effect::Allow || !sides[r].from.any {
            continue;
        }
        let reached = critical.iter().find(|&&s| sides[r].to.has(s as u32));
        if let Some(&s) = reached {
            let seg = &policy.segments()[s].name;
            let msg = format!(
                "allow rule `{}` lets any identity (\"*\") reach critical segment `{seg}`",
                rule.name
            );
            out.push(finding(policy, "wildcard-allow-on-critical", rule.at, msg));
        }
    }
}

/// Segments that no rule selects by name or by label.
fn unused_segments(policy: &CompiledPolicy, out: &mut Vec<Lint>) {
    let mut used = vec![false; policy.segments().len()];
    for rule in policy.rules() {
        for &t in rule
            .from
            .iter()
            .chain(&rule.to)
            .filter(|t| **t != Target::Any)
        {
            policy
                .members(t)
                .into_iter()
                .for_each(|s| used[s as usize] = true);
        }
    }
    for (_, segment) in policy
        .segments()
        .iter()
        .enumerate()
        .filter(|(s, _)| !used[*s])
    {
        let msg = format!(
            "segment `{}` is not selected by any rule, by name or by label",
            segment.name
        );
        out.push(finding(policy, "unused-segment", segment.at, msg));
    }
}

/// Label selectors that match no segment: probably a typo in a label.
fn empty_label_selectors(policy: &CompiledPolicy, out: &mut Vec<Lint>) {
    for rule in policy.rules() {
        for t in rule.from.iter().chain(&rule.to) {
            let Target::Group(g) = t else { continue };
            let group = &policy.groups()[*g as usize];
            if group.members.is_empty() {
                let labels: BTreeMap<_, _> = group.labels.iter().collect();
                let msg = format!(
                    "label selector {labels:?} in rule `{}` matches no segment",
                    rule.name
                );
                out.push(finding(policy, "empty-label-selector", rule.at, msg));
            }
        }
    }
}

/// Every (method, path) request `allow` matches, `deny` matches too.
fn covers_requests(deny: &Rule, allow: &Rule) -> bool {
    let methods = match (&deny.methods, &allow.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(d), Some(a)) => d.covers(a),
    };
    let paths = match (&deny.paths, &allow.paths) {
        (None, _) => true,
        (Some(d), None) => d.iter().any(|p| p.segments.is_empty() && p.globstar),
        (Some(d), Some(a)) => a.iter().all(|ap| d.iter().any(|dp| path_covers(dp, ap))),
    };
    methods && paths
}

/// Some (method, path) request matches both rules.
fn overlaps_requests(deny: &Rule, allow: &Rule) -> bool {
    let methods = match (&deny.methods, &allow.methods) {
        (Some(d), Some(a)) => MethodSet::overlaps(d, a),
        _ => true,
    };
    let paths = match (&deny.paths, &allow.paths) {
        (Some(d), Some(a)) => a.iter().any(|ap| d.iter().any(|dp| paths_overlap(dp, ap))),
        _ => true,
    };
    methods && paths
}

/// Every path `inner` matches, `outer` matches.
fn path_covers(outer: &PathPattern, inner: &PathPattern) -> bool {
    let seg_covers = |o: &PatternSegment, i: &PatternSegment| o == &PatternSegment::Star || o == i;
    let (o, i) = (&outer.segments, &inner.segments);
    if outer.globstar {
        i.len() >= o.len() && o.iter().zip(i).all(|(o, i)| seg_covers(o, i))
    } else {
        !inner.globstar && o.len() == i.len() && o.iter().zip(i).all(|(o, i)| seg_covers(o, i))
    }
}

/// Some path matches both patterns.
fn paths_overlap(a: &PathPattern, b: &PathPattern) -> bool {
    segments_overlap((&a.segments, a.globstar), (&b.segments, b.globstar))
}

#[cfg(test)]
mod tests;

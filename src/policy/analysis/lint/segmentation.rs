//! The segmentation lints of docs/blast-radius.md: `identity-spans-boundary` and `wide-source` read
//! the compiled policy and its identity trie only (no all-pairs over patterns);
//! `reach-crosses-boundary` reads the complete reach answer (`policy reach`).

use std::collections::BTreeSet;

use super::{Lint, Sides, finding};
use crate::policy::analysis::reach::{ANY_DESTINATION, Reach};
use crate::policy::compiled::{CompiledPolicy, Loc, Rule, Segment, Target};
use crate::policy::pattern::IdentityPattern;
use crate::policy::source::Effect;

/// The label and value that mark a segment as critical for `wide-source`.
const CRITICAL: (&str, &str) = ("tier", "critical");

/// How many overlapping segments one `identity-spans-boundary` message names in full.
const NAMED: usize = 3;

/// A segment with a boundary value shares an identity with an earlier-defined segment of
/// another value: one finding per later segment, naming the pattern pairs that overlap.
/// Each pattern costs one trie walk ([`IdentityPattern::overlaps`] only names the pair).
pub(super) fn identity_spans_boundary(policy: &CompiledPolicy, label: &str, out: &mut Vec<Lint>) {
    let segments = policy.segments();
    for segment in segments {
        let Some(mine) = segment.labels.get(label) else {
            continue;
        };
        let mut shared: Vec<Shared<'_>> = Vec::new();
        for pattern in &segment.identities {
            for t in policy.classifier.segments_overlapping(pattern) {
                let other = &segments[t as usize];
                let differs = other.labels.get(label).is_some_and(|v| v != mine);
                if !differs || !defined_before(other.at, segment.at) {
                    continue;
                }
                if let Some(theirs) = other.identities.iter().find(|q| q.overlaps(pattern)) {
                    shared.push(Shared {
                        other,
                        mine: pattern,
                        theirs,
                    });
                }
            }
        }
        shared.sort_by(|a, b| a.other.name.cmp(&b.other.name));
        shared.dedup_by(|a, b| a.other.name == b.other.name);
        if !shared.is_empty() {
            let msg = spans_message(segment, label, mine, &shared);
            out.push(finding(policy, "identity-spans-boundary", segment.at, msg));
        }
    }
}

/// An allow rule whose source is wider than `threshold` identities and whose `to` covers a
/// segment labelled `tier: critical`. A `"*"` source is left to `wildcard-allow-on-critical`.
pub(super) fn wide_source(
    policy: &CompiledPolicy,
    sides: &[Sides],
    threshold: usize,
    out: &mut Vec<Lint>,
) {
    let segments = policy.segments();
    let critical: Vec<bool> = segments
        .iter()
        .map(|s| s.labels.get(CRITICAL.0).is_some_and(|v| v == CRITICAL.1))
        .collect();
    let Some(any_critical) = critical.iter().position(|c| *c) else {
        return;
    };
    for (r, rule) in policy.rules().iter().enumerate() {
        let (from, to) = (&sides[r].from, &sides[r].to);
        if rule.effect != Effect::Allow || from.any {
            continue;
        }
        let reached = if to.any {
            Some(any_critical)
        } else {
            to.segments
                .iter()
                .map(|&s| s as usize)
                .find(|&s| critical[s])
        };
        let Some(reached) = reached else { continue };
        let width = Width::of(segments, &from.segments, threshold);
        if let Some(why) = width.beyond(threshold) {
            let msg = format!(
                "allow rule `{}` lets a wide source reach critical segment `{}` ({}: {}): {why}",
                rule.name, segments[reached].name, CRITICAL.0, CRITICAL.1
            );
            out.push(finding(policy, "wide-source", rule.at, msg));
        }
    }
}

/// One earlier segment of another boundary value, and a pattern pair through which they
/// share an identity.
struct Shared<'p> {
    other: &'p Segment,
    mine: &'p IdentityPattern,
    theirs: &'p IdentityPattern,
}

/// How many identities a source selector can name (see the module docs of `lint`).
enum Width<'p> {
    /// A pattern with `*` or `**`: no bound.
    Unbounded(&'p Segment, &'p IdentityPattern),
    /// This many distinct exact identities.
    Identities(usize),
}

impl<'p> Width<'p> {
    /// The width of the segments `from` covers; exact patterns are de-duplicated only when
    /// their plain count passes `threshold` (the common one-segment source costs nothing).
    fn of(segments: &'p [Segment], from: &[u32], threshold: usize) -> Self {
        let covered = || from.iter().map(|&s| &segments[s as usize]);
        for segment in covered() {
            if let Some(p) = segment.identities.iter().find(|p| !p.is_exact()) {
                return Self::Unbounded(segment, p);
            }
        }
        let count: usize = covered().map(|s| s.identities.len()).sum();
        if count <= threshold {
            return Self::Identities(count);
        }
        let distinct: BTreeSet<&IdentityPattern> = covered().flat_map(|s| &s.identities).collect();
        Self::Identities(distinct.len())
    }

    /// Why the width exceeds `threshold`, if it does.
    fn beyond(&self, threshold: usize) -> Option<String> {
        match self {
            Self::Unbounded(segment, pattern) => Some(format!(
                "segment `{}` names `{pattern}`, which matches any number of identities",
                segment.name
            )),
            Self::Identities(n) if *n > threshold => Some(format!(
                "it names {n} identities, more than the wide-source threshold of {threshold}"
            )),
            Self::Identities(_) => None,
        }
    }
}

/// Whether `a` comes before `b` in the policy's files (file order, then line, then column).
fn defined_before(a: Loc, b: Loc) -> bool {
    (a.file, a.line, a.col) < (b.file, b.line, b.col)
}

fn spans_message(segment: &Segment, label: &str, mine: &str, shared: &[Shared<'_>]) -> String {
    let mut named: Vec<String> = shared
        .iter()
        .take(NAMED)
        .map(|s| {
            let theirs = s.other.labels.get(label).map_or("", String::as_str);
            format!(
                "`{}` ({label}: {theirs}) through `{}` and `{}`",
                s.other.name, s.mine, s.theirs
            )
        })
        .collect();
    if shared.len() > NAMED {
        named.push(format!("and {} more", shared.len() - NAMED));
    }
    format!(
        "segment `{}` ({label}: {mine}) shares identities with segments of another `{label}`: {}; \
         such an identity is on both sides of the boundary",
        segment.name,
        named.join(", ")
    )
}

/// How many crossing pairs one `reach-crosses-boundary` message names in full.
const PAIRS_NAMED: usize = 3;

/// An allow rule grants reach from a class of one boundary value into a class of another
/// (read off the complete reach answer, so deny carve-outs count), and neither its `from`
/// nor its `to` selects by the boundary label: the crossing is a side effect of naming
/// segments, not a decision written down. One finding per rule, at the rule.
pub(super) fn reach_crosses_boundary(
    policy: &CompiledPolicy,
    reach: &Reach,
    label: &str,
    out: &mut Vec<Lint>,
) {
    let crossing = crossings(policy, reach, label);
    for (rule, pairs) in policy.rules().iter().zip(crossing) {
        if pairs.is_empty() {
            continue;
        }
        let mut shown: Vec<&str> = pairs.iter().take(PAIRS_NAMED).map(String::as_str).collect();
        let more = pairs.len().saturating_sub(PAIRS_NAMED);
        let extra = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        shown.sort_unstable();
        let msg = format!(
            "allow rule `{}` lets {}{extra} cross the `{label}` boundary, but neither its \
             `from` nor its `to` selects by `{label}`; if the crossing is meant, say so with \
             a label selector (e.g. `from: [{{ {label}: ... }}]`)",
            rule.name,
            shown.join(", ")
        );
        out.push(finding(policy, "reach-crosses-boundary", rule.at, msg));
    }
}

/// Rule index → the crossing pairs it grants (`staging -> payments (staging → prod)`), for
/// allow rules that select by neither side's boundary label.
fn crossings(policy: &CompiledPolicy, reach: &Reach, label: &str) -> Vec<BTreeSet<String>> {
    let values = |segments: &[String]| -> BTreeSet<&str> {
        segments
            .iter()
            .filter_map(|name| policy.segment_id(name))
            .filter_map(|s| policy.segments()[s as usize].labels.get(label))
            .map(String::as_str)
            .collect()
    };
    let mut crossing: Vec<BTreeSet<String>> = vec![BTreeSet::new(); policy.rules().len()];
    for edge in reach
        .edges
        .iter()
        .filter(|e| e.destination.name != ANY_DESTINATION)
    {
        let (from, to) = (
            values(&edge.source.segments),
            values(&edge.destination.segments),
        );
        if from.is_empty() || to.is_empty() || to.is_subset(&from) {
            continue;
        }
        let join = |v: &BTreeSet<&str>| v.iter().copied().collect::<Vec<_>>().join("+");
        let pair = format!(
            "{} -> {} ({} → {})",
            edge.source.name,
            edge.destination.name,
            join(&from),
            join(&to)
        );
        for r in unlabelled_allows(policy, &edge.allow_rules, label) {
            crossing[r].insert(pair.clone());
        }
    }
    crossing
}

/// The indexes of the named rules whose `from` and `to` select by no label selector on
/// `label`.
fn unlabelled_allows(policy: &CompiledPolicy, names: &[String], label: &str) -> Vec<usize> {
    let names_label = |rule: &Rule| {
        rule.from
            .iter()
            .chain(&rule.to)
            .any(|t| matches!(t, Target::Group(g) if policy.groups()[*g as usize].labels.contains_key(label)))
    };
    let rules = policy.rules();
    names
        .iter()
        .filter_map(|name| rules.binary_search_by(|x| x.name.as_str().cmp(name)).ok())
        .filter(|r| !names_label(&rules[*r]))
        .collect()
}

#[cfg(test)]
mod tests;

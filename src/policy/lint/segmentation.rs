//! The segmentation lints of PRODUCT.md §9: `identity-spans-boundary` and `wide-source` read
//! the compiled policy and its identity trie only (no all-pairs over patterns);
//! `reach-crosses-boundary` reads the complete reach answer (`policy reach`).

use std::collections::BTreeSet;

use super::{Lint, Sides, finding};
use crate::policy::compiled::{CompiledPolicy, Loc, Rule, Segment, Target};
use crate::policy::pattern::IdentityPattern;
use crate::policy::reach::{ANY_DESTINATION, Reach};
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
    let values = |segments: &[String]| -> BTreeSet<&str> {
        segments
            .iter()
            .filter_map(|name| policy.segment_id(name))
            .filter_map(|s| policy.segments()[s as usize].labels.get(label))
            .map(String::as_str)
            .collect()
    };
    let names_label = |rule: &Rule| {
        rule.from
            .iter()
            .chain(&rule.to)
            .any(|t| matches!(t, Target::Group(g) if policy.groups()[*g as usize].labels.contains_key(label)))
    };
    // Rule index → the crossing pairs it grants ("staging -> payments (staging → prod)").
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
        for name in &edge.allow_rules {
            let Ok(r) = policy
                .rules()
                .binary_search_by(|x| x.name.as_str().cmp(name))
            else {
                continue;
            };
            if !names_label(&policy.rules()[r]) {
                crossing[r].insert(pair.clone());
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use crate::policy::from_text;
    use crate::policy::lint::{LintOptions, lint, lint_with};

    /// The brief's case: a prod service account also inside a staging `**` segment.
    const SPANS: &str = r#"
segments:
  prod-api:    { identities: ["spiffe://example.org/sa/api"], labels: { env: prod, tier: web } }
  staging-api: { identities: ["spiffe://example.org/sa/**"], labels: { env: staging, tier: web } }
rules:
  - { name: a, from: [prod-api], to: [staging-api] }
  - { name: b, from: [staging-api], to: [prod-api] }
"#;

    fn found(text: &str, options: &LintOptions) -> Vec<(&'static str, String, String)> {
        let p = from_text("p.yaml", text).unwrap();
        lint_with(&p, options)
            .into_iter()
            .filter(|l| l.kind != "reach-crosses-boundary")
            .map(|l| (l.kind, l.at, l.message))
            .collect()
    }

    /// The kinds found, `reach-crosses-boundary` aside (its fixtures are below).
    fn kinds(text: &str) -> Vec<&'static str> {
        let p = from_text("p.yaml", text).unwrap();
        let kinds = lint(&p).into_iter().map(|l| l.kind);
        kinds.filter(|k| *k != "reach-crosses-boundary").collect()
    }

    #[test]
    fn an_identity_in_segments_of_two_env_values_spans_the_boundary() {
        let found = found(SPANS, &LintOptions::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let (kind, at, message) = &found[0];
        assert_eq!(*kind, "identity-spans-boundary");
        // Reported at the later-defined segment, naming both segments, values and patterns.
        assert_eq!(at, "p.yaml:4:3");
        for part in [
            "`staging-api` (env: staging)",
            "`prod-api` (env: prod)",
            "`spiffe://example.org/sa/**` and `spiffe://example.org/sa/api`",
        ] {
            assert!(message.contains(part), "missing {part}: {message}");
        }
    }

    #[test]
    fn the_boundary_label_decides_what_spans_a_boundary() {
        let tier = LintOptions {
            boundary_label: "tier".into(),
            ..LintOptions::default()
        };
        // Both segments are `tier: web`: no boundary between them by that label.
        assert!(found(SPANS, &tier).is_empty());
    }

    #[test]
    fn disjoint_patterns_equal_values_or_a_missing_label_do_not_span() {
        let text = r#"
segments:
  prod-api:   { identities: ["spiffe://example.org/prod/*"], labels: { env: prod } }
  stage-api:  { identities: ["spiffe://example.org/staging/**"], labels: { env: staging } }
  other-td:   { identities: ["spiffe://other.org/prod/api"], labels: { env: staging } }
  prod-too:   { identities: ["spiffe://example.org/prod/api"], labels: { env: prod } }
  unlabelled: { identities: ["spiffe://example.org/**"] }
rules:
  - { name: a, from: [prod-api, stage-api, other-td], to: [prod-too, unlabelled] }
"#;
        assert_eq!(kinds(text), Vec::<&str>::new());
    }

    const CRITICAL: &str = r#"
segments:
  pay:   { identities: ["spiffe://t.org/pay"], labels: { env: prod, tier: critical } }
  web:   { identities: ["spiffe://t.org/web"], labels: { env: prod } }
  ci:    { identities: ["spiffe://t.org/ci/**"], labels: { env: prod, team: ci } }
  agent: { identities: ["spiffe://t.org/agent/*/read"], labels: { env: prod } }
rules:
"#;

    fn wide(rules: &str, threshold: usize) -> Vec<(&'static str, String, String)> {
        let options = LintOptions {
            wide_source_threshold: threshold,
            ..LintOptions::default()
        };
        let text = format!("{CRITICAL}{rules}");
        found(&text, &options)
            .into_iter()
            .filter(|(k, _, _)| *k != "unused-segment")
            .collect()
    }

    #[test]
    fn a_wildcard_source_into_a_critical_segment_is_wide() {
        let rules = "  - { name: ci-pays, from: [{ team: ci }], to: [pay] }\n  - { name: agents-pay, from: [agent], to: [{ tier: critical }] }\n";
        let found = wide(rules, 10);
        let kinds: Vec<_> = found.iter().map(|f| f.0).collect();
        assert_eq!(kinds, ["wide-source", "wide-source"], "{found:?}");
        assert!(found[0].2.contains("`spiffe://t.org/ci/**`"), "{found:?}");
        assert!(found[0].2.contains("critical segment `pay`"), "{found:?}");
        assert!(
            found[1].2.contains("`spiffe://t.org/agent/*/read`"),
            "{found:?}"
        );
    }

    #[test]
    fn exact_sources_within_the_threshold_or_non_critical_destinations_are_not_wide() {
        let rules = "  - { name: web-pays, from: [web], to: [pay] }\n  - { name: ci-webs, from: [ci], to: [web] }\n  - { name: d, effect: deny, from: [ci], to: [pay] }\n";
        assert!(wide(rules, 10).is_empty());
        // Above the threshold, exact identities count too: two sources, threshold one.
        let rules = "  - { name: two-pay, from: [web, pay], to: [pay] }\n";
        let found = wide(rules, 1);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("names 2 identities"), "{found:?}");
    }

    #[test]
    fn a_star_source_is_only_wildcard_allow_on_critical() {
        let rules = "  - { name: open, from: [\"*\"], to: [pay] }\n";
        let kinds: Vec<_> = wide(rules, 10).into_iter().map(|f| f.0).collect();
        assert_eq!(kinds, ["wildcard-allow-on-critical"]);
    }

    fn crossing(text: &str) -> Vec<(String, String)> {
        let p = from_text("p.yaml", text).unwrap();
        lint(&p)
            .into_iter()
            .filter(|l| l.kind == "reach-crosses-boundary")
            .map(|l| (l.at, l.message))
            .collect()
    }

    const CROSS_SEGMENTS: &str = r#"
segments:
  web:  { identities: ["spiffe://t.org/web"], labels: { env: prod } }
  api:  { identities: ["spiffe://t.org/api"], labels: { env: prod } }
  ci:   { identities: ["spiffe://t.org/ci"], labels: { env: staging } }
  tool: { identities: ["spiffe://t.org/tool"] }
rules:
"#;

    #[test]
    fn an_allow_by_segment_names_across_env_values_crosses_the_boundary() {
        let text = format!(
            "{CROSS_SEGMENTS}  - {{ name: ci-calls-api, from: [ci], to: [api, web] }}
  - {{ name: web-calls-api, from: [web], to: [api] }}
"
        );
        let found = crossing(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].0.starts_with("p.yaml:8:"), "{found:?}");
        assert!(
            found[0].1.contains("ci -> api (staging → prod)"),
            "{found:?}"
        );
        assert!(
            found[0].1.contains("ci -> web (staging → prod)"),
            "{found:?}"
        );
    }

    #[test]
    fn a_crossing_written_by_label_carved_away_or_unlabelled_does_not_warn() {
        // Said by label on one side; carved out entirely by a deny; a class with no label.
        let text = format!(
            "{CROSS_SEGMENTS}  - {{ name: by-label, from: [{{ env: staging }}], to: [api] }}
  - {{ name: carved, from: [ci], to: [web] }}
  - {{ name: no, effect: deny, from: [ci], to: [web] }}
  - {{ name: tooling, from: [tool], to: [api] }}
"
        );
        assert_eq!(crossing(&text), Vec::<(String, String)>::new());
        // The boundary label decides: by `tier` (which no segment has) nothing crosses.
        let p = from_text(
            "p.yaml",
            &format!(
                "{CROSS_SEGMENTS}  - {{ name: x, from: [ci], to: [api] }}
"
            ),
        )
        .unwrap();
        let by_tier = LintOptions {
            boundary_label: "tier".to_owned(),
            ..LintOptions::default()
        };
        assert!(
            lint_with(&p, &by_tier)
                .iter()
                .all(|l| l.kind != "reach-crosses-boundary")
        );
        assert!(lint(&p).iter().any(|l| l.kind == "reach-crosses-boundary"));
    }
}

//! Unit tests of the segmentation lints, each on a fixture of its own.

use crate::policy::analysis::lint::{LintOptions, lint, lint_with};
use crate::policy::from_text;

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

//! Unit tests of the lints of `policy check` (the segmentation lints have their own, in
//! `segmentation/tests.rs`).

use super::*;
use crate::policy::from_text;

const SEGMENTS: &str = r#"
segments:
  web:     { identities: ["spiffe://t.org/web"], labels: { env: prod } }
  pay:     { identities: ["spiffe://t.org/pay"], labels: { env: prod, tier: critical } }
  ci:      { identities: ["spiffe://t.org/ci/**"], labels: { env: staging } }
  orphan:  { identities: ["spiffe://t.org/orphan"] }
"#;

fn lints(rules: &str) -> Vec<(&'static str, String)> {
    let p = from_text("p.yaml", &format!("{SEGMENTS}rules:\n{rules}")).unwrap();
    lint(&p).into_iter().map(|l| (l.kind, l.message)).collect()
}

/// The findings of the lints tested here (the segmentation lints have their own fixtures).
fn kinds(rules: &str) -> Vec<&'static str> {
    let others = [
        "unused-segment",
        "wide-source",
        "identity-spans-boundary",
        "reach-crosses-boundary",
    ];
    lints(rules)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !others.contains(k))
        .collect()
}

#[test]
fn an_allow_fully_inside_a_deny_is_shadowed() {
    let rules = "  - { name: a, from: [web], to: [pay], methods: [GET], paths: [\"/v1/x\"] }\n  - { name: d, effect: deny, from: [\"*\"], to: [pay], paths: [\"/v1/**\"] }\n";
    assert_eq!(kinds(rules), ["shadowed-by-deny"]);
}

#[test]
fn an_allow_partly_inside_a_label_deny_crosses_the_boundary() {
    let rules = "  - { name: a, from: [web, ci], to: [pay] }\n  - { name: d, effect: deny, from: [{ env: staging }], to: [{ env: prod }] }\n";
    assert_eq!(kinds(rules), ["crosses-denied-boundary"]);
}

#[test]
fn disjoint_paths_methods_or_dry_runs_do_not_warn() {
    let rules = "  - { name: a, from: [web], to: [pay], paths: [\"/v1/*\"] }\n  - { name: d, effect: deny, from: [web], to: [pay], paths: [\"/admin/**\"] }\n  - { name: e, effect: deny, from: [web], to: [pay], methods: [DELETE], paths: [\"/v1/**\"] }\n  - { name: f, effect: deny, dry_run: true, from: [web], to: [pay] }\n  - { name: g, from: [web], to: [pay], methods: [GET] }\n";
    // `e` shadows nothing: `a` allows all methods and `g` all paths.
    assert_eq!(kinds(rules), Vec::<&str>::new());
}

#[test]
fn wildcard_allow_into_a_critical_segment_warns() {
    let rules = "  - { name: open, from: [\"*\"], to: [pay], methods: [GET] }\n";
    assert_eq!(kinds(rules), ["wildcard-allow-on-critical"]);
    let rules = "  - { name: open, from: [\"*\"], to: [web] }\n";
    assert_eq!(kinds(rules), Vec::<&str>::new());
}

#[test]
fn unused_segments_and_empty_label_selectors_warn() {
    let rules = "  - { name: a, from: [{ env: prod }], to: [{ env: dev }] }\n";
    let found = lints(rules);
    let unused: Vec<&String> = found
        .iter()
        .filter(|(k, _)| *k == "unused-segment")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(unused.len(), 2, "{found:?}");
    assert!(
        unused[0].contains("`ci`") && unused[1].contains("`orphan`"),
        "{found:?}"
    );
    assert!(
        found.iter().any(|(k, _)| *k == "empty-label-selector"),
        "{found:?}"
    );
}

#[test]
fn path_cover_and_overlap_follow_the_pattern_rules() {
    let p = |s: &str| PathPattern::parse(s).unwrap();
    assert!(path_covers(&p("/a/**"), &p("/a")));
    assert!(path_covers(&p("/a/**"), &p("/a/*/c")));
    assert!(path_covers(&p("/**"), &p("/")));
    assert!(path_covers(&p("/a/*"), &p("/a/b")));
    assert!(!path_covers(&p("/a/*"), &p("/a/**")));
    assert!(!path_covers(&p("/a/b"), &p("/a/*")));
    assert!(paths_overlap(&p("/a/*"), &p("/*/b")));
    assert!(paths_overlap(&p("/a/**"), &p("/a")));
    assert!(!paths_overlap(&p("/a/**"), &p("/b")));
    assert!(!paths_overlap(&p("/a/*"), &p("/a")));
}

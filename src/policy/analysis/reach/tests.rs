//! Unit tests of `reach`: the shapes of answers on small policies whose reach is known by
//! construction (the agreement with `decide` on random policies is tests/it/reach_props.rs).

use super::*;
use crate::identity::SpiffeId;
use crate::path::normalize;
use crate::policy::from_text;

const POLICY: &str = r#"
segments:
  frontend: { identities: ["spiffe://example.org/ns/prod/sa/frontend"], labels: { env: prod } }
  payments: { identities: ["spiffe://example.org/ns/prod/sa/payments"], labels: { env: prod, tier: critical } }
  staging:  { identities: ["spiffe://example.org/ns/staging/**"], labels: { env: staging } }
  ci:       { identities: ["spiffe://example.org/ns/staging/ci/*"], labels: { env: staging } }
rules:
  - { name: anyone-reads, from: ["*"], to: [payments], methods: [GET], paths: ["/v1/**"] }
  - { name: frontend-all, from: [frontend], to: [payments] }
  - { name: no-admin, effect: deny, from: ["*"], to: [payments], paths: ["/v1/admin/**"] }
  - { name: no-delete, effect: deny, from: [frontend], to: [payments], methods: [DELETE] }
  - { name: staging-never-prod, effect: deny, from: [{ env: staging }], to: [{ env: prod }] }
  - { name: trial, effect: deny, dry_run: true, from: [frontend], to: [payments], paths: ["/v2/**"] }
  - { name: ci-deploys, from: [ci], to: [staging], methods: [PUT], paths: ["/deploy"] }
revoked: ["spiffe://example.org/ns/staging/ci/leaked"]
"#;

fn reach(from: &str, to: &str) -> Reach {
    let policy = from_text("p.yaml", POLICY).unwrap();
    let (f, t) = (
        Selector::parse(&policy, from).unwrap(),
        Selector::parse(&policy, to).unwrap(),
    );
    super::reach(&policy, (from, &f), (to, &t)).unwrap()
}

fn rows(r: &Reach) -> Vec<String> {
    r.edges
        .iter()
        .map(|e| {
            format!(
                "{} -> {}: {}",
                e.source.name,
                e.destination.name,
                e.requests()
            )
        })
        .collect()
}

#[test]
fn a_deny_that_carves_everything_leaves_no_edge() {
    // `anyone-reads` admits staging, but `staging-never-prod` carves all of it away.
    assert!(reach("staging", "payments").edges.is_empty());
    assert!(
        reach("spiffe://example.org/ns/staging/**", "payments")
            .edges
            .is_empty()
    );
}

#[test]
fn methods_split_where_rules_differ_and_carve_outs_are_listed() {
    let r = reach("frontend", "payments");
    assert_eq!(
        rows(&r),
        [
            "frontend -> payments: GET /** except /v1/admin/**",
            "frontend -> payments: * except DELETE,GET /** except /v1/admin/**",
        ]
    );
    let get = &r.edges[0];
    assert_eq!(get.allow_rules, ["anyone-reads", "frontend-all"]);
    assert_eq!(get.deny_rules, ["no-admin"]);
    assert_eq!(get.dry_run_rules, ["trial"]);
    let path = |p: &str| normalize(p).unwrap();
    assert!(get.covers("get", &path("/v2/x")));
    assert!(!get.covers("GET", &path("/v1/admin/keys")));
    assert!(!r.edges[1].covers("DELETE", &path("/x")));
    assert!(r.edges[1].covers("PATCH", &path("/x")));
}

#[test]
fn pattern_sources_split_into_the_classes_they_can_be() {
    let r = reach("spiffe://example.org/ns/staging/**", "*");
    assert_eq!(
        rows(&r),
        [
            "ci+staging -> ci+staging: PUT /deploy",
            "ci+staging -> staging: PUT /deploy"
        ]
    );
    // The revoked identity is a class of its own, and reaches nothing.
    assert_eq!(r.revoked_sources, ["ci+staging"]);
    let id = reach("spiffe://example.org/ns/staging/ci/leaked", "*");
    assert!(id.edges.is_empty());
    assert_eq!(id.revoked_sources, ["ci+staging"]);
}

#[test]
fn an_identity_in_no_segment_is_named_by_its_id_and_reaches_what_any_may() {
    let r = reach("spiffe://other.org/x", "payments");
    assert_eq!(
        rows(&r),
        ["spiffe://other.org/x -> payments: GET /v1/** except /v1/admin/**"]
    );
    assert!(r.edges[0].source.segments.is_empty());
}

#[test]
fn who_can_reach_a_workload() {
    let r = reach("*", "payments");
    let sources: Vec<&str> = r.edges.iter().map(|e| e.source.name.as_str()).collect();
    assert_eq!(
        sources,
        ["(unsegmented)", "frontend", "frontend", "payments"]
    );
}

#[test]
fn a_lenient_spelling_is_refused_where_decide_refuses_it() {
    let policy = from_text(
        "p.yaml",
        r#"
segments:
  a: { identities: ["spiffe://example.org/a"] }
rules:
  - { name: open, from: [a], to: [a], paths: ["/a/**"] }
  - { name: shut, effect: deny, from: [a], to: [a], paths: ["/b/**"] }
"#,
    )
    .unwrap();
    let r = super::reach(
        &policy,
        ("a", &Selector::Segment(0)),
        ("a", &Selector::Segment(0)),
    )
    .unwrap();
    let edge = &r.edges[0];
    assert!(edge.except.is_empty());
    assert_eq!(edge.except_lenient[0].as_str(), "/b/**");
    // `/a/..;/b/x` is routed as `/b/x` by a lenient upstream: refused, by decide and reach.
    let path = normalize("/a/..;/b/x").unwrap();
    assert!(!edge.covers("GET", &path));
    let id = SpiffeId::parse("spiffe://example.org/a").unwrap();
    let verdict = policy.decide(&crate::policy::Request {
        source: &id,
        destination: &id,
        method: "GET",
        path: &path,
    });
    assert!(!verdict.lets_through());
    assert!(edge.covers("GET", &normalize("/a/b").unwrap()));
}

#[test]
fn bad_selectors_name_the_problem() {
    let policy = from_text("p.yaml", POLICY).unwrap();
    let err = |s: &str| Selector::parse(&policy, s).unwrap_err().to_string();
    assert_eq!(
        err("payment"),
        "no segment named `payment`; did you mean `payments`?"
    );
    assert!(
        err("env=qa").contains("`env` is one of prod, staging"),
        "{}",
        err("env=qa")
    );
    assert!(err("env").starts_with("no segment named"));
    assert!(err("env=").contains("not `key=value`"));
    assert!(err("env=prod,env=staging").contains("given twice"));
    assert!(err("spiffe://Example.org/x").contains("not a valid SPIFFE ID"));
    assert!(err("spiffe://example.org/a/**/b").contains("not a valid ID pattern"));
    assert!(err("spiffe://example.org").contains("did you mean `spiffe://example.org/**`"));
    assert!(err("https://x").contains("not a selector"));
}

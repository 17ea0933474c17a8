//! What a slice keeps, one rule of docs/fleet.md "Slices" per test; that it decides as the
//! whole does for random policies is `tests/it/slice_props.rs`.

use super::{Fleet, Scope};
use crate::identity::SpiffeId;
use crate::path::normalize;
use crate::policy::{CompiledPolicy, PolicySource, Request, compile_at};

const NOW: i64 = 1_800_000_000;

const POLICY: &str = r#"
segments:
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"], labels: { env: prod, tier: web } }
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"], labels: { env: prod, tier: web } }
  db: { identities: ["spiffe://example.org/ns/prod/sa/db"], labels: { env: prod, tier: data } }
  batch: { identities: ["spiffe://example.org/ns/prod/sa/batch"], labels: { env: prod } }
  ci: { identities: ["spiffe://example.org/ns/staging/*"], labels: { env: staging } }
  prod-all: { identities: ["spiffe://example.org/ns/prod/**"] }
  lonely: { identities: ["spiffe://example.org/ns/other/sa/x"] }
rules:
  - { name: web-to-api, from: [web], to: [api] }
  - { name: api-to-db, from: [api], to: [db], expires: "2020-01-01T00:00:00Z" }
  - { name: batch-to-db, from: [batch], to: [db] }
  - { name: staging-never-prod, effect: deny, from: [{ env: staging }], to: [{ env: prod }] }
  - { name: audit-web, effect: deny, dry_run: true, from: ["*"], to: [{ tier: web }], paths: ["/debug"] }
  - { name: prod-health, from: [prod-all], to: [lonely] }
revoked:
  - spiffe://example.org/ns/prod/sa/old
  - { segment: lonely, until: "2099-01-01T00:00:00Z" }
tests:
  - { from: "spiffe://example.org/ns/prod/sa/web", to: "spiffe://example.org/ns/prod/sa/api", expect: allow }
  - { from: "spiffe://example.org/ns/prod/sa/batch", to: "spiffe://example.org/ns/prod/sa/db", expect: allow }
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn source() -> PolicySource {
    PolicySource::from_texts([("p.yaml", POLICY)]).unwrap()
}

fn slice_of(own: &str) -> CompiledPolicy {
    let fleet = Fleet::check(&source(), NOW).unwrap();
    fleet.compile(source(), &Scope::identity(id(own))).unwrap()
}

fn rule_names(policy: &CompiledPolicy) -> Vec<&str> {
    policy.rules().iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn api_keeps_the_rules_naming_it_on_either_side_and_every_guard_rail() {
    let api = slice_of("spiffe://example.org/ns/prod/sa/api");
    // `to: [api]` (inbound), `from: [api]` even expired (outbound), label selectors
    // holding api, `"*"`, and `prod-all` (its `**` holds api).
    assert_eq!(
        rule_names(&api),
        [
            "api-to-db",
            "audit-web",
            "prod-health",
            "staging-never-prod",
            "web-to-api"
        ]
    );
    assert_eq!((api.fleet_rules(), api.test_count()), (6, 1));
}

#[test]
fn a_label_selector_keeps_every_segment_it_selects_so_any_peer_classifies_the_same() {
    let api = slice_of("spiffe://example.org/ns/prod/sa/api");
    let mut names = api.segment_names(&id("spiffe://example.org/ns/prod/sa/batch"));
    names.sort_unstable();
    // batch is in `{ env: prod }` (the staging deny's `to`) and in `prod-all`.
    assert_eq!(names, ["batch", "prod-all"]);
    let all: Vec<&str> = api.segments().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        all,
        ["api", "batch", "ci", "db", "lonely", "prod-all", "web"]
    );
}

#[test]
fn an_identity_no_rule_names_keeps_only_the_star_rules_and_every_revocation() {
    let stranger = slice_of("spiffe://other.org/x");
    assert_eq!(rule_names(&stranger), ["audit-web"]);
    // The `segment: lonely` revocation keeps its segment; both entries stay.
    assert_eq!(stranger.revocations().len(), 2);
    assert!(stranger.segment_id("lonely").is_some());
    assert_eq!(stranger.test_count(), 0);
}

#[test]
fn a_slice_reports_the_whole_policys_version_and_decides_as_it_does() {
    let whole = compile_at(&source(), NOW).unwrap();
    let db = slice_of("spiffe://example.org/ns/prod/sa/db");
    assert_eq!(db.version(), whole.version());
    let path = normalize("/v1").unwrap();
    for from in ["api", "batch", "web", "old", "ci-x"] {
        let from = id(&format!("spiffe://example.org/ns/prod/sa/{from}"));
        let to = id("spiffe://example.org/ns/prod/sa/db");
        let req = Request {
            source: &from,
            destination: &to,
            method: "GET",
            path: &path,
        };
        assert_eq!(db.decide(&req), whole.decide(&req), "{from}");
    }
}

#[test]
fn the_plan_names_kept_items_by_index_in_file_order_and_applies_deterministically() {
    let source = source();
    let fleet = Fleet::check(&source, NOW).unwrap();
    let scope = Scope::identity(id("spiffe://example.org/ns/other/sa/x"));
    let plan = fleet.plan(&source, &scope);
    assert_eq!(plan, fleet.plan(&source, &scope));
    let file = &plan.files[0];
    // `prod-health` (to: [lonely]) and `audit-web` (from: "*"); the segments they select
    // (`{ tier: web }` is api and web) and the one the revocation names.
    assert_eq!(file.rules, [4, 5]);
    assert_eq!(file.segments, [0, 1, 5, 6]);
    assert_eq!((file.revoked.len(), file.tests.len()), (2, 0));
    assert_eq!((plan.rules(), plan.fleet_rules), (2, 6));
    let sliced = plan.apply(source);
    assert_eq!(sliced.files[0].doc.rules.len(), 2);
    assert_eq!(sliced.files[0].doc.segments.0[2].0.value, "prod-all");
    assert_eq!(sliced.files[0].name, "p.yaml");
}

#[test]
fn a_pattern_scope_is_the_union_of_its_members_slices() {
    let source = source();
    let fleet = Fleet::check(&source, NOW).unwrap();
    let pattern =
        crate::policy::pattern::IdentityPattern::parse("spiffe://example.org/ns/staging/**");
    let staging = fleet.plan(&source, &Scope::pattern(pattern.unwrap()));
    let web = Scope::identity(id("spiffe://example.org/ns/prod/sa/web"));
    let both = Scope::identity(id("spiffe://example.org/ns/staging/ci")).and(web);
    assert_eq!(staging.files[0].rules, [3, 4]);
    // web: `web-to-api`, the staging deny (`{ env: prod }`), `audit-web`, `prod-health`.
    assert_eq!(fleet.plan(&source, &both).files[0].rules, [0, 3, 4, 5]);
}

#[test]
fn the_whole_is_checked_a_broken_rule_outside_the_slice_is_still_refused() {
    let text = POLICY.replace(
        "  - { name: prod-health,",
        "  - { name: typo, from: [nowhere], to: [lonely] }\n  - { name: prod-health,",
    );
    let source = PolicySource::from_texts([("p.yaml", text.as_str())]).unwrap();
    let errors = Fleet::check(&source, NOW).err().unwrap();
    assert!(errors.to_string().contains("nowhere"), "{errors}");
}

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
  ci: { identities: ["spiffe://example.org/ns/staging/*"], labels: { env: staging, team: ci } }
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
fn a_label_selector_facing_any_peer_classifies_them_compactly_and_one_facing_members_keeps_them() {
    let api = slice_of("spiffe://example.org/ns/prod/sa/api");
    // `{ env: staging }` is the `from` of a deny whose `to` holds api: any peer may be the
    // source, so ci classifies, in a synthesized segment with only that label. `{ env: prod }`
    // is its `to`, where only api itself is ever classified: batch is left out.
    let all: Vec<&str> = api.segments().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        all,
        [
            "api",
            "db",
            "lonely",
            "prod-all",
            "slice.env.staging",
            "web"
        ]
    );
    let class = &api.segments()[4];
    assert_eq!(class.labels.len(), 1);
    assert_eq!(
        class.identities[0].to_string(),
        "spiffe://example.org/ns/staging/*"
    );
    let ci = id("spiffe://example.org/ns/staging/x");
    assert_eq!(api.segment_names(&ci), ["slice.env.staging"]);
    let batch = id("spiffe://example.org/ns/prod/sa/batch");
    assert_eq!(api.segment_names(&batch), ["prod-all"]);
}

#[test]
fn segments_of_one_class_share_one_synthesized_segment_named_for_its_labels() {
    let text = r#"
segments:
  a: { identities: ["spiffe://example.org/a", "spiffe://example.org/x/**"], labels: { tier: web, team: a } }
  b: { identities: ["spiffe://example.org/b"], labels: { tier: web, team: b } }
  c: { identities: ["spiffe://example.org/c"], labels: { tier: "we b" } }
  d: { identities: ["spiffe://example.org/d"], labels: { tier: "we b" } }
  slice.tier.web: { identities: ["spiffe://example.org/own"] }
rules:
  - { name: guard, effect: deny, from: [{ tier: web }, { tier: "we b" }], to: [slice.tier.web] }
"#;
    let source = PolicySource::from_texts([("p.yaml", text)]).unwrap();
    let fleet = Fleet::check(&source, NOW).unwrap();
    let plan = fleet.plan(&source, &Scope::identity(id("spiffe://example.org/own")));
    let names: Vec<&str> = plan.classes.iter().map(|c| c.name.as_str()).collect();
    // `slice.tier.web` is taken, `we b` is no name: numbered instead.
    assert_eq!(names, ["slice.class-1", "slice.class-2"]);
    assert_eq!(
        plan.classes[1].identities,
        [
            "spiffe://example.org/a",
            "spiffe://example.org/b",
            "spiffe://example.org/x/**"
        ]
    );
    assert_eq!(plan.files[0].segments, [4]);
    let yaml = plan.classes[0].yaml();
    assert!(yaml.contains(r#"labels: { "tier": "we b" }"#), "{yaml}");
    let sliced = fleet
        .compile(source, &Scope::identity(id("spiffe://example.org/own")))
        .unwrap();
    let whole = compile_at(&PolicySource::from_texts([("p.yaml", text)]).unwrap(), NOW).unwrap();
    let path = normalize("/").unwrap();
    for from in ["a", "b", "c", "d", "x/y/z", "e"] {
        let from = id(&format!("spiffe://example.org/{from}"));
        let to = id("spiffe://example.org/own");
        let req = Request {
            source: &from,
            destination: &to,
            method: "GET",
            path: &path,
        };
        assert_eq!(sliced.decide(&req), whole.decide(&req), "{from}");
    }
}

#[test]
fn a_class_segment_is_written_as_yaml_that_reads_back_as_planned() {
    let class = super::ClassSegment {
        name: "slice.class-1".to_owned(),
        labels: [("k\"ey".to_owned(), "v: #1\n\u{e9}\u{1f600}".to_owned())].into(),
        identities: (0..40)
            .map(|i| format!("spiffe://example.org/ns/n/sa/s{i}"))
            .collect(),
    };
    let yaml = format!("segments:\n{}", class.yaml());
    assert!(yaml.lines().all(|l| l.len() <= 100), "{yaml}");
    let source = PolicySource::from_texts([("c.yaml", yaml.as_str())]).unwrap();
    let (name, doc) = &source.files[0].doc.segments.0[0];
    assert_eq!(name.value, class.name);
    assert_eq!(doc.labels, class.labels);
    let read: Vec<&str> = doc.identities.iter().map(|i| i.value.as_str()).collect();
    assert_eq!(read, class.identities);
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
    // `prod-health` (to: [lonely]) and `audit-web` (from: "*"); the segments they name; the
    // ones `{ tier: web }` selects (api and web, the `to` of a rule from any member) in one
    // synthesized segment.
    assert_eq!(file.rules, [4, 5]);
    assert_eq!(file.segments, [5, 6]);
    assert_eq!(plan.classes.len(), 1);
    assert_eq!(plan.classes[0].name, "slice.tier.web");
    assert_eq!(
        plan.classes[0].identities,
        [
            "spiffe://example.org/ns/prod/sa/api",
            "spiffe://example.org/ns/prod/sa/web"
        ]
    );
    assert_eq!((file.revoked.len(), file.tests.len()), (2, 0));
    assert_eq!((plan.rules(), plan.fleet_rules), (2, 6));
    let sliced = plan.apply(source);
    assert_eq!(sliced.files[0].doc.rules.len(), 2);
    let segments = &sliced.files[0].doc.segments.0;
    assert_eq!(segments[0].0.value, "prod-all");
    assert_eq!(segments[2].0.value, "slice.tier.web");
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

#[test]
fn a_class_of_one_segment_with_exactly_its_labels_keeps_that_segment_as_written() {
    // ci's labels are exactly the class `{ env: staging }` gives it: synthesizing a copy
    // would only rename it (the shape of a slice's own synthesized segment, read back).
    let text = POLICY.replace(
        "labels: { env: staging, team: ci }",
        "labels: { env: staging }",
    );
    let source = PolicySource::from_texts([("p.yaml", text.as_str())]).unwrap();
    let fleet = Fleet::check(&source, NOW).unwrap();
    let plan = fleet.plan(&source, &Scope::identity(id(API)));
    assert!(plan.classes.is_empty(), "{:?}", plan.classes);
    let names: Vec<&str> = plan.files[0]
        .segments
        .iter()
        .map(|&s| source.files[0].doc.segments.0[s].0.value.as_str())
        .collect();
    assert!(names.contains(&"ci"), "{names:?}");
}

const API: &str = "spiffe://example.org/ns/prod/sa/api";

#[test]
fn the_slice_of_a_slice_for_the_same_scope_is_itself_and_decides_as_the_whole() {
    let scope = || Scope::identity(id(API));
    let fleet = Fleet::check(&source(), NOW).unwrap();
    let slice = || fleet.plan(&source(), &scope()).apply(source());
    assert!(!fleet.plan(&source(), &scope()).keeps_all(&source()));
    // What a sidecar reads when given its own slice: the plan keeps every item of it.
    let again = Fleet::check(&slice(), NOW).unwrap();
    let plan = again.plan(&slice(), &scope());
    assert!(plan.keeps_all(&slice()), "{plan:?}");
    // The folder is all its sidecar knows of the fleet: its rules are the fleet's.
    assert_eq!(again.rules(), 5);
    let direct = again.compile(slice(), &scope()).unwrap();
    let via_text = fleet.compile(source(), &scope()).unwrap();
    assert_eq!(rule_names(&direct), rule_names(&via_text));
    assert_eq!((direct.fleet_rules(), direct.test_count()), (5, 1));
    let successor = Fleet::check(&slice(), NOW).unwrap();
    let successor = successor.successor(slice(), &scope()).unwrap();
    let path = normalize("/debug").unwrap();
    let own = id(API);
    for peer in [
        "ns/prod/sa/web",
        "ns/staging/x",
        "ns/prod/sa/old",
        "ns/other/sa/x",
        "ns/dev/y",
    ] {
        let peer = id(&format!("spiffe://example.org/{peer}"));
        for (source, destination) in [(&peer, &own), (&own, &peer)] {
            let req = Request {
                source,
                destination,
                method: "GET",
                path: &path,
            };
            assert_eq!(direct.decide(&req), via_text.decide(&req), "{peer}");
            assert_eq!(successor.decide(&req), via_text.decide(&req), "{peer}");
        }
    }
}

#[test]
fn a_failing_test_of_a_slice_of_a_slice_is_refused_at_its_line() {
    let text = POLICY.replace(
        "to: \"spiffe://example.org/ns/prod/sa/api\", expect: allow",
        "to: \"spiffe://example.org/ns/prod/sa/api\", expect: deny",
    );
    let source = || PolicySource::from_texts([("p.yaml", text.as_str())]).unwrap();
    let fleet = Fleet::check(&source(), NOW).unwrap();
    let scope = Scope::identity(id(API));
    let slice = fleet.plan(&source(), &scope).apply(source());
    let again = Fleet::check(&slice, NOW).unwrap();
    assert!(again.plan(&slice, &scope).keeps_all(&slice));
    let errors = again.compile(slice, &scope).err().unwrap();
    assert!(errors.to_string().starts_with("p.yaml:21:"), "{errors}");
}

//! Policy engine tests: loading errors at file:line:col, each decision step of docs/policy-language.md,
//! patterns, tests:, version hash.
//!
//! Decision steps (docs/policy-language.md):
//! 1. source revoked → deny (`revoked`)
//! 2. any matching deny rule → deny (that rule)
//! 3. any matching allow rule → allow (that rule)
//! 4. otherwise → deny (`default-deny`)

use super::*;
use crate::identity::SpiffeId;
use crate::path::normalize;

mod expiry;

const POLICY: &str = r#"
segments:
  frontend:
    identities: ["spiffe://example.org/ns/prod/sa/frontend"]
    labels: { env: prod, tier: web }
  payments:
    identities: ["spiffe://example.org/ns/prod/sa/payments"]
    labels: { env: prod, tier: critical }
  staging:
    identities: ["spiffe://example.org/ns/staging/**"]
    labels: { env: staging }
  agent-read:
    identities: ["spiffe://example.org/ns/prod/agent/*/read"]

rules:
  - name: frontend-creates-charges
    from: [frontend]
    to: [payments]
    methods: [GET, POST]
    paths: ["/v1/charges", "/v1/charges/*"]
  - name: no-admin-api
    effect: deny
    from: ["*"]
    to: [payments]
    paths: ["/admin/**"]
  - name: staging-never-reaches-prod
    effect: deny
    from: [{ env: staging }]
    to: [{ env: prod }]
  - name: staging-reads-everything
    from: [staging]
    to: ["*"]
    methods: [GET]
  - name: agents-read-charges
    from: [agent-read]
    to: [payments]
    methods: [GET]
    paths: ["/v1/charges/**"]
  - name: agents-rollout-deny
    effect: deny
    dry_run: true
    from: [agent-read]
    to: [payments]
    paths: ["/v1/charges/export"]

revoked:
  - spiffe://example.org/ns/prod/sa/legacy-batch
  - spiffe://example.org/ns/prod/agent/compromised/**

tests:
  - { from: spiffe://example.org/ns/prod/sa/frontend,
      to: spiffe://example.org/ns/prod/sa/payments,
      method: POST, path: /v1/charges, expect: allow }
  - { from: spiffe://example.org/ns/staging/ci/runner,
      to: spiffe://example.org/ns/prod/sa/payments,
      method: GET, path: /v1/charges, expect: deny, rule: staging-never-reaches-prod }
"#;

const FRONTEND: &str = "spiffe://example.org/ns/prod/sa/frontend";
const PAYMENTS: &str = "spiffe://example.org/ns/prod/sa/payments";
const RUNNER: &str = "spiffe://example.org/ns/staging/ci/runner";
const AGENT: &str = "spiffe://example.org/ns/prod/agent/a1/read";

fn policy() -> CompiledPolicy {
    from_text("policy.yaml", POLICY).unwrap_or_else(|e| panic!("{e}"))
}

/// A request's parsed parts, owned by the test; `get()` lends them as a [`Request`].
struct Req {
    source: SpiffeId,
    destination: SpiffeId,
    method: String,
    path: crate::path::NormalizedPath,
}

impl Req {
    fn new(from: &str, to: &str, method: &str, path: &str) -> Self {
        Self {
            source: SpiffeId::parse(from).unwrap(),
            destination: SpiffeId::parse(to).unwrap(),
            method: method.to_owned(),
            path: normalize(path).unwrap(),
        }
    }

    fn get(&self) -> Request<'_> {
        Request {
            source: &self.source,
            destination: &self.destination,
            method: &self.method,
            path: &self.path,
        }
    }
}

fn decide(
    p: &CompiledPolicy,
    from: &str,
    to: &str,
    method: &str,
    path: &str,
) -> (Decision, String) {
    let v = p.decide(&Req::new(from, to, method, path).get());
    (v.decision, v.rule_label().to_owned())
}

fn errors(text: &str) -> Vec<String> {
    match from_text("p.yaml", text) {
        Ok(_) => panic!("policy unexpectedly valid"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn each_decision_step_decides_with_its_rule_or_reason() {
    use Decision::*;
    let p = policy();
    let legacy = "spiffe://example.org/ns/prod/sa/legacy-batch";
    let rows: &[(&str, &str, &str, &str, &str, Decision, &str)] = &[
        (
            "step 1: revoked exact ID",
            legacy,
            PAYMENTS,
            "GET",
            "/v1/charges",
            Deny,
            "revoked",
        ),
        (
            "step 1: revoked by pattern",
            "spiffe://example.org/ns/prod/agent/compromised/read",
            PAYMENTS,
            "GET",
            "/v1/charges/1",
            Deny,
            "revoked",
        ),
        (
            "step 2: deny beats the allow of the same request",
            FRONTEND,
            PAYMENTS,
            "GET",
            "/admin/users",
            Deny,
            "no-admin-api",
        ),
        (
            "step 2: `/admin/**` covers `/admin` itself",
            FRONTEND,
            PAYMENTS,
            "GET",
            "/admin",
            Deny,
            "no-admin-api",
        ),
        (
            "step 2: label deny beats a `*` allow",
            RUNNER,
            PAYMENTS,
            "GET",
            "/v1/charges",
            Deny,
            "staging-never-reaches-prod",
        ),
        (
            "step 3: allow",
            FRONTEND,
            PAYMENTS,
            "POST",
            "/v1/charges",
            Allow,
            "frontend-creates-charges",
        ),
        (
            "step 3: `*` path segment",
            FRONTEND,
            PAYMENTS,
            "GET",
            "/v1/charges/ch_1",
            Allow,
            "frontend-creates-charges",
        ),
        (
            "step 3: one trailing slash is ignored",
            FRONTEND,
            PAYMENTS,
            "GET",
            "/v1/charges/",
            Allow,
            "frontend-creates-charges",
        ),
        (
            "step 3: `*` destination",
            RUNNER,
            "spiffe://example.org/ns/staging/web",
            "GET",
            "/anything",
            Allow,
            "staging-reads-everything",
        ),
        (
            "step 3 + dry run: would-deny",
            AGENT,
            PAYMENTS,
            "GET",
            "/v1/charges/export",
            WouldDeny,
            "agents-rollout-deny",
        ),
        (
            "step 4: HEAD is not implied by GET",
            FRONTEND,
            PAYMENTS,
            "HEAD",
            "/v1/charges",
            Deny,
            "default-deny",
        ),
        (
            "step 4: `*` is one segment only",
            FRONTEND,
            PAYMENTS,
            "GET",
            "/v1/charges/a/b",
            Deny,
            "default-deny",
        ),
        (
            "step 4: method not allowed",
            FRONTEND,
            PAYMENTS,
            "DELETE",
            "/v1/charges",
            Deny,
            "default-deny",
        ),
        (
            "step 4: no segment, no rule",
            "spiffe://example.org/ns/prod/sa/unknown",
            PAYMENTS,
            "GET",
            "/v1/charges",
            Deny,
            "default-deny",
        ),
        (
            "step 4: dry run alone does not decide",
            AGENT,
            PAYMENTS,
            "POST",
            "/v1/charges/export",
            Deny,
            "default-deny",
        ),
        (
            "step 4: other trust domain",
            "spiffe://evil.org/ns/prod/sa/frontend",
            PAYMENTS,
            "GET",
            "/v1/charges",
            Deny,
            "default-deny",
        ),
        (
            "step 4: reverse direction",
            PAYMENTS,
            FRONTEND,
            "GET",
            "/v1/charges",
            Deny,
            "default-deny",
        ),
    ];
    for (what, from, to, method, path, decision, rule) in rows {
        assert_eq!(
            decide(&p, from, to, method, path),
            (*decision, rule.to_string()),
            "{what}"
        );
    }
}

#[test]
fn audit_turns_a_deny_into_would_deny_and_keeps_the_rule() {
    let p = policy();
    let req = Req::new(RUNNER, PAYMENTS, "GET", "/");
    let v = p.decide(&req.get());
    assert_eq!(v.decision, Decision::Deny);
    let audited = v.audited();
    assert_eq!(audited.decision, Decision::WouldDeny);
    assert_eq!(audited.rule, Some("staging-never-reaches-prod"));
    assert!(audited.lets_through());
}

#[test]
fn explain_lists_segments_and_every_matching_rule() {
    let p = policy();
    let req = Req::new(RUNNER, PAYMENTS, "GET", "/v1/charges");
    let e = p.explain(&req.get());
    assert_eq!(e.source_segments, ["staging"]);
    assert_eq!(e.destination_segments, ["payments"]);
    let names: Vec<&str> = e.matched.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["staging-never-reaches-prod", "staging-reads-everything"]
    );
    assert_eq!(e.verdict.rule, Some("staging-never-reaches-prod"));
}

#[test]
fn several_matching_denies_report_the_first_by_name() {
    let text = r#"
segments:
  a: { identities: ["spiffe://t.org/a"] }
  b: { identities: ["spiffe://t.org/b"] }
rules:
  - { name: z-deny, effect: deny, from: [a], to: [b] }
  - { name: m-deny, effect: deny, from: ["*"], to: [b] }
  - { name: a-allow, from: [a], to: [b] }
"#;
    let p = from_text("p.yaml", text).unwrap();
    assert_eq!(
        decide(&p, "spiffe://t.org/a", "spiffe://t.org/b", "GET", "/"),
        (Decision::Deny, "m-deny".into())
    );
}

#[test]
fn an_identity_in_several_segments_gets_the_rules_of_each() {
    let text = r#"
segments:
  prod: { identities: ["spiffe://t.org/ns/prod/**"], labels: { env: prod } }
  pay:  { identities: ["spiffe://t.org/ns/prod/sa/pay"] }
  web:  { identities: ["spiffe://t.org/ns/prod/sa/web"] }
rules:
  - { name: web-to-pay, from: [web], to: [pay] }
  - { name: no-prod-delete, effect: deny, from: [{ env: prod }], to: ["*"], methods: [DELETE] }
"#;
    let p = from_text("p.yaml", text).unwrap();
    let (web, pay) = (
        "spiffe://t.org/ns/prod/sa/web",
        "spiffe://t.org/ns/prod/sa/pay",
    );
    assert_eq!(
        decide(&p, web, pay, "GET", "/"),
        (Decision::Allow, "web-to-pay".into())
    );
    assert_eq!(
        decide(&p, web, pay, "DELETE", "/"),
        (Decision::Deny, "no-prod-delete".into())
    );
}

#[test]
fn exactly_named_identities_get_every_segments_rules_and_their_revocation() {
    // The exact-ID table: one ID named in two segments (merged keys), one named once and
    // also under a `*` pattern (merged), one named once only (its segment's keys), one
    // named and revoked, and an ID named nowhere that only the `*` pattern covers.
    let text = r#"
segments:
  a:    { identities: ["spiffe://t.org/sa/one", "spiffe://t.org/sa/gone"] }
  b:    { identities: ["spiffe://t.org/sa/one"] }
  c:    { identities: ["spiffe://t.org/sa/two"] }
  star: { identities: ["spiffe://t.org/sa/*"], labels: { any: "yes" } }
  dst:  { identities: ["spiffe://t.org/sa/dst"] }
rules:
  - { name: from-a, from: [a], to: [dst], paths: ["/a"] }
  - { name: from-b, from: [b], to: [dst], paths: ["/b"] }
  - { name: from-c, from: [c], to: [dst], paths: ["/c"] }
  - { name: from-star, from: [{ any: "yes" }], to: [dst], paths: ["/s"] }
revoked:
  - spiffe://t.org/sa/gone
"#;
    let p = from_text("p.yaml", text).unwrap();
    let dst = "spiffe://t.org/sa/dst";
    let at = |from: &str, path: &str| decide(&p, from, dst, "GET", path);
    let allow = |rule: &str| (Decision::Allow, rule.to_owned());
    let default_deny = (Decision::Deny, "default-deny".to_owned());
    let one = "spiffe://t.org/sa/one";
    assert_eq!(at(one, "/a"), allow("from-a"));
    assert_eq!(at(one, "/b"), allow("from-b"));
    assert_eq!(at(one, "/s"), allow("from-star"));
    assert_eq!(at(one, "/c"), default_deny);
    let two = "spiffe://t.org/sa/two";
    assert_eq!(at(two, "/c"), allow("from-c"));
    assert_eq!(at(two, "/s"), allow("from-star"));
    assert_eq!(at(two, "/a"), default_deny);
    let other = "spiffe://t.org/sa/other";
    assert_eq!(at(other, "/s"), allow("from-star"));
    assert_eq!(at(other, "/a"), default_deny);
    assert_eq!(
        at("spiffe://t.org/sa/gone", "/a"),
        (Decision::Deny, "revoked".to_owned())
    );
}

#[test]
fn syntax_and_unknown_keys_are_reported_at_line_and_column() {
    let errs = errors("segments:\n  a:\n    identities: [\"spiffe://t.org/a\"]\n    lables: {}\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("p.yaml:4:5: "), "{errs:?}");
    assert!(errs[0].contains("lables"), "{errs:?}");
    let errs = errors("rules: [ { name: x, from: [a] \n");
    assert!(errs[0].starts_with("p.yaml:"), "{errs:?}");
    let errs = errors("bogus: 1\n");
    assert!(errs[0].starts_with("p.yaml:1:1: "), "{errs:?}");
}

#[test]
fn every_semantic_error_is_reported_not_just_the_first() {
    let text = r#"
segments:
  a: { identities: ["spiffe://T.org/a"] }
  b: { identities: ["spiffe://t.org/x/**/y"] }
rules:
  - { name: r1, from: [nope], to: [b] }
  - { name: r1, from: [a], to: [b] }
  - { name: r2, from: [a], to: [b], methods: [get] }
  - { name: r3, from: [a], to: [b], paths: ["/a/../b"] }
  - { name: revoked, from: [a], to: [b] }
  - { name: r4, from: [], to: [b] }
  - { name: r5, from: [a], to: [{}] }
  - { name: r6, from: [a], to: [b], dry_run: true }
"#;
    let errs = errors(text);
    let want = [
        "p.yaml:3:21: SPIFFE ID: trust domain contains upper case `T`",
        "p.yaml:4:21: `**` may only be the last segment",
        "p.yaml:6:24: unknown segment `nope`",
        "p.yaml:7:13: rule `r1` is already defined at p.yaml:6:13",
        "p.yaml:8:47: bad method `get`",
        "p.yaml:9:45: invalid path pattern",
        "p.yaml:10:13: `revoked` is reserved",
        "p.yaml:11:23: `from` is an empty list",
        "p.yaml:12:33: an empty label selector",
        "p.yaml:13:13: `dry_run` applies to deny rules only",
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for (got, want) in errs.iter().zip(want) {
        let (loc, msg) = want.split_once(": ").unwrap();
        assert!(got.starts_with(loc), "want {want}\n got {got}");
        assert!(
            got.contains(msg.trim_start_matches("SPIFFE ID: ")),
            "want {want}\n got {got}"
        );
    }
}

#[test]
fn failing_tests_make_the_policy_invalid_and_name_the_test() {
    let text = format!(
        "{POLICY}  - {{ from: {FRONTEND}, to: {PAYMENTS}, method: GET, path: /admin, expect: allow }}\n"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("test failed: expected allow, got deny (rule no-admin-api)"),
        "{errs:?}"
    );
    assert!(
        errs[0].starts_with(&format!("p.yaml:{}:", text.lines().count())),
        "{errs:?}"
    );
    let text = format!(
        "{POLICY}  - {{ from: {FRONTEND}, to: {PAYMENTS}, expect: deny, rule: revoked }}\n"
    );
    assert!(errors(&text)[0].contains("expected deny (rule revoked), got deny (default-deny)"));
    let text = format!("{POLICY}  - {{ from: spiffe://x/, to: {PAYMENTS}, expect: deny }}\n");
    assert!(errors(&text)[0].contains("invalid SPIFFE ID in test"));
    let text =
        format!("{POLICY}  - {{ from: {FRONTEND}, to: {PAYMENTS}, path: /../x, expect: deny }}\n");
    assert!(errors(&text)[0].contains("invalid test path"));
}

#[test]
fn a_folder_is_merged_and_a_name_defined_twice_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = "segments:\n  a: { identities: [\"spiffe://t.org/a\"] }\n";
    let b = "segments:\n  b: { identities: [\"spiffe://t.org/b\"] }\nrules:\n  - { name: ab, from: [a], to: [b] }\n";
    std::fs::write(dir.path().join("10-a.yaml"), a).unwrap();
    std::fs::write(dir.path().join("20-b.yml"), b).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    std::fs::create_dir(dir.path().join("..data")).unwrap();
    std::fs::write(dir.path().join("..data/dup.yaml"), a).unwrap();
    let p = load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.files().len(), 2);
    assert_eq!(
        decide(&p, "spiffe://t.org/a", "spiffe://t.org/b", "GET", "/"),
        (Decision::Allow, "ab".into())
    );

    std::fs::write(dir.path().join("30-dup.yaml"), a).unwrap();
    let errs = load(dir.path()).unwrap_err().to_string();
    assert!(
        errs.contains("30-dup.yaml:2:3: segment `a` is already defined at"),
        "{errs}"
    );
    assert!(errs.contains("10-a.yaml:2:3"), "{errs}");
}

#[test]
fn an_empty_folder_or_missing_file_is_an_error_not_an_empty_policy() {
    let dir = tempfile::tempdir().unwrap();
    let errs = load(dir.path()).unwrap_err();
    assert_eq!(errs.0[0].kind, PolicyErrorKind::NoPolicyFiles);
    let errs = load(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(matches!(errs.0[0].kind, PolicyErrorKind::Io(_)));
}

#[test]
fn version_ignores_layout_and_order_but_not_behaviour() {
    let a = "segments:\n  a: { identities: [\"spiffe://t.org/a\", \"spiffe://t.org/b\"] }\nrules:\n  - { name: r, from: [a], to: [a], methods: [GET, POST] }\n  - { name: q, from: [a], to: [a] }\n";
    let b = "# comment\nrules:\n  - { name: q, from: [a], to: [a] }\n  - name: r\n    methods: [POST, GET]\n    from: [a]\n    to: [a]\nsegments:\n  a:\n    identities: [\"spiffe://t.org/b\", \"spiffe://t.org/a\"]\n";
    let c = a.replace("POST", "PUT");
    let v = |t: &str| from_text("p.yaml", t).unwrap().version().to_owned();
    assert_eq!(v(a), v(b));
    assert_ne!(v(a), v(&c));
    assert!(v(a).starts_with("sha256:") && v(a).len() == 7 + 16);
}

#[test]
fn an_empty_document_is_a_valid_policy_that_denies_everything() {
    let p = from_text("p.yaml", "").unwrap();
    assert_eq!(
        decide(&p, FRONTEND, PAYMENTS, "GET", "/"),
        (Decision::Deny, "default-deny".into())
    );
}

#[test]
fn hostile_yaml_is_refused_not_expanded() {
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
    let errs = errors(bomb);
    assert!(errs[0].starts_with("p.yaml:"), "{errs:?}");
}

#[test]
fn label_values_compare_as_text_whatever_their_yaml_type() {
    let text = r#"
segments:
  a: { identities: ["spiffe://t.org/a"], labels: { tier: 1, pci: true } }
  b: { identities: ["spiffe://t.org/b"] }
rules:
  - { name: r, from: [{ tier: "1", pci: "true" }], to: [b] }
"#;
    let p = from_text("p.yaml", text).unwrap();
    assert_eq!(
        decide(&p, "spiffe://t.org/a", "spiffe://t.org/b", "GET", "/"),
        (Decision::Allow, "r".into())
    );
    let errs = errors("rules:\n  - { name: r, from: [[a]], to: [b] }\n");
    assert!(
        errs[0].starts_with("p.yaml:2:23: ") && errs[0].contains("label map"),
        "{errs:?}"
    );
}

#[test]
fn deny_rules_also_match_the_spelling_a_lenient_upstream_routes() {
    let text = r#"
segments:
  a: { identities: ["spiffe://t.org/a"] }
  b: { identities: ["spiffe://t.org/b"] }
rules:
  - { name: open, from: [a], to: [b] }
  - { name: charges, from: [a], to: [b], paths: ["/v1/charges"] }
  - { name: no-admin, effect: deny, from: ["*"], to: [b], paths: ["/admin/**"] }
  - { name: no-colon, effect: deny, from: ["*"], to: [b], paths: ["/files/a:b"] }
"#;
    let p = from_text("p.yaml", text).unwrap();
    let ask = |path: &str| decide(&p, "spiffe://t.org/a", "spiffe://t.org/b", "GET", path);
    assert_eq!(
        ask("/admin;jsessionid=x/users"),
        (Decision::Deny, "no-admin".into())
    );
    assert_eq!(ask("/admin%3Bx/users"), (Decision::Deny, "no-admin".into()));
    assert_eq!(
        ask("/a/..;/admin/keys"),
        (Decision::Deny, "no-admin".into())
    );
    assert_eq!(ask("/files/a%3Ab"), (Decision::Deny, "no-colon".into()));
    assert_eq!(ask("/..;/admin"), (Decision::Deny, "ambiguous-path".into()));
    // Allow rules match only the path itself: the variant can add denials, never allows.
    let only_charges = from_text(
        "p.yaml",
        &text.replace("  - { name: open, from: [a], to: [b] }\n", ""),
    )
    .unwrap();
    let (a, b) = ("spiffe://t.org/a", "spiffe://t.org/b");
    assert_eq!(
        decide(&only_charges, a, b, "GET", "/v1/charges;x"),
        (Decision::Deny, "default-deny".into())
    );
    assert_eq!(ask("/files/a:b"), (Decision::Deny, "no-colon".into()));
    assert_eq!(ask("/admin-panel;x"), (Decision::Allow, "open".into()));
}

#[test]
fn request_methods_match_rules_whatever_their_case() {
    let text = r#"
segments:
  a: { identities: ["spiffe://t.org/a"] }
  b: { identities: ["spiffe://t.org/b"] }
rules:
  - { name: open, from: [a], to: [b] }
  - { name: no-delete, effect: deny, from: [a], to: [b], methods: [DELETE] }
"#;
    let p = from_text("p.yaml", text).unwrap();
    for m in ["DELETE", "delete", "Delete"] {
        assert_eq!(
            decide(&p, "spiffe://t.org/a", "spiffe://t.org/b", m, "/x"),
            (Decision::Deny, "no-delete".into()),
            "{m}"
        );
    }
}

#[test]
fn every_pattern_rule_is_refused_with_its_own_error() {
    use super::pattern::{IdentityPattern, PathPattern, PatternError::*};
    type Row = (&'static str, fn(&super::pattern::PatternError) -> bool);
    let ids: &[Row] = &[
        ("spiffe://t.org/a/**/b", |e| *e == GlobstarNotLast),
        ("spiffe://t.org/a*", |e| matches!(e, PartialWildcard(_))),
        ("spiffe://*.org/a", |e| matches!(e, TrustDomain(_))),
        ("spiffe://t.org", |e| matches!(e, BareTrustDomain(_))),
        ("spiffe://T.org/a", |e| matches!(e, Identity(_))),
        ("spiffe://t.org/a/", |e| matches!(e, Identity(_))),
    ];
    for (text, want) in ids {
        let e = IdentityPattern::parse(text).unwrap_err();
        assert!(want(&e), "{text}: {e:?}");
    }
    let paths: &[Row] = &[
        ("v1/charges", |e| *e == PathNotAbsolute),
        ("/v1/charges/", |e| *e == PathTrailingSlash),
        ("/%61dmin", |e| {
            *e == PathNotNormalized("%61dmin".into(), "admin".into())
        }),
        (
            "/a/%2e",
            |e| matches!(e, Path(m) if m.contains("`.` and `..`")),
        ),
        ("/a/../b", |e| matches!(e, Path(_))),
        ("/a//b", |e| matches!(e, Path(_))),
        ("/a/**/b", |e| *e == GlobstarNotLast),
        ("/v1/char*", |e| matches!(e, PartialWildcard(_))),
        ("/a%2fb", |e| matches!(e, Path(_))),
    ];
    for (text, want) in paths {
        let e = PathPattern::parse(text).unwrap_err();
        assert!(want(&e), "{text}: {e:?}");
    }
    for ok in [
        "/",
        "/**",
        "/v1/charges",
        "/v1/*/refunds",
        "/admin/**",
        "/items:batchGet",
        "/a%20b",
    ] {
        assert_eq!(PathPattern::parse(ok).unwrap().as_str(), ok);
    }
}

#[test]
fn names_identities_size_and_test_methods_are_checked() {
    let errs = errors(
        "segments:\n  \"bad name\": { identities: [\"spiffe://t.org/a\"] }\n  empty: { identities: [] }\n",
    );
    assert!(
        errs[0].starts_with("p.yaml:2:3: bad name `bad name`"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("p.yaml:3:3: segment `empty` lists no identities"),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{POLICY}  - {{ from: {FRONTEND}, to: {PAYMENTS}, method: get, expect: deny }}\n"
    ));
    assert!(errs[0].contains("bad method `get`"), "{errs:?}");
    let big = format!("# {}\n", "x".repeat(super::load::MAX_FILE_BYTES as usize));
    let errs = errors(&big);
    assert!(errs[0].contains("the limit is"), "{errs:?}");
    let errs = errors(
        "rules:\n  - { name: r, from: [paymnts], to: [paymnts] }\nsegments:\n  payments: { identities: [\"spiffe://t.org/p\"] }\n",
    );
    assert!(errs[0].contains("did you mean `payments`?"), "{errs:?}");
}

#[test]
fn a_kept_classification_decides_as_decide_does_and_only_for_its_own_policy() {
    let p = policy();
    let other = policy();
    for (from, to) in [
        (RUNNER, PAYMENTS),
        (FRONTEND, PAYMENTS),
        (PAYMENTS, FRONTEND),
    ] {
        let req = Req::new(from, to, "POST", "/v1/charges");
        let path = &req.path;
        let src = p.classify(&req.source).into_owned();
        let dst = p.classify(&req.destination).into_owned();
        let direct = p.decide(&req.get());
        assert_eq!(p.decide_classified(&src, &dst, "POST", path), direct);
        let stale = other.decide_classified(&src, &dst, "POST", path);
        assert_eq!(
            (stale.decision, stale.rule_label()),
            (Decision::Deny, "stale-classification")
        );
    }
}

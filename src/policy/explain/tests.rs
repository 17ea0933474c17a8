//! `explain_rules`: one row per reason a candidate rule did not match, one row per decision
//! path, and agreement with `decide` on every request of the fixtures.
//!
//! Decision steps (docs/policy-language.md):
//! 1. source revoked → deny (`revoked`)
//! 2. any matching deny rule → deny (that rule)
//! 3. any matching allow rule → allow (that rule)
//! 4. otherwise → deny (`default-deny`)

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};

use super::*;
use crate::identity::SpiffeId;
use crate::path::normalize;
use crate::policy::from_text;

const POLICY: &str = r#"
segments:
  web: { identities: ["spiffe://t.org/web"], labels: { env: prod } }
  pay: { identities: ["spiffe://t.org/pay"], labels: { env: prod, tier: critical } }
  ci:  { identities: ["spiffe://t.org/staging/**"], labels: { env: staging } }
rules:
  - { name: web-pays, from: [web], to: [pay], methods: [GET, POST],
      paths: ["/v1/charges", "/v1/charges/*"] }
  - { name: web-deletes, from: [web], to: [pay], methods: [DELETE] }
  - { name: web-reads-ci, from: [web], to: [ci], methods: [GET] }
  - { name: ci-never-prod, effect: deny, from: [{ env: staging }], to: [{ env: prod }] }
  - { name: no-admin, effect: deny, from: ["*"], to: [pay], paths: ["/admin/**"] }
  - { name: export-rollout, effect: deny, dry_run: true, from: [web], to: [pay],
      paths: ["/v1/charges/export"] }
  - { name: ci-to-ci, from: [ci], to: [ci] }
revoked:
  - spiffe://t.org/staging/old
"#;

const FLEET: &str = include_str!("../../../policies/fleet.yaml");

const WEB: &str = "spiffe://t.org/web";
const PAY: &str = "spiffe://t.org/pay";
const CI: &str = "spiffe://t.org/staging/ci";

fn policy() -> CompiledPolicy {
    from_text("p.yaml", POLICY).unwrap_or_else(|e| panic!("{e}"))
}

/// A request: from, to, method, path.
type Asked<'a> = (&'a str, &'a str, &'a str, &'a str);

/// `explain_rules` and `decide` of one request, and each candidate's `why_not`.
fn ask<'p>(
    p: &'p CompiledPolicy,
    (from, to, method, path): Asked<'_>,
) -> (RuleExplanation<'p>, Verdict<'p>, Vec<Option<String>>) {
    let (source, destination) = (SpiffeId::parse(from).unwrap(), SpiffeId::parse(to).unwrap());
    let path = normalize(path).unwrap();
    let req = Request {
        source: &source,
        destination: &destination,
        method,
        path: &path,
    };
    let explained = p.explain_rules(&req);
    let why = explained
        .candidates
        .iter()
        .map(|c| explained.why_not(c, p, &req))
        .collect();
    (explained, p.decide(&req), why)
}

/// A request web → pay.
fn web_to_pay<'a>(method: &'a str, path: &'a str) -> Asked<'a> {
    (WEB, PAY, method, path)
}

#[test]
fn each_candidate_rule_shows_the_first_check_it_failed_or_what_decided_instead() {
    let p = policy();
    let export = web_to_pay("GET", "/v1/charges/export");
    let rows: &[(&str, Asked<'_>, &str, Check, Option<&str>)] = &[
        (
            "source not selected by from (label selector)",
            export,
            "ci-never-prod",
            Check::Missed(Miss::Source),
            Some("source not selected by from: [{ env: staging }]"),
        ),
        (
            "destination not selected by to",
            export,
            "web-reads-ci",
            Check::Missed(Miss::Destination),
            Some("destination not selected by to: [ci]"),
        ),
        (
            "method not listed",
            export,
            "web-deletes",
            Check::Missed(Miss::Method),
            Some("method GET not in methods: [DELETE]"),
        ),
        (
            "path matched by no pattern",
            export,
            "no-admin",
            Check::Missed(Miss::Path),
            Some("path /v1/charges/export matches none of paths: [/admin/**]"),
        ),
        (
            "dry_run deny: matches but never refuses",
            export,
            "export-rollout",
            Check::DryRun,
            Some("dry_run: reported as would-deny, never refuses"),
        ),
        (
            "allow under a dry_run deny",
            export,
            "web-pays",
            Check::Matched,
            Some("lets the request through; dry_run rule `export-rollout` reports would-deny"),
        ),
        (
            "allow overridden by a deny",
            web_to_pay("DELETE", "/admin/keys"),
            "web-deletes",
            Check::Matched,
            Some("overridden by deny rule `no-admin`"),
        ),
        (
            "the deciding rule",
            web_to_pay("DELETE", "/admin/keys"),
            "no-admin",
            Check::Matched,
            None,
        ),
        (
            "matched but revoked",
            ("spiffe://t.org/staging/old", CI, "GET", "/"),
            "ci-to-ci",
            Check::Matched,
            Some("not consulted: the source is revoked (step 1)"),
        ),
    ];
    for (what, req, rule, check, text) in rows {
        let (e, _, why) = ask(&p, *req);
        let i = e.candidates.iter().position(|c| c.rule.name == *rule);
        let i = i.unwrap_or_else(|| panic!("{what}: `{rule}` is no candidate"));
        assert_eq!(e.candidates[i].check, *check, "{what}");
        assert_eq!(why[i].as_deref(), *text, "{what}");
    }
}

#[test]
fn candidates_are_the_rules_selecting_either_party_by_name() {
    let p = policy();
    let (e, _, _) = ask(&p, web_to_pay("GET", "/v1/charges"));
    let names: Vec<&str> = e.candidates.iter().map(|c| c.rule.name.as_str()).collect();
    // `ci-to-ci` selects neither web nor pay.
    assert_eq!(
        names,
        [
            "ci-never-prod",
            "export-rollout",
            "no-admin",
            "web-deletes",
            "web-pays",
            "web-reads-ci"
        ]
    );
}

#[test]
fn each_decision_path_names_its_step_and_rule() {
    let p = policy();
    let rows: &[(&str, Asked<'_>, Reason, Option<&str>, &str)] = &[
        (
            "step 1: revoked, whatever matches",
            ("spiffe://t.org/staging/old", CI, "GET", "/"),
            Reason::Revoked,
            None,
            "step 1: the source is revoked",
        ),
        (
            "before rules: ambiguous path",
            (WEB, PAY, "GET", "/..;/admin"),
            Reason::AmbiguousPath,
            None,
            "ambiguous-path",
        ),
        (
            "step 2: deny rule over an allow",
            (WEB, PAY, "GET", "/admin/keys"),
            Reason::DenyRule,
            Some("no-admin"),
            "step 2: deny rule `no-admin` matched",
        ),
        (
            "step 2: deny rule on the upstream spelling",
            (WEB, PAY, "GET", "/admin;x/keys"),
            Reason::DenyRule,
            Some("no-admin"),
            "step 2: deny rule `no-admin`",
        ),
        (
            "step 3: allow rule",
            (WEB, PAY, "POST", "/v1/charges"),
            Reason::AllowRule,
            Some("web-pays"),
            "step 3: allow rule `web-pays` matched",
        ),
        (
            "step 3: allow with a dry_run deny → would-deny",
            (WEB, PAY, "GET", "/v1/charges/export"),
            Reason::DryRunDeny,
            Some("export-rollout"),
            "allow rule `web-pays` matched, and dry_run deny rule `export-rollout`",
        ),
        (
            "step 4: nothing matched",
            (WEB, PAY, "HEAD", "/v1/charges"),
            Reason::DefaultDeny,
            None,
            "step 4: no deny or allow rule matched",
        ),
    ];
    for (what, req, reason, rule, text) in rows {
        let (e, _, _) = ask(&p, *req);
        assert_eq!(
            (e.verdict.reason, e.verdict.rule),
            (*reason, *rule),
            "{what}"
        );
        assert!(
            e.decision_path().contains(text),
            "{what}: {}",
            e.decision_path()
        );
    }
}

#[test]
fn selectors_print_as_written_in_the_policy() {
    let p = policy();
    let texts: Vec<String> = [Target::Any, Target::Segment(0), Target::Group(0)]
        .into_iter()
        .map(|t| p.selector_text(t))
        .collect();
    assert_eq!(texts, ["\"*\"", "ci", "{ env: staging }"]);
}

/// Identities, methods and paths every fixture request is drawn from.
const IDS: &[&str] = &[
    WEB,
    PAY,
    CI,
    "spiffe://t.org/staging/old",
    "spiffe://t.org/stranger",
    "spiffe://example.org/ns/prod/sa/frontend",
    "spiffe://example.org/ns/prod/sa/payments",
    "spiffe://example.org/ns/prod/sa/ledger",
    "spiffe://example.org/ns/staging/sa/ci-runner",
    "spiffe://example.org/ns/prod/agent/copilot/read",
    "spiffe://example.org/ns/prod/agent/copilot/write",
    "spiffe://example.org/ns/prod/sa/legacy-batch",
    "spiffe://partner.example/integrations/acme",
];
const METHODS: &[&str] = &["GET", "get", "HEAD", "POST", "DELETE", "PROPFIND"];
const PATHS: &[&str] = &[
    "/",
    "/v1/charges",
    "/v1/charges/",
    "/v1/charges/ch_1",
    "/v1/charges/export",
    "/v1/charges/a/b",
    "/v1/entries/e/1",
    "/v1/refunds",
    "/v1/webhooks/partner",
    "/admin",
    "/admin/keys",
    "/admin;x/keys",
    "/a/..;/admin/keys",
    "/..;/admin",
    "/deploy",
];

#[test]
fn the_explained_decision_is_the_one_decide_makes_on_every_fixture_request() {
    for p in [policy(), from_text("fleet.yaml", FLEET).unwrap()] {
        for &from in IDS {
            for &to in IDS {
                for &method in METHODS {
                    for &path in PATHS {
                        let (e, decided, _) = ask(&p, (from, to, method, path));
                        assert_eq!(e.verdict, decided, "{from} → {to} {method} {path}");
                    }
                }
            }
        }
    }
}

/// Path segments random paths are made of, lenient-upstream tricks included.
const PARTS: &[&str] = &[
    "v1", "charges", "entries", "admin", "admin;x", "x", "..;", "a;b", "%3Bx", "%2e%2e", "export",
];

#[test]
fn the_explained_decision_is_the_one_decide_makes_on_random_paths() {
    let policies = [policy(), from_text("fleet.yaml", FLEET).unwrap()];
    let segments = proptest::collection::vec(select(PARTS), 0..5);
    let cases = (select(IDS), select(IDS), select(METHODS), segments);
    let mut runner = TestRunner::new(Config::with_cases(1024));
    let result = runner.run(&cases, |(from, to, method, segments)| {
        let path = format!("/{}", segments.join("/"));
        if normalize(&path).is_err() {
            return Ok(());
        }
        for p in &policies {
            let (e, decided, _) = ask(p, (from, to, method, &path));
            prop_assert_eq!(e.verdict, decided, "{} → {} {} {}", from, to, method, path);
        }
        Ok(())
    });
    result.unwrap_or_else(|e| panic!("{e}"));
}

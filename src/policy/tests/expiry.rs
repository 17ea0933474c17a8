//! Time-boxed exceptions and scoped revocation (docs/runbook.md): `expires:` on rules,
//! `revoked:` by identity, pattern, segment and labels with `since`/`until`, compiled as of a
//! given instant.

use crate::identity::SpiffeId;
use crate::path::normalize;
use crate::policy::*;

const T: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z
const T_TEXT: &str = "2027-01-15T08:00:00Z";

fn policy(rules: &str, revoked: &str) -> String {
    format!(
        r#"
segments:
  web:  {{ identities: ["spiffe://t.org/web"], labels: {{ env: prod }} }}
  pay:  {{ identities: ["spiffe://t.org/pay"], labels: {{ env: prod, tier: critical }} }}
  ci:   {{ identities: ["spiffe://t.org/ci/*"], labels: {{ env: staging, risk: ci }} }}
rules:
  - {{ name: web-pays, from: [web], to: [pay] }}
{rules}
revoked:
  - spiffe://t.org/legacy
{revoked}
"#
    )
}

fn at(text: &str, now: i64) -> Result<CompiledPolicy, PolicyErrors> {
    compile_at(&PolicySource::from_texts([("p.yaml", text)])?, now)
}

fn verdict(p: &CompiledPolicy, from: &str, to: &str) -> (Decision, Reason, Option<String>) {
    let (s, d) = (SpiffeId::parse(from).unwrap(), SpiffeId::parse(to).unwrap());
    let path = normalize("/x").unwrap();
    let v = p.decide(&Request {
        source: &s,
        destination: &d,
        method: "GET",
        path: &path,
    });
    (v.decision, v.reason, v.rule.map(str::to_owned))
}

const CI: &str = "spiffe://t.org/ci/runner";
const PAY: &str = "spiffe://t.org/pay";

#[test]
fn an_exception_matches_until_its_expiry_and_is_named_after_it() {
    let text = policy(
        &format!(
            "  - {{ name: ci-hotfix, from: [ci], to: [pay], expires: \"{T_TEXT}\", owner: ana, ticket: SEC-7, reason: hotfix }}"
        ),
        "",
    );
    let before = at(&text, T - 1).unwrap();
    assert_eq!(before.next_change(), Some(T));
    assert_eq!(
        verdict(&before, CI, PAY),
        (Decision::Allow, Reason::AllowRule, Some("ci-hotfix".into()))
    );
    let after = at(&text, T).unwrap();
    assert_eq!(after.next_change(), None);
    assert_eq!(
        verdict(&after, CI, PAY),
        (
            Decision::Deny,
            Reason::RuleExpired,
            Some("ci-hotfix".into())
        )
    );
    assert_ne!(
        before.version(),
        after.version(),
        "the expiry is a new state"
    );
    let rule = after
        .rules()
        .iter()
        .find(|r| r.name == "ci-hotfix")
        .unwrap();
    assert!(rule.expired && rule.is_exception());
    assert_eq!(
        (rule.owner.as_deref(), rule.ticket.as_deref()),
        (Some("ana"), Some("SEC-7"))
    );
    // explain agrees, and reach no longer lists the edge.
    let (s, d) = (SpiffeId::parse(CI).unwrap(), SpiffeId::parse(PAY).unwrap());
    let path = normalize("/x").unwrap();
    let req = Request {
        source: &s,
        destination: &d,
        method: "GET",
        path: &path,
    };
    assert_eq!(after.explain_rules(&req).verdict, after.decide(&req));
    let sel = Selector::parse(&after, "ci").unwrap();
    assert!(
        reach(&after, ("ci", &sel), ("*", &Selector::Any))
            .unwrap()
            .edges
            .is_empty()
    );
    let sel = Selector::parse(&before, "ci").unwrap();
    assert_eq!(
        reach(&before, ("ci", &sel), ("*", &Selector::Any))
            .unwrap()
            .edges
            .len(),
        1
    );
}

#[test]
fn an_expired_deny_stops_refusing_and_offsets_are_understood() {
    let text = policy(
        "  - { name: freeze, effect: deny, from: [web], to: [pay], expires: \"2027-01-15T09:00:00+01:00\" }",
        "",
    );
    let web = "spiffe://t.org/web";
    assert_eq!(
        verdict(&at(&text, T - 1).unwrap(), web, PAY).1,
        Reason::DenyRule
    );
    assert_eq!(
        verdict(&at(&text, T).unwrap(), web, PAY).1,
        Reason::AllowRule
    );
}

#[test]
fn revoked_by_segment_labels_and_pattern_with_a_self_lifting_until() {
    let web = "spiffe://t.org/web";
    let by_segment = policy("", "  - { segment: ci, reason: INC-1 }");
    assert_eq!(
        verdict(&at(&by_segment, T).unwrap(), CI, PAY).1,
        Reason::Revoked
    );
    assert_eq!(
        verdict(&at(&by_segment, T).unwrap(), web, PAY).1,
        Reason::AllowRule
    );
    let by_labels = policy("", "  - { labels: { risk: ci } }");
    assert_eq!(
        verdict(&at(&by_labels, T).unwrap(), CI, PAY).1,
        Reason::Revoked
    );
    let text = policy(
        "",
        &format!(
            "  - {{ identity: \"spiffe://t.org/web/**\", reason: leaked, since: \"2027-01-15T07:00:00Z\", until: \"{T_TEXT}\" }}"
        ),
    );
    let contained = at(&text, T - 1).unwrap();
    assert_eq!(contained.next_change(), Some(T));
    assert_eq!(verdict(&contained, web, PAY).1, Reason::Revoked);
    let entry = &contained.revocations()[1];
    assert_eq!(entry.scope, "spiffe://t.org/web/**");
    assert_eq!((entry.until, entry.lifted), (Some(T), false));
    let lifted = at(&text, T).unwrap();
    assert_eq!(verdict(&lifted, web, PAY).1, Reason::AllowRule);
    assert!(lifted.revocations()[1].lifted);
    // The plain entry is unaffected by the other's lifting.
    assert_eq!(
        verdict(&lifted, "spiffe://t.org/legacy", PAY).1,
        Reason::Revoked
    );
}

#[test]
fn bad_times_and_scopes_are_errors_at_their_place() {
    let cases = [
        (
            policy(
                "  - { name: x, from: [ci], to: [pay], expires: \"tomorrow\" }",
                "",
            ),
            "`expires: tomorrow` is not an RFC 3339 time",
            "p.yaml:8:48",
        ),
        (
            policy("", "  - { segment: cii }"),
            "unknown segment `cii`; did you mean `ci`?",
            "p.yaml:11:",
        ),
        (
            policy("", "  - { labels: { risk: db } }"),
            "match no segment",
            "p.yaml:11:",
        ),
        (
            policy("", "  - { segment: ci, identity: \"spiffe://t.org/x\" }"),
            "exactly one of",
            "p.yaml:11:",
        ),
        (
            policy("", "  - { reason: oops }"),
            "exactly one of",
            "p.yaml:11:",
        ),
        (
            policy(
                "",
                &format!(
                    "  - {{ segment: ci, since: \"{T_TEXT}\", until: \"2027-01-15T07:00:00Z\" }}"
                ),
            ),
            "is not after `since`",
            "p.yaml:11:",
        ),
        (
            policy("", "  - { segment: ci, until: \"2027-13-01T00:00:00Z\" }"),
            "`until: 2027-13-01T00:00:00Z`",
            "p.yaml:11:",
        ),
    ];
    for (text, message, place) in cases {
        let errors = at(&text, T).unwrap_err().to_string();
        assert!(errors.contains(message), "{message}: {errors}");
        assert!(errors.starts_with(place), "{place}: {errors}");
    }
}

#[test]
fn a_containment_that_suspends_tests_is_not_vetoed_by_them() {
    let tests = "tests:\n  - { from: spiffe://t.org/ci/runner, to: spiffe://t.org/pay, expect: allow }\n  - { from: spiffe://t.org/web, to: spiffe://t.org/pay, expect: allow }\n";
    let rules = "  - { name: ci-pays, from: [ci], to: [pay] }";
    let plain = format!(
        "{}{tests}",
        policy(
            rules,
            "  - { identity: \"spiffe://t.org/ci/*\", reason: INC-1 }"
        )
    );
    let errors = at(&plain, T).unwrap_err().to_string();
    assert!(
        errors.contains("test failed: expected allow, got deny (revoked)"),
        "{errors}"
    );
    let suspending = format!(
        "{}{tests}",
        policy(
            rules,
            "  - { identity: \"spiffe://t.org/ci/*\", reason: INC-1, suspend_tests: true }"
        )
    );
    let p = at(&suspending, T).unwrap();
    assert_eq!(p.test_count(), 1, "the web test still ran");
    assert_eq!(
        p.suspended_tests(),
        [("p.yaml:13:5".to_owned(), "spiffe://t.org/ci/*".to_owned())]
    );
    assert_eq!(verdict(&p, CI, PAY).1, Reason::Revoked);
    let lints = crate::policy::analysis::lint::lint(&p);
    assert!(
        lints
            .iter()
            .any(|l| l.kind == "test-suspended" && l.at == "p.yaml:13:5"),
        "{lints:?}"
    );
}

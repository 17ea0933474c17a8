//! `policy check` and `policy explain` on time-boxed exceptions and containments
//! (docs/runbook.md), through the real binary.

use crate::cli::{json, policy_dir, segward_in};

/// An exception due in two days, one long expired, and a labelled containment with an end.
fn policy() -> String {
    let in_two_days = segward::policy::format_time(segward::policy::unix_now() + 2 * 86_400 + 60);
    format!(
        r#"segments:
  web: {{ identities: ["spiffe://t.org/web"] }}
  ci: {{ identities: ["spiffe://t.org/ci/*"], labels: {{ risk: ci }} }}
rules:
  - {{ name: web-self, from: [web], to: [web] }}
  - {{ name: ci-hotfix, from: [ci], to: [web], expires: "{in_two_days}", owner: ana, ticket: SEC-7, reason: hotfix }}
  - {{ name: old-exception, from: [ci], to: [web], methods: [GET], expires: "2026-11-01T00:00:00Z", owner: bo }}
revoked:
  - {{ identity: "spiffe://t.org/ci/leaked", reason: INC-42, since: "2026-12-03T12:00:00Z" }}
"#
    )
}

#[test]
fn check_warns_on_expired_and_soon_expiring_exceptions_and_lists_them() {
    let dir = policy_dir(&[("p.yaml", &policy())]);
    let out = segward_in(dir.path(), &["policy", "check", "p.yaml"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("p.yaml:6:13: warning[rule-expiring]: rule `ci-hotfix` (owner ana, ticket SEC-7) expires at"), "{out:?}");
    assert!(out.stdout.contains("p.yaml:7:13: warning[rule-expired]: rule `old-exception` (owner bo) expired at 2026-11-01T00:00:00Z"), "{out:?}");
    assert!(out.stdout.contains("exceptions (2):"), "{out:?}");
    assert!(out.stdout.contains("containments (1):"), "{out:?}");
    // A day's horizon: the two-day exception is no longer "expiring".
    let out = segward_in(
        dir.path(),
        &["policy", "check", "p.yaml", "--warn-within", "1d"],
    );
    assert!(!out.stdout.contains("rule-expiring"), "{out:?}");
    assert!(out.stdout.contains("rule-expired"), "{out:?}");
    let strict = segward_in(dir.path(), &["policy", "check", "p.yaml", "--strict"]);
    assert_eq!(strict.code, 1, "{strict:?}");
    let bad = segward_in(
        dir.path(),
        &["policy", "check", "p.yaml", "--warn-within", "soon"],
    );
    assert_eq!(bad.code, 2, "{bad:?}");

    let out = segward_in(dir.path(), &["policy", "check", "p.yaml", "--json"]);
    let report = json(&out.stdout);
    let exceptions = report["exceptions"].as_array().unwrap();
    assert_eq!(exceptions.len(), 2);
    assert_eq!(exceptions[0]["rule"], "ci-hotfix");
    assert_eq!(exceptions[0]["owner"], "ana");
    assert_eq!(exceptions[0]["ticket"], "SEC-7");
    assert_eq!(exceptions[1]["expired"], true);
    assert_eq!(report["revocations"][0]["reason"], "INC-42");
    assert_eq!(report["revocations"][0]["since"], "2026-12-03T12:00:00Z");
}

#[test]
fn explain_names_an_expired_exception_that_would_have_allowed() {
    // Without the live exception, only the expired one would allow a GET.
    let text = policy().replace(
        "  - { name: ci-hotfix",
        "  - { name: unrelated, from: [web], to: [ci] }\n  # - { name: ci-hotfix",
    );
    let dir = policy_dir(&[("p.yaml", &text)]);
    let out = segward_in(
        dir.path(),
        &[
            "policy",
            "explain",
            "p.yaml",
            "--from",
            "spiffe://t.org/ci/runner",
            "--to",
            "spiffe://t.org/web",
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let e = json(&out.stdout);
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["reason"], "rule-expired");
    assert_eq!(e["rule"], "old-exception");
    let candidate = e["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "old-exception")
        .unwrap()
        .clone();
    assert_eq!(candidate["check"], "expired");
    assert_eq!(candidate["matched"], false);
}

#[test]
fn a_bad_timestamp_is_an_error_at_its_place() {
    let text = policy().replace("2026-11-01T00:00:00Z", "2026-11-01 00:00");
    let dir = policy_dir(&[("p.yaml", &text)]);
    let out = segward_in(dir.path(), &["policy", "check", "p.yaml"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("p.yaml:7:"), "{out:?}");
    assert!(out.stderr.contains("is not an RFC 3339 time"), "{out:?}");
}

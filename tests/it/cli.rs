//! The command line end to end (docs/cli.md, §3; README "Command line"): each test runs the
//! real `segward` binary and judges it only by what an operator sees — the exit code (0 success,
//! 1 invalid input, 2 usage error), stdout, stderr and the files it writes.
//! Policies and certificates are written to temporary folders; nothing is checked in but
//! `policies/`, the shipped example policy.

use std::fs::{self, File};
use std::io::{Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The crate root: `policies/` lives here, and explain/check name files relative to it.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every command under test exits on its own well within this; a hang fails the test.
const DEADLINE: Duration = Duration::from_secs(60);

const CI_RUNNER: &str = "spiffe://example.org/ns/staging/sa/ci-runner";
const PAYMENTS: &str = "spiffe://example.org/ns/prod/sa/payments";
const LEDGER: &str = "spiffe://example.org/ns/prod/sa/ledger";
const AGENT_READ: &str = "spiffe://example.org/ns/prod/agent/copilot/read";

// --- policy check --------------------------------------------------------------------------

#[test]
fn the_shipped_policy_checks_ok_with_its_counts_and_version() {
    let out = segward(&["policy", "check", "policies/"]);

    assert_eq!(out.code, 0, "{out:?}");
    let summary = out.stdout.lines().last().unwrap();
    assert!(summary.starts_with("ok: policies/"), "{summary}");
    // The counts of policies/fleet.yaml.
    for count in [
        "9 segments",
        "11 rules",
        "1 revoked",
        "14 tests passed",
        "0 warnings",
    ] {
        assert!(summary.contains(count), "missing `{count}` in: {summary}");
    }
    assert!(summary.contains("version sha256:"), "{summary}");
}

#[test]
fn the_shipped_policy_checks_ok_as_json() {
    let out = segward(&["policy", "check", "policies/", "--json"]);

    assert_eq!(out.code, 0, "{out:?}");
    let report = json(&out.stdout);
    assert_eq!(report["valid"], true);
    assert_eq!(report["errors"], Value::Array(vec![]));
    assert_eq!(report["segments"], 9);
    assert_eq!(report["rules"], 11);
    assert_eq!(report["tests"], 14);
    let version = report["version"].as_str().unwrap();
    assert!(version.starts_with("sha256:"), "{version}");
    let human = segward(&["policy", "check", "policies/"]);
    assert!(
        human.stdout.contains(&format!("version {version}")),
        "{human:?}"
    );
}

const BROKEN_RULES: &str = r#"segments:
  payments:
    identities: ["spiffe://example.org/ns/prod/sa/payments"]
  staging:
    identities: ["spiffe://example.org/ns/**/ci"]
rules:
  - name: frontend-calls-payments
    from: [frontnd]
    to: [payments]
    methods: [get]
"#;

#[test]
fn every_error_in_a_policy_is_reported_at_its_file_line_and_column() {
    let dir = policy_dir(&[("rules.yaml", BROKEN_RULES)]);

    let out = segward_in(dir.path(), &["policy", "check", "rules.yaml"]);

    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(problem_lines(&out.stderr, "rules.yaml").len(), 3, "{out:?}");
    let double_star = at(BROKEN_RULES, r#""spiffe://example.org/ns/**/ci""#);
    let unknown_segment = at(BROKEN_RULES, "frontnd");
    let lower_case_method = at(BROKEN_RULES, "get]");
    assert!(problem_at(&out.stderr, "rules.yaml", double_star).contains("`**`"));
    assert!(problem_at(&out.stderr, "rules.yaml", unknown_segment).contains("frontnd"));
    assert!(problem_at(&out.stderr, "rules.yaml", lower_case_method).contains("`get`"));
    assert_eq!(out.stdout, "", "errors go to stderr");
}

#[test]
fn every_error_in_a_policy_is_an_entry_of_the_json_report() {
    let dir = policy_dir(&[("rules.yaml", BROKEN_RULES)]);

    let out = segward_in(dir.path(), &["policy", "check", "rules.yaml", "--json"]);

    assert_eq!(out.code, 1, "{out:?}");
    let report = json(&out.stdout);
    assert_eq!(report["valid"], false);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{report}");
    for (needle, word) in [
        (r#""spiffe://example.org/ns/**/ci""#, "`**`"),
        ("frontnd", "frontnd"),
        ("get]", "`get`"),
    ] {
        let (line, col) = at(BROKEN_RULES, needle);
        let error = errors
            .iter()
            .find(|e| e["line"] == line && e["col"] == col)
            .unwrap_or_else(|| panic!("no error at {line}:{col} in {report}"));
        assert_eq!(error["file"], "rules.yaml");
        assert!(error["message"].as_str().unwrap().contains(word), "{error}");
    }
}

const FAILING_TEST: &str = r#"segments:
  frontend:
    identities: ["spiffe://example.org/ns/prod/sa/frontend"]
  payments:
    identities: ["spiffe://example.org/ns/prod/sa/payments"]
rules:
  - name: frontend-calls-payments
    from: [frontend]
    to: [payments]
tests:
  - { from: spiffe://example.org/ns/prod/sa/frontend, to: spiffe://example.org/ns/prod/sa/payments,
      expect: allow }
  - { from: spiffe://example.org/ns/prod/sa/payments, to: spiffe://example.org/ns/prod/sa/frontend,
      expect: allow }
"#;

#[test]
fn a_policy_whose_own_test_fails_is_invalid_at_that_test() {
    let dir = policy_dir(&[("fleet.yaml", FAILING_TEST)]);

    let out = segward_in(dir.path(), &["policy", "check", "fleet.yaml"]);

    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(problem_lines(&out.stderr, "fleet.yaml").len(), 1, "{out:?}");
    let failing = at(
        FAILING_TEST,
        "{ from: spiffe://example.org/ns/prod/sa/payments",
    );
    let problem = problem_at(&out.stderr, "fleet.yaml", failing);
    assert!(problem.contains("test failed"), "{problem}");
    assert!(problem.contains("default-deny"), "{problem}");
}

const UNKNOWN_KEY: &str = r#"segments:
  payments:
    identities: ["spiffe://example.org/ns/prod/sa/payments"]
    lables: { env: prod }
"#;

#[test]
fn an_unknown_key_is_an_error_at_that_key() {
    let dir = policy_dir(&[("fleet.yaml", UNKNOWN_KEY)]);

    let out = segward_in(dir.path(), &["policy", "check", "fleet.yaml"]);

    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(problem_lines(&out.stderr, "fleet.yaml").len(), 1, "{out:?}");
    let problem = problem_at(&out.stderr, "fleet.yaml", at(UNKNOWN_KEY, "lables"));
    assert!(problem.contains("unknown field `lables`"), "{problem}");
    let report = json(&segward_in(dir.path(), &["policy", "check", "fleet.yaml", "--json"]).stdout);
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["line"], at(UNKNOWN_KEY, "lables").0);
}

const UNUSED_SEGMENT: &str = r#"segments:
  frontend:
    identities: ["spiffe://example.org/ns/prod/sa/frontend"]
  payments:
    identities: ["spiffe://example.org/ns/prod/sa/payments"]
  ledger:
    identities: ["spiffe://example.org/ns/prod/sa/ledger"]
rules:
  - name: frontend-calls-payments
    from: [frontend]
    to: [payments]
"#;

#[test]
fn an_unused_segment_is_a_warning_that_strict_turns_into_failure() {
    let dir = policy_dir(&[("fleet.yaml", UNUSED_SEGMENT)]);
    let (line, col) = at(UNUSED_SEGMENT, "ledger:");
    let warning = format!("fleet.yaml:{line}:{col}: warning[unused-segment]");

    let lenient = segward_in(dir.path(), &["policy", "check", "fleet.yaml"]);
    let strict = segward_in(dir.path(), &["policy", "check", "fleet.yaml", "--strict"]);

    assert_eq!(lenient.code, 0, "{lenient:?}");
    assert!(lenient.stdout.contains(&warning), "{lenient:?}");
    assert!(lenient.stdout.contains("1 warnings"), "{lenient:?}");
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(strict.stdout.contains(&warning), "{strict:?}");
}

/// `shared-sa` (staging) holds `api`'s (prod) identity; `job-x` (web) is one of `jobs`' (batch).
const SPANS: &str = r#"segments:
  api:
    identities: ["spiffe://example.org/sa/api"]
    labels: { env: prod, tier: web }
  shared-sa:
    identities: ["spiffe://example.org/sa/**"]
    labels: { env: staging, tier: web }
  jobs:
    identities: ["spiffe://example.org/jobs/*"]
    labels: { env: prod, tier: batch }
  job-x:
    identities: ["spiffe://example.org/jobs/x"]
    labels: { env: prod, tier: web }
rules:
  - name: everyone-calls-everyone
    from: [{ env: prod }, { env: staging }]
    to: [{ env: prod }, { env: staging }]
"#;

#[test]
fn the_boundary_label_decides_which_segments_an_identity_spans() {
    let dir = policy_dir(&[("fleet.yaml", SPANS)]);
    let warning = |needle: &str| {
        let (line, col) = at(SPANS, needle);
        format!("fleet.yaml:{line}:{col}: warning[identity-spans-boundary]")
    };

    let by_env = segward_in(dir.path(), &["policy", "check", "fleet.yaml"]);
    let by_tier = segward_in(
        dir.path(),
        &["policy", "check", "fleet.yaml", "--boundary-label", "tier"],
    );

    assert_eq!(by_env.code, 0, "{by_env:?}");
    assert!(by_env.stdout.contains(&warning("shared-sa:")), "{by_env:?}");
    assert!(!by_env.stdout.contains(&warning("job-x:")), "{by_env:?}");
    assert!(by_env.stdout.contains("1 warnings"), "{by_env:?}");
    assert_eq!(by_tier.code, 0, "{by_tier:?}");
    assert!(by_tier.stdout.contains(&warning("job-x:")), "{by_tier:?}");
    assert!(
        !by_tier.stdout.contains(&warning("shared-sa:")),
        "{by_tier:?}"
    );
    // The rule selects by `env`, not by `tier`: by tier its reach crosses unannounced.
    let (line, col) = at(SPANS, "everyone-calls-everyone");
    let crossing = format!("fleet.yaml:{line}:{col}: warning[reach-crosses-boundary]");
    assert!(by_tier.stdout.contains(&crossing), "{by_tier:?}");
    assert!(!by_env.stdout.contains(&crossing), "{by_env:?}");
    assert!(by_tier.stdout.contains("2 warnings"), "{by_tier:?}");
}

/// A staging `**` segment allowed into a critical one: `wide-source`.
const WIDE: &str = r#"segments:
  payments:
    identities: ["spiffe://example.org/ns/prod/sa/payments"]
    labels: { env: prod, tier: critical }
  staging:
    identities: ["spiffe://example.org/ns/staging/**"]
    labels: { env: staging }
rules:
  - name: staging-calls-payments
    from: [staging]
    to: [payments]
"#;

#[test]
fn the_segmentation_lints_are_warnings_that_strict_turns_into_failure() {
    let dir = policy_dir(&[("spans.yaml", SPANS), ("wide.yaml", WIDE)]);
    let (line, col) = at(WIDE, "staging-calls-payments");
    let wide = format!("wide.yaml:{line}:{col}: warning[wide-source]");
    let (line, col) = at(SPANS, "shared-sa:");
    let spans = format!("spans.yaml:{line}:{col}: warning[identity-spans-boundary]");

    for file in ["spans.yaml", "wide.yaml"] {
        let lenient = segward_in(dir.path(), &["policy", "check", file]);
        let strict = segward_in(dir.path(), &["policy", "check", file, "--strict"]);

        let warning = if file == "wide.yaml" { &wide } else { &spans };
        assert_eq!(lenient.code, 0, "{lenient:?}");
        assert!(lenient.stdout.contains(warning.as_str()), "{lenient:?}");
        assert_eq!(strict.code, 1, "{strict:?}");
        assert!(strict.stdout.contains(warning.as_str()), "{strict:?}");
    }
}

const PAYMENTS_SEGMENT: &str = r#"segments:
  payments:
    identities: ["spiffe://example.org/ns/prod/sa/payments"]
"#;

const PAYMENTS_AGAIN: &str = r#"# a second team adds its own payments segment
segments:
  payments:
    identities: ["spiffe://example.org/ns/prod/sa/payments-v2"]
rules:
  - name: anyone-calls-payments
    from: ["*"]
    to: [payments]
"#;

#[test]
fn a_segment_defined_in_two_files_names_both_places() {
    let dir = policy_dir(&[
        ("policies/a.yaml", PAYMENTS_SEGMENT),
        ("policies/b.yaml", PAYMENTS_AGAIN),
    ]);

    let out = segward_in(dir.path(), &["policy", "check", "policies"]);

    assert_eq!(out.code, 1, "{out:?}");
    let (first_line, first_col) = at(PAYMENTS_SEGMENT, "payments:");
    let again = at(PAYMENTS_AGAIN, "payments:");
    let problem = problem_at(&out.stderr, "policies/b.yaml", again);
    assert!(
        problem.contains(&format!("policies/a.yaml:{first_line}:{first_col}")),
        "{problem}"
    );
}

#[test]
fn a_folder_without_policy_files_is_invalid() {
    let dir = TempDir::new().unwrap();

    let out = segward_in(dir.path(), &["policy", "check", "."]);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no *.yaml"), "{out:?}");
}

#[test]
fn a_missing_policy_path_is_invalid_and_named() {
    let dir = TempDir::new().unwrap();

    let out = segward_in(dir.path(), &["policy", "check", "no-such-policies"]);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no-such-policies"), "{out:?}");
}

// --- policy explain ------------------------------------------------------------------------

#[test]
fn explain_shows_the_staging_runner_denied_payments_by_the_guard_rail() {
    let out = explain(CI_RUNNER, PAYMENTS, &["--path", "/v1/charges"]);

    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(field(&out.stdout, "decision"), "deny");
    assert_eq!(field(&out.stdout, "rule"), "staging-never-reaches-prod");
    assert_eq!(field(&out.stdout, "request"), "GET /v1/charges");
}

#[test]
fn explain_as_json_gives_the_decision_its_reasons_and_the_checked_version() {
    let checked = json(&segward(&["policy", "check", "policies/", "--json"]).stdout);

    let out = explain(CI_RUNNER, PAYMENTS, &["--path", "/v1/charges", "--json"]);

    assert_eq!(out.code, 0, "{out:?}");
    let e = json(&out.stdout);
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["rule"], "staging-never-reaches-prod");
    assert_eq!(e["reason"], "deny-rule");
    assert_eq!(e["policy_version"], checked["version"]);
    assert_eq!(
        e["source_segments"],
        serde_json::json!(["ci-runner", "staging-workloads"])
    );
    let fleet = fs::read_to_string(Path::new(ROOT).join("policies/fleet.yaml")).unwrap();
    let (line, col) = at(&fleet, "name: staging-never-reaches-prod");
    let name_col = col + "name: ".len();
    assert_eq!(
        e["matched_rules"],
        serde_json::json!([{
            "name": "staging-never-reaches-prod",
            "effect": "deny",
            "at": format!("policies/fleet.yaml:{line}:{name_col}"),
        }])
    );
}

#[test]
fn explain_normalizes_an_encoded_dot_dot_trick_to_the_admin_api_and_denies_it() {
    let trick = "/v1/charges/%2e%2e/%2e%2e/admin/keys";

    let out = explain(AGENT_READ, PAYMENTS, &["--path", trick, "--json"]);

    assert_eq!(out.code, 0, "{out:?}");
    let e = json(&out.stdout);
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["rule"], "no-admin-api");
    assert_eq!(e["path"], "/admin/keys");
}

#[test]
fn explain_ignores_the_query_string() {
    let out = explain(
        AGENT_READ,
        PAYMENTS,
        &["--path", "/v1/charges/ch_1?x=1", "--json"],
    );

    assert_eq!(out.code, 0, "{out:?}");
    let e = json(&out.stdout);
    assert_eq!(e["path"], "/v1/charges/ch_1");
    assert_eq!(e["decision"], "allow");
}

#[test]
fn explain_refuses_an_invalid_spiffe_id() {
    let out = explain("spiffe://Example.org/x", PAYMENTS, &[]);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("spiffe://Example.org/x"), "{out:?}");
    assert_eq!(out.stdout, "");
}

#[test]
fn explain_refuses_an_encoded_slash_as_the_proxy_would_with_400() {
    let out = explain(
        AGENT_READ,
        PAYMENTS,
        &["--path", "/v1/charges/..%2f..%2fadmin"],
    );

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("400"), "{out:?}");
    assert_eq!(out.stdout, "");
}

#[test]
fn explain_denies_a_revoked_identity_as_revoked() {
    let revoked = "spiffe://example.org/ns/prod/sa/legacy-batch";

    let out = explain(revoked, LEDGER, &["--path", "/v1/entries", "--json"]);

    assert_eq!(out.code, 0, "{out:?}");
    let e = json(&out.stdout);
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["rule"], "revoked");
}

#[test]
fn explain_denies_an_identity_in_no_segment_by_default() {
    let stranger = "spiffe://example.org/ns/prod/sa/stranger";

    let out = explain(stranger, PAYMENTS, &["--path", "/v1/charges", "--json"]);

    assert_eq!(out.code, 0, "{out:?}");
    let e = json(&out.stdout);
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["rule"], "default-deny");
    assert_eq!(e["source_segments"], Value::Array(vec![]));
}

// --- usage and help ------------------------------------------------------------------------

#[test]
fn usage_errors_exit_with_code_2_and_say_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (&["policy", "explain", "policies/"], "--from"),
        (&["frobnicate"], "frobnicate"),
        (&["policy", "check", "policies/", "--frob"], "--frob"),
    ];
    for (args, named) in cases {
        let out = segward(args);

        assert_eq!(out.code, 2, "segward {args:?}: {out:?}");
        assert!(out.stderr.contains(named), "segward {args:?}: {out:?}");
        assert_eq!(out.stdout, "", "segward {args:?}");
    }
}

#[test]
fn help_on_each_command_lists_its_flags() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--help"], &["policy", "certs", "demo"]),
        (
            &["policy", "check", "--help"],
            &["--strict", "--json", "--boundary-label"],
        ),
        (
            &["certs", "issue", "--help"],
            &["--ca", "--spiffe-id", "--out", "--ttl", "--dns"],
        ),
    ];
    for (args, flags) in cases {
        let out = segward(args);

        assert_eq!(out.code, 0, "segward {args:?}: {out:?}");
        for flag in *flags {
            assert!(out.stdout.contains(flag), "segward {args:?} lacks {flag}");
        }
    }
}

// --- certs ---------------------------------------------------------------------------------

#[test]
fn certs_init_writes_a_ca_whose_key_only_its_owner_can_read() {
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca");

    let out = init_ca(&ca, &[]);

    assert_eq!(out.code, 0, "{out:?}");
    for file in ["ca.pem", "ca.key", "bundle.pem"] {
        assert!(ca.join(file).is_file(), "{file} missing");
    }
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
}

#[test]
fn certs_init_keeps_an_existing_ca_key_unless_forced() {
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca");
    assert_eq!(init_ca(&ca, &[]).code, 0);
    let first_key = fs::read(ca.join("ca.key")).unwrap();

    let again = init_ca(&ca, &[]);

    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("--force"), "{again:?}");
    assert_eq!(fs::read(ca.join("ca.key")).unwrap(), first_key);

    let forced = init_ca(&ca, &["--force"]);

    assert_eq!(forced.code, 0, "{forced:?}");
    assert_ne!(fs::read(ca.join("ca.key")).unwrap(), first_key);
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
}

#[test]
fn certs_init_refuses_an_upper_case_trust_domain_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca");

    let out = segward(&[
        "certs",
        "init",
        "--trust-domain",
        "Example.org",
        "--out",
        s(&ca),
    ]);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("Example.org"), "{out:?}");
    assert!(!ca.exists());
}

#[test]
fn certs_issue_writes_the_leaf_then_its_chain_and_a_private_pkcs8_key() {
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca");
    assert_eq!(init_ca(&ca, &[]).code, 0);
    let svid = ca.join("payments");

    let out = issue(&ca, PAYMENTS, &svid, &["--ttl", "2h", "--dns", "payments"]);

    assert_eq!(out.code, 0, "{out:?}");
    let chain = fs::read_to_string(svid.join("svid.pem")).unwrap();
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf then CA"
    );
    let key = fs::read_to_string(svid.join("svid.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    assert_eq!(mode(&svid.join("svid.key")), 0o600);
    assert!(svid.join("bundle.pem").is_file());
}

#[test]
fn certs_issue_refuses_a_trust_domain_id_without_a_path() {
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca");
    assert_eq!(init_ca(&ca, &[]).code, 0);
    let svid = ca.join("root");

    let out = issue(&ca, "spiffe://example.org", &svid, &[]);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("spiffe://example.org"), "{out:?}");
    assert!(!svid.exists());
}

#[test]
fn certs_issue_refuses_a_zero_or_unknown_ttl_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca");
    assert_eq!(init_ca(&ca, &[]).code, 0);
    let svid = ca.join("payments");

    for ttl in ["0h", "5x"] {
        let out = issue(&ca, PAYMENTS, &svid, &["--ttl", ttl]);

        assert_eq!(out.code, 1, "--ttl {ttl}: {out:?}");
        assert!(out.stderr.contains(ttl), "--ttl {ttl}: {out:?}");
        assert!(!svid.exists(), "--ttl {ttl} wrote files");
    }
}

#[test]
fn certs_issue_refuses_an_id_of_another_trust_domain_and_writes_nothing() {
    // docs/security.md: "a CA of one trust domain cannot vouch for another".
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca");
    assert_eq!(init_ca(&ca, &[]).code, 0);
    let svid = dir.path().join("evil");

    let out = issue(&ca, "spiffe://evil.org/ns/x", &svid, &[]);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("`example.org`"), "{out:?}");
    assert!(out.stderr.contains("`evil.org`"), "{out:?}");
    assert!(!svid.exists(), "wrote files");
}

#[test]
fn certs_issue_refuses_a_dns_name_that_is_not_one_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca");
    assert_eq!(init_ca(&ca, &[]).code, 0);
    let svid = dir.path().join("payments");

    let out = issue(
        &ca,
        PAYMENTS,
        &svid,
        &["--dns", "payments", "--dns", "bad name"],
    );

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("`bad name`"), "{out:?}");
    assert!(!svid.exists(), "wrote files");
}

#[test]
fn certs_issue_without_a_ca_names_the_missing_file() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("no-ca");

    let out = issue(&missing, PAYMENTS, &dir.path().join("payments"), &[]);

    assert_eq!(out.code, 1, "{out:?}");
    let ca_pem = missing.join("ca.pem");
    assert!(out.stderr.contains(s(&ca_pem)), "{out:?}");
}

#[test]
fn certs_inspect_as_json_shows_the_issued_svid_passes_both_roles() {
    let dir = TempDir::new().unwrap();
    let svid = issued_payments_svid(dir.path());

    let out = segward(&["certs", "inspect", s(&svid), "--json"]);

    assert_eq!(out.code, 0, "{out:?}");
    let report = json(&out.stdout);
    assert_eq!(report["spiffe_id"], PAYMENTS);
    assert_eq!(report["chain_len"], 2);
    assert_eq!(report["client_check"], "ok");
    assert_eq!(report["server_check"], "ok");
    assert_eq!(report["chain_check"], "ok", "the CA after the leaf signs");
    let expires_in = report["expires_in_secs"].as_i64().unwrap();
    assert!(
        (2 * 3600 - 600..=2 * 3600).contains(&expires_in),
        "a 2h SVID expires in {expires_in}s"
    );
}

#[test]
fn certs_inspect_names_the_spiffe_id_for_a_human() {
    let dir = TempDir::new().unwrap();
    let svid = issued_payments_svid(dir.path());

    let out = segward(&["certs", "inspect", s(&svid)]);

    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(PAYMENTS), "{out:?}");
}

#[test]
fn certs_inspect_reports_a_ca_but_exits_1_as_it_is_no_x509_svid() {
    let dir = TempDir::new().unwrap();
    let ca = dir.path().join("ca");
    assert_eq!(init_ca(&ca, &[]).code, 0);
    let ca_pem = ca.join("ca.pem");

    let text = segward(&["certs", "inspect", s(&ca_pem)]);
    let json_out = segward(&["certs", "inspect", s(&ca_pem), "--json"]);

    assert_eq!(text.code, 1, "{text:?}");
    assert!(text.stdout.contains("spiffe://example.org"), "{text:?}");
    assert!(
        text.stdout.contains("client check"),
        "report on stdout: {text:?}"
    );
    assert!(text.stderr.contains(s(&ca_pem)), "{text:?}");
    assert!(text.stderr.contains("not a valid X509-SVID"), "{text:?}");
    assert!(
        text.stderr.contains("empty path"),
        "the client check's reason: {text:?}"
    );
    assert_eq!(text.stderr.lines().count(), 1, "{text:?}");
    assert_eq!(json_out.code, 1, "{json_out:?}");
    assert_eq!(json(&json_out.stdout)["is_ca"], true);
}

#[test]
fn certs_inspect_of_an_expired_svid_exits_1_and_says_it_expired() {
    let dir = TempDir::new().unwrap();
    let expired = dir.path().join("expired.pem");
    let ca = segward::certs::Ca::new(&"example.org".parse().unwrap()).unwrap();
    let id = PAYMENTS.parse().unwrap();
    let mut params = segward::certs::svid_params(&id, Duration::from_secs(3600), &[]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 2);
    fs::write(&expired, ca.sign(&params).unwrap().chain_pem).unwrap();

    let out = segward(&["certs", "inspect", s(&expired), "--json"]);

    assert_eq!(out.code, 1, "{out:?}");
    let report = json(&out.stdout);
    assert_eq!(report["spiffe_id"], PAYMENTS);
    assert!(report["expires_in_secs"].as_i64().unwrap() < 0, "{report}");
    assert!(out.stderr.contains("expired"), "{out:?}");
}

/// X509-SVID §4.1/§4.3: every certificate after the leaf is a signing certificate. A chain
/// whose intermediate is CA:false, or lacks keyCertSign, is reported and exits 1 — with the
/// leaf itself passing both roles.
#[test]
fn certs_inspect_checks_every_signing_certificate_of_the_chain() {
    let dir = TempDir::new().unwrap();
    let root = segward::certs::Ca::new(&"example.org".parse().unwrap()).unwrap();
    let id = PAYMENTS.parse().unwrap();
    type Alter = fn(&mut rcgen::CertificateParams);
    let rows: [(&str, Alter, Option<&str>); 3] = [
        ("good", |_| {}, None),
        (
            "ca-false",
            |p| p.is_ca = rcgen::IsCa::ExplicitNoCa,
            Some("is not a CA"),
        ),
        (
            "no-key-cert-sign",
            |p| p.key_usages = vec![rcgen::KeyUsagePurpose::CrlSign],
            Some("lacks keyUsage keyCertSign"),
        ),
    ];
    for (name, alter, problem) in rows {
        let intermediate = root.intermediate(alter).unwrap();
        let svid = intermediate
            .issue(&id, Duration::from_secs(3600), &[])
            .unwrap();
        let file = dir.path().join(format!("{name}.pem"));
        fs::write(&file, &svid.chain_pem).unwrap();

        let out = segward(&["certs", "inspect", s(&file), "--json"]);

        let report = json(&out.stdout);
        assert_eq!(report["client_check"], "ok", "{name}: {report}");
        assert_eq!(report["server_check"], "ok", "{name}: {report}");
        assert_eq!(report["chain_len"], 2, "{name}: {report}");
        let chain_check = report["chain_check"].as_str().unwrap();
        match problem {
            None => {
                assert_eq!(out.code, 0, "{name}: {out:?}");
                assert_eq!(chain_check, "ok");
            }
            Some(problem) => {
                assert_eq!(out.code, 1, "{name}: {out:?}");
                assert!(chain_check.starts_with("certificate 2 ("), "{chain_check}");
                assert!(chain_check.contains("intermediate CA"), "{chain_check}");
                assert!(chain_check.contains(problem), "{chain_check}");
                assert!(out.stderr.contains(s(&file)), "{out:?}");
                assert!(out.stderr.contains(problem), "{out:?}");
            }
        }
    }
}

/// RFC 5280 §6.1: the self-signed root at the end of svid.pem is the trust anchor, not a
/// signing certificate of the chain; a root without keyUsage (as many CAs make them) leaves a
/// valid SVID valid, while an intermediate under it must still carry keyCertSign.
#[test]
fn certs_inspect_takes_a_root_without_key_usage_as_the_trust_anchor() {
    let dir = TempDir::new().unwrap();
    let td = "example.org".parse().unwrap();
    let root = segward::certs::Ca::root(&td, |p| p.key_usages.clear()).unwrap();
    let id = PAYMENTS.parse().unwrap();
    let hour = Duration::from_secs(3600);
    let direct = root.issue(&id, hour, &[]).unwrap();
    let bare_intermediate = root.intermediate(|p| p.key_usages.clear()).unwrap();
    let under_bare = bare_intermediate.issue(&id, hour, &[]).unwrap();
    let rows = [
        ("root", direct.chain_pem.clone(), 0, "ok"),
        (
            "bare-intermediate",
            format!("{}{}", under_bare.chain_pem, root.cert_pem()),
            1,
            "certificate 2 (",
        ),
    ];
    for (name, chain, code, chain_check) in rows {
        let file = dir.path().join(format!("{name}.pem"));
        fs::write(&file, chain).unwrap();

        let out = segward(&["certs", "inspect", s(&file), "--json"]);

        assert_eq!(out.code, code, "{name}: {out:?}");
        let report = json(&out.stdout);
        let found = report["chain_check"].as_str().unwrap();
        assert!(found.starts_with(chain_check), "{name}: {report}");
    }
}

#[test]
fn certs_inspect_refuses_a_file_without_a_certificate() {
    let dir = TempDir::new().unwrap();
    let not_pem = dir.path().join("notes.txt");
    fs::write(&not_pem, "hello, not a certificate\n").unwrap();

    let out = segward(&["certs", "inspect", s(&not_pem)]);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains(s(&not_pem)), "{out:?}");
}

// --- policy explain from the decision log --------------------------------------------------

const FRONTEND: &str = "spiffe://example.org/ns/prod/sa/frontend";

#[test]
fn explain_of_a_logged_deny_shows_its_rule_and_why_the_allow_rule_did_not_decide() {
    let version = fleet_version();
    let line = Logged {
        policy_version: Some(&version),
        ..Logged::agent_write_denied("r-agent-1")
    }
    .line();

    let out = segward(&["policy", "explain", "policies/", "--log-line", &line]);

    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(field(&out.stdout, "decision"), "deny");
    assert_eq!(field(&out.stdout, "rule"), "agent-read-is-read-only");
    assert_eq!(field(&out.stdout, "request"), "POST /v1/charges/ch_1");
    assert!(
        field(&out.stdout, "compared").starts_with("unchanged"),
        "{out:?}"
    );
    let deny = candidate_row(&out.stdout, "agent-read-is-read-only");
    assert!(deny.contains(" yes ") && deny.contains("decides"), "{deny}");
    let allow = candidate_row(&out.stdout, "agents-read-charges-and-entries");
    assert!(allow.contains(" no "), "{allow}");
    assert!(
        allow.contains("method POST not in methods: [GET, HEAD]"),
        "{allow}"
    );
    assert!(allow.contains("policies/fleet.yaml:"), "{allow}");
}

const LEDGER_DB: &str = "spiffe://example.org/ns/prod/sa/ledger-db";

#[test]
fn explain_tcp_decides_a_connection_without_method_or_path_as_the_sidecar_does() {
    // docs/l4.md: the ledger's rule names no methods or paths, so it allows the
    // connection; the staging guard rail is a deny, which applies to connections too.
    let out = explain(LEDGER, LEDGER_DB, &["--tcp"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(field(&out.stdout, "decision"), "allow");
    assert_eq!(field(&out.stdout, "rule"), "ledger-uses-its-database");
    assert_eq!(
        field(&out.stdout, "request"),
        "TCP connection (no method, no path)"
    );
    let out = explain(CI_RUNNER, LEDGER_DB, &["--tcp", "--json"]);
    let e = json(&out.stdout);
    assert_eq!(
        (&e["decision"], &e["rule"], &e["protocol"]),
        (
            &"deny".into(),
            &"staging-never-reaches-prod".into(),
            &"tcp".into()
        )
    );
    // An allow rule written for HTTP (methods, paths) never allows a connection, and says
    // so; a deny rule written for HTTP (`paths: [/admin/**]` on critical segments) refuses
    // every connection it covers (fail closed).
    let out = explain(FRONTEND, PAYMENTS, &["--tcp"]);
    assert_eq!(field(&out.stdout, "decision"), "deny");
    assert_eq!(field(&out.stdout, "rule"), "no-admin-api");
    let allow = candidate_row(&out.stdout, "frontend-creates-charges");
    assert!(allow.contains("an HTTP rule"), "{allow}");
    // --tcp has no method or path to take.
    let out = explain(LEDGER, LEDGER_DB, &["--tcp", "--method", "POST"]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn explain_of_a_logged_tcp_connection_re_decides_it_as_a_connection() {
    let version = fleet_version();
    let line = serde_json::json!({
        "time": "2026-12-03T16:00:00.000000Z", "request_id": "c-1", "direction": "outbound",
        "protocol": "tcp", "event": "open", "source_id": CI_RUNNER, "destination_id": LEDGER_DB,
        "method": "", "path": "", "decision": "deny", "rule": "staging-never-reaches-prod",
        "reason": "deny-rule", "policy_version": version,
    })
    .to_string();

    let out = segward(&["policy", "explain", "policies/", "--log-line", &line]);

    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(field(&out.stdout, "rule"), "staging-never-reaches-prod");
    assert_eq!(
        field(&out.stdout, "request"),
        "TCP connection (no method, no path)"
    );
    assert!(
        field(&out.stdout, "compared").starts_with("unchanged"),
        "{out:?}"
    );
}

#[test]
fn explain_by_request_id_picks_that_line_from_a_log_of_other_lines() {
    let version = fleet_version();
    let wanted = Logged {
        request_id: "0badc0de00000002",
        source_id: CI_RUNNER,
        destination_id: Some(PAYMENTS),
        method: "GET",
        path: "/v1/charges",
        decision: "deny",
        rule: Some("staging-never-reaches-prod"),
        reason: "deny-rule",
        policy_version: Some(&version),
        status: 403,
    };
    let other = Logged {
        policy_version: Some(&version),
        ..Logged::agent_write_denied("0badc0de00000001")
    };
    let unknown_destination = Logged {
        request_id: "0badc0de00000003",
        destination_id: None,
        policy_version: None,
        reason: "unknown-destination",
        rule: None,
        ..other
    };
    let log = [
        "2025-06-01T12:00:00Z  INFO segward: listening inbound=0.0.0.0:8443".to_owned(),
        other.line(),
        // A human line naming the wanted id, and the wanted line behind a timestamp prefix.
        "2025-06-01T12:00:01Z  WARN segward: slow upstream request_id=0badc0de00000002".into(),
        format!("2025-06-01T12:00:01.5Z stderr F {}", wanted.line()),
        unknown_destination.line(),
    ];
    let dir = policy_dir(&[("segward.log", &log.join("\n"))]);
    let log_file = dir.path().join("segward.log");

    let out = segward(&[
        "policy",
        "explain",
        "policies/",
        "--request-id",
        "0badc0de00000002",
        "--log",
        s(&log_file),
    ]);

    assert_eq!(out.code, 0, "{out:?}");
    let id = field(&out.stdout, "request id");
    assert!(id.starts_with("0badc0de00000002 (inbound"), "{id}");
    assert!(id.contains("segward.log:4"), "{id}");
    assert_eq!(field(&out.stdout, "rule"), "staging-never-reaches-prod");
    assert_eq!(field(&out.stdout, "request"), "GET /v1/charges");
}

#[test]
fn explain_of_an_unknown_request_id_exits_1_and_names_it() {
    let dir = policy_dir(&[("segward.log", "not json\n{\"request_id\":\"abc\"}\n")]);
    let log_file = dir.path().join("segward.log");

    let out = segward(&[
        "policy",
        "explain",
        "policies/",
        "--request-id",
        "no-such-id",
        "--log",
        s(&log_file),
    ]);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no-such-id"), "{out:?}");
    assert_eq!(out.stdout, "");
}

#[test]
fn explain_reports_a_policy_changed_since_the_line_was_logged() {
    // Logged under an older policy that let frontend HEAD its charges; today it may not.
    let changed = Logged {
        request_id: "r-head",
        source_id: FRONTEND,
        destination_id: Some(PAYMENTS),
        method: "HEAD",
        path: "/v1/charges",
        decision: "allow",
        rule: Some("frontend-creates-charges"),
        reason: "allow-rule",
        policy_version: Some("sha256:0123456789abcdef"),
        status: 200,
    };
    let same_decision = Logged {
        method: "GET",
        ..changed
    };
    let cases = [
        (changed, true, "CHANGED: the policy changed"),
        (
            same_decision,
            false,
            "same decision, but the policy changed",
        ),
    ];
    for (logged, decision_changed, summary) in cases {
        let line = logged.line();

        let text = segward(&["policy", "explain", "policies/", "--log-line", &line]);
        let json_out = segward(&[
            "policy",
            "explain",
            "policies/",
            "--log-line",
            &line,
            "--json",
        ]);

        assert_eq!(text.code, 0, "{text:?}");
        assert!(
            field(&text.stdout, "compared").starts_with(summary),
            "{text:?}"
        );
        assert!(
            field(&text.stdout, "logged").ends_with("under policy sha256:0123456789abcdef"),
            "{text:?}"
        );
        let e = json(&json_out.stdout);
        assert_eq!(e["policy_changed"], true, "{e}");
        assert_eq!(e["decision_changed"], decision_changed, "{e}");
    }
}

#[test]
fn a_would_deny_logged_in_audit_mode_is_compared_as_audit_mode() {
    let version = fleet_version();
    let line = Logged {
        request_id: "r-audit",
        source_id: CI_RUNNER,
        destination_id: Some(PAYMENTS),
        method: "GET",
        path: "/v1/charges",
        decision: "would-deny",
        rule: Some("staging-never-reaches-prod"),
        reason: "deny-rule",
        policy_version: Some(&version),
        status: 200,
    }
    .line();

    let out = segward(&[
        "policy",
        "explain",
        "policies/",
        "--log-line",
        &line,
        "--json",
    ]);

    assert_eq!(out.code, 0, "{out:?}");
    let e = json(&out.stdout);
    assert_eq!(e["decision"], "deny", "the policy's own verdict");
    assert_eq!(e["audit_mode"], true);
    assert_eq!(e["now"]["decision"], "would-deny");
    assert_eq!(e["decision_changed"], false);
}

#[test]
fn explain_of_a_log_line_as_json_gives_both_decisions_and_every_candidate() {
    let version = fleet_version();
    let line = Logged {
        policy_version: Some(&version),
        ..Logged::agent_write_denied("r-agent-2")
    }
    .line();

    let out = segward(&[
        "policy",
        "explain",
        "policies/",
        "--log-line",
        &line,
        "--json",
    ]);

    assert_eq!(out.code, 0, "{out:?}");
    let e = json(&out.stdout);
    assert_eq!(e["logged"]["request_id"], "r-agent-2");
    assert_eq!(e["logged"]["direction"], "inbound");
    assert_eq!(e["logged"]["decision"], "deny");
    assert_eq!(e["logged"]["rule"], "agent-read-is-read-only");
    assert_eq!(e["logged"]["reason"], "deny-rule");
    assert_eq!(e["logged"]["policy_version"], version.as_str());
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["rule"], "agent-read-is-read-only");
    assert_eq!(e["policy_version"], version.as_str());
    assert_eq!(e["source_id"], AGENT_READ);
    assert_eq!(
        (e["decision_changed"].clone(), e["policy_changed"].clone()),
        (false.into(), false.into())
    );
    assert!(
        e["decision_path"].as_str().unwrap().starts_with("step 2:"),
        "{e}"
    );
    let candidates = e["candidates"].as_array().unwrap();
    let names: Vec<&str> = candidates
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "candidates come by name");
    let allow = candidates
        .iter()
        .find(|c| c["name"] == "agents-read-charges-and-entries")
        .unwrap();
    assert_eq!(allow["effect"], "allow");
    assert_eq!(allow["matched"], false);
    assert_eq!(allow["check"], "method");
    assert_eq!(allow["why_not"], "method POST not in methods: [GET, HEAD]");
    let fleet = fs::read_to_string(Path::new(ROOT).join("policies/fleet.yaml")).unwrap();
    let (line, col) = at(&fleet, "name: agents-read-charges-and-entries");
    let name_col = col + "name: ".len();
    assert_eq!(
        allow["at"],
        format!("policies/fleet.yaml:{line}:{name_col}")
    );
}

#[test]
fn explain_with_from_and_to_also_shows_the_decision_path_and_every_candidate() {
    let out = explain(
        FRONTEND,
        PAYMENTS,
        &["--method", "DELETE", "--path", "/v1/charges"],
    );

    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(field(&out.stdout, "rule"), "default-deny");
    assert!(
        field(&out.stdout, "decision path").starts_with("step 4:"),
        "{out:?}"
    );
    let allow = candidate_row(&out.stdout, "frontend-creates-charges");
    assert!(
        allow.contains("method DELETE not in methods: [GET, POST]"),
        "{allow}"
    );
    let partner = candidate_row(&out.stdout, "partner-sends-webhooks");
    assert!(
        partner.contains("source not selected by from: [{ env: external, risk: third-party }]"),
        "{partner}"
    );
}

#[test]
fn a_log_line_that_is_no_decision_line_exits_1_and_says_why() {
    let unknown_destination = Logged {
        destination_id: None,
        rule: None,
        reason: "unknown-destination",
        policy_version: None,
        ..Logged::agent_write_denied("r-1")
    }
    .line();
    let no_source = unknown_destination.replace("\"source_id\"", "\"peer\"");
    let cases: &[(&str, &str)] = &[
        ("INFO segward: listening", "not a decision-log line"),
        ("[1, 2]", "not a decision-log line"),
        (r#"{"request_id":"r-1","status":200}"#, "no `decision`"),
        (
            &unknown_destination,
            "no destination_id (reason `unknown-destination`)",
        ),
        (&no_source, "no source_id"),
    ];
    for (line, says) in cases {
        let out = segward(&["policy", "explain", "policies/", "--log-line", line]);

        assert_eq!(out.code, 1, "{line}: {out:?}");
        assert!(out.stderr.contains(says), "{line}: {out:?}");
        assert_eq!(out.stdout, "", "{line}");
    }
}

#[test]
fn explain_takes_exactly_one_way_of_naming_the_request() {
    let line = Logged::agent_write_denied("r-1").line();
    let cases: &[&[&str]] = &[
        &["--from", FRONTEND, "--to", PAYMENTS, "--log-line", &line],
        &["--log-line", &line, "--request-id", "r-1", "--log", "x.log"],
        &["--request-id", "r-1"],
        &["--log", "x.log"],
        &["--log-line", &line, "--method", "POST"],
        &["--log-line", &line, "--to", PAYMENTS],
    ];
    for extra in cases {
        let mut args = vec!["policy", "explain", "policies/"];
        args.extend_from_slice(extra);

        let out = segward(&args);

        assert_eq!(out.code, 2, "segward {args:?}: {out:?}");
        assert_eq!(out.stdout, "", "segward {args:?}");
    }
    let help = segward(&["policy", "explain", "--help"]);
    for flag in [
        "--from",
        "--to",
        "--log-line",
        "--request-id",
        "--log",
        "--json",
    ] {
        assert!(help.stdout.contains(flag), "explain --help lacks {flag}");
    }
}

// --- helpers -------------------------------------------------------------------------------

/// What one run of the binary left behind.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `segward args` in the crate root.
pub(crate) fn segward(args: &[&str]) -> Output {
    segward_in(Path::new(ROOT), args)
}

/// Runs `segward args` in `dir`, failing the test if it outlives [`DEADLINE`].
pub(crate) fn segward_in(dir: &Path, args: &[&str]) -> Output {
    let (mut stdout, mut stderr) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_segward"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("segward {args:?} still running after {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code().unwrap(),
        stdout: read_back(&mut stdout),
        stderr: read_back(&mut stderr),
    }
}

fn read_back(file: &mut File) -> String {
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    text
}

/// Parses stdout that must be one JSON object.
pub(crate) fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// `segward policy explain policies/ --from FROM --to TO EXTRA…`.
fn explain(from: &str, to: &str, extra: &[&str]) -> Output {
    let mut args = vec!["policy", "explain", "policies/", "--from", from, "--to", to];
    args.extend_from_slice(extra);
    segward(&args)
}

/// The value of a `name:   value` line of explain's human output.
fn field<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no `{name}:` line in:\n{stdout}"))
        .trim()
}

/// 1-based line and column of the first occurrence of `needle` in `text`.
fn at(text: &str, needle: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .unwrap_or_else(|| panic!("`{needle}` is not in the policy"))
}

/// The stderr lines reporting a problem in `file` (the `file:line:col: message` lines).
fn problem_lines<'a>(stderr: &'a str, file: &str) -> Vec<&'a str> {
    let prefix = format!("{file}:");
    stderr.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// The message of the problem reported at `file:line:col`.
fn problem_at<'a>(stderr: &'a str, file: &str, (line, col): (usize, usize)) -> &'a str {
    let prefix = format!("{file}:{line}:{col}: ");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no problem at {file}:{line}:{col} in:\n{stderr}"))
}

/// A temporary folder holding the given policy files (paths relative to it).
pub(crate) fn policy_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

/// `segward certs init --trust-domain example.org --out CA EXTRA…`.
fn init_ca(ca: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "certs",
        "init",
        "--trust-domain",
        "example.org",
        "--out",
        s(ca),
    ];
    args.extend_from_slice(extra);
    segward(&args)
}

/// `segward certs issue --ca CA --spiffe-id ID --out OUT EXTRA…`.
fn issue(ca: &Path, id: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "certs",
        "issue",
        "--ca",
        s(ca),
        "--spiffe-id",
        id,
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    segward(&args)
}

/// A fresh CA in `dir` and a 2-hour SVID for payments; returns its `svid.pem`.
fn issued_payments_svid(dir: &Path) -> PathBuf {
    let ca = dir.join("ca");
    assert_eq!(init_ca(&ca, &[]).code, 0);
    let out = issue(&ca, PAYMENTS, &ca.join("payments"), &["--ttl", "2h"]);
    assert_eq!(out.code, 0, "{out:?}");
    ca.join("payments/svid.pem")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A temporary path as an argument (they are UTF-8 on every test machine).
fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The version `policy check` reports for the shipped policy.
fn fleet_version() -> String {
    let checked = json(&segward(&["policy", "check", "policies/", "--json"]).stdout);
    checked["version"].as_str().unwrap().to_owned()
}

/// A decision-log line's fields (docs/operations.md); `line()` writes it as the sidecar does.
#[derive(Debug, Clone, Copy)]
struct Logged<'a> {
    request_id: &'a str,
    source_id: &'a str,
    destination_id: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    decision: &'a str,
    rule: Option<&'a str>,
    reason: &'a str,
    policy_version: Option<&'a str>,
    status: u16,
}

impl<'a> Logged<'a> {
    /// The read-only agent refused a POST to payments (no policy version set).
    fn agent_write_denied(request_id: &'a str) -> Self {
        Self {
            request_id,
            source_id: AGENT_READ,
            destination_id: Some(PAYMENTS),
            method: "POST",
            path: "/v1/charges/ch_1",
            decision: "deny",
            rule: Some("agent-read-is-read-only"),
            reason: "deny-rule",
            policy_version: None,
            status: 403,
        }
    }

    /// One flat JSON object, fields in the decision log's order, absent ones left out.
    fn line(&self) -> String {
        let text = |v: &str| Value::from(v).to_string();
        let mut fields = vec![
            ("time", text("2025-06-01T12:00:01.234567Z")),
            ("request_id", text(self.request_id)),
            ("direction", text("inbound")),
            ("source_id", text(self.source_id)),
        ];
        fields.extend(self.destination_id.map(|d| ("destination_id", text(d))));
        fields.push(("method", text(self.method)));
        fields.push(("path", text(self.path)));
        fields.push(("decision", text(self.decision)));
        fields.extend(self.rule.map(|r| ("rule", text(r))));
        fields.push(("reason", text(self.reason)));
        fields.extend(self.policy_version.map(|v| ("policy_version", text(v))));
        fields.push(("status", self.status.to_string()));
        fields.push(("duration_ms", "0.412".into()));
        let pairs: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", pairs.join(","))
    }
}

/// The row of `rule` in explain's candidate table.
fn candidate_row<'a>(stdout: &'a str, rule: &str) -> &'a str {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("candidate rules:"))
        .find(|l| l.split_whitespace().next() == Some(rule))
        .unwrap_or_else(|| panic!("no candidate `{rule}` in:\n{stdout}"))
}

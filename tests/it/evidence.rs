//! Least privilege from evidence (docs/least-privilege.md), from logs of REAL sidecars: the
//! `segward run` binary serves real mTLS requests from freshly minted identities, its
//! decision-log lines on stderr are the evidence, and `segward policy replay` is judged on
//! them — the same policy flips nothing, a revocation flips exactly the revoked identity's
//! allowed requests with the log's counts, `--fail-on-break` exits 3.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::StatusCode;
use serde_json::Value;

use crate::cli::segward_in;
use crate::support::backend::Backend;
use crate::support::client::{Alpn, MtlsClient};
use crate::support::pki::Pki;
use crate::support::process::Segward;
use crate::support::sidecar::{inbound_block, write_config, write_policy};

const TD: &str = "example.org";
const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const BATCH: &str = "spiffe://example.org/ns/prod/sa/batch";
const API: &str = "spiffe://example.org/ns/prod/sa/api";

/// Web reads api's `/v1/**` and may POST orders (it never does); batch may GET, POST and
/// DELETE charges (it only ever GETs); nobody may reach `/admin/**`.
pub const POLICY: &str = r#"segments:
  web:
    identities: ["spiffe://example.org/ns/prod/sa/web"]
  batch:
    identities: ["spiffe://example.org/ns/prod/sa/batch"]
  api:
    identities: ["spiffe://example.org/ns/prod/sa/api"]
rules:
  - name: web-reads-api
    from: [web]
    to: [api]
    methods: [GET]
    paths: ["/v1/**"]
  - name: batch-uses-charges
    from: [batch]
    to: [api]
    methods: [GET, POST, DELETE]
    paths: ["/v1/charges/*"]
  - name: web-writes-orders
    from: [web]
    to: [api]
    methods: [POST]
    paths: ["/v1/orders"]
  - name: no-admin
    effect: deny
    from: ["*"]
    to: [api]
    paths: ["/admin/**"]
"#;

/// What the traffic below sends, and so what the log must hold.
const WEB_READS: usize = 5;
const WEB_ADMIN: usize = 2;
const BATCH_READS: usize = 7;

/// The decision log of a real api sidecar (inbound, `mode` as given) after web and batch
/// sent their traffic: the file holding its whole stderr, in `dir`. The PKI is minted here:
/// nothing else in a test needs it.
pub async fn real_log(policy: &str, mode: &str, dir: &Path) -> PathBuf {
    let pki = &Pki::new(&[TD]);
    let backend = Backend::start().await;
    let api = pki.issue(API);
    let listen = Backend::unused_addr();
    let policy = write_policy(pki, policy);
    let listeners = inbound_block(backend.addr()).replace("127.0.0.1:0", &listen.to_string())
        + &format!("mode: {mode}\n");
    let config = write_config(pki, &api, &[TD], &policy, &listeners);
    let mut segward = Segward::spawn(&config);
    segward.until_listening(listen).await;
    traffic(pki, listen).await;
    let stderr = segward.stop().await;
    let log = dir.join("api.log");
    std::fs::write(&log, stderr).unwrap();
    log
}

async fn traffic(pki: &Pki, listen: SocketAddr) {
    let (web, batch) = (pki.issue(WEB), pki.issue(BATCH));
    let web = MtlsClient::new(Some(&web.pem), &pki.bundle_pems(), Alpn::H1);
    let batch = MtlsClient::new(Some(&batch.pem), &pki.bundle_pems(), Alpn::H1);
    for n in 0..WEB_READS {
        let reply = web.get(listen, &format!("/v1/items/{n}")).await.unwrap();
        assert_ne!(reply.status, StatusCode::FORBIDDEN);
    }
    for _ in 0..WEB_ADMIN {
        let reply = web.get(listen, "/admin/keys").await.unwrap();
        assert!(reply.status == StatusCode::FORBIDDEN || reply.status == StatusCode::OK);
    }
    for n in 0..BATCH_READS {
        let reply = batch
            .get(listen, &format!("/v1/charges/{}", 1000 + n))
            .await
            .unwrap();
        assert_ne!(reply.status, StatusCode::FORBIDDEN);
    }
}

/// Writes `text` as `name` in `dir`; returns its path as text.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `segward policy replay POLICY --log LOG --json [extra]`: exit code and the answer.
fn replay_json(dir: &Path, policy: &str, log: &Path, extra: &[&str]) -> (i32, Value) {
    let log = log.display().to_string();
    let mut args = vec!["policy", "replay", policy, "--log", &log, "--json"];
    args.extend_from_slice(extra);
    let out = segward_in(dir, &args);
    let stdout = out.stdout.clone();
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {}", out.stderr.clone()));
    (out.code, value)
}

#[tokio::test]
async fn replaying_a_real_sidecars_log_under_its_own_policy_flips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = real_log(POLICY, "enforce", dir.path()).await;
    let policy = file(dir.path(), "same.yaml", POLICY);

    let (code, answer) = replay_json(dir.path(), &policy, &log, &["--fail-on-break"]);

    assert_eq!(code, 0, "{answer}");
    let total = (WEB_READS + WEB_ADMIN + BATCH_READS) as u64;
    assert_eq!(answer["replayed"], total, "{answer}");
    assert_eq!(answer["unchanged"], total, "{answer}");
    assert_eq!(answer["breaks"], 0, "{answer}");
    assert_eq!(answer["admits"], 0, "{answer}");
    assert_eq!(answer["flips"].as_array().unwrap().len(), 0, "{answer}");
    // The sidecar's human log lines (start-up, shutdown) are not decisions: counted as
    // skipped and named, never silently dropped.
    let skipped = &answer["input"]["skipped"];
    assert!(skipped["total"].as_u64().unwrap() > 0, "{answer}");
    assert_eq!(answer["input"]["observations"], total, "{answer}");
}

#[tokio::test]
async fn a_revocation_replayed_flips_exactly_the_revoked_identitys_requests() {
    let dir = tempfile::tempdir().unwrap();
    let log = real_log(POLICY, "enforce", dir.path()).await;
    let revoked = file(
        dir.path(),
        "revoked.yaml",
        &format!("{POLICY}revoked: [\"{BATCH}\"]\n"),
    );

    let (code, answer) = replay_json(dir.path(), &revoked, &log, &["--fail-on-break"]);

    assert_eq!(code, 3, "--fail-on-break: {answer}");
    assert_eq!(answer["breaks"], BATCH_READS as u64, "{answer}");
    assert_eq!(answer["admits"], 0, "{answer}");
    let flips = answer["flips"].as_array().unwrap();
    assert_eq!(flips.len(), 1, "{answer}");
    let flip = &flips[0];
    assert_eq!(flip["flip"], "allow-to-deny");
    assert_eq!(flip["direction"], "inbound");
    assert_eq!(flip["source"], "batch");
    assert_eq!(flip["destination"], "api");
    assert_eq!(flip["rule"], "revoked");
    assert_eq!(flip["count"], BATCH_READS as u64);
    assert_eq!(flip["distinct"], BATCH_READS as u64);
    assert_eq!(flip["example"]["source_id"], BATCH);
    assert!(flip["first_seen"].is_string() && flip["last_seen"].is_string());

    // Without the gate the same answer exits 0; the text names the group and an example.
    let log = log.display().to_string();
    let out = segward_in(dir.path(), &["policy", "replay", &revoked, "--log", &log]);
    let text = out.stdout.clone();
    assert_eq!(Some(out.code), Some(0), "{text}");
    assert!(
        text.contains(&format!("allow -> deny: {BATCH_READS}")),
        "{text}"
    );
    assert!(text.contains("batch -> api  decided by revoked"), "{text}");
}

#[tokio::test]
async fn an_audit_mode_log_replayed_under_a_policy_that_allows_it_admits_and_breaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // api runs in audit mode with rules for nobody: every request is a would-deny.
    let empty = "segments:\n  api:\n    identities: [\"spiffe://example.org/ns/prod/sa/api\"]\n";
    let log = real_log(empty, "audit", dir.path()).await;
    let policy = file(dir.path(), "p.yaml", POLICY);

    let (code, answer) = replay_json(dir.path(), &policy, &log, &["--fail-on-break"]);

    assert_eq!(code, 0, "{answer}");
    assert_eq!(answer["breaks"], 0, "{answer}");
    // web's reads and batch's reads are now allowed; the admin attempts stay denied.
    assert_eq!(
        answer["admits"],
        (WEB_READS + BATCH_READS) as u64,
        "{answer}"
    );
    assert_eq!(answer["unchanged"], WEB_ADMIN as u64, "{answer}");
}

#[test]
fn inputs_that_hold_no_decision_or_cannot_be_read_exit_1_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let policy = file(dir.path(), "p.yaml", POLICY);
    let junk = file(dir.path(), "junk.log", "hello\n{\"truncated\":\n");

    let out = segward_in(dir.path(), &["policy", "replay", &policy, "--log", &junk]);
    let stderr = out.stderr.clone();
    assert_eq!(Some(out.code), Some(1), "{stderr}");
    assert!(stderr.contains("junk.log:1: not-json"), "{stderr}");
    assert!(stderr.contains("junk.log:2: truncated"), "{stderr}");

    let out = segward_in(
        dir.path(),
        &["policy", "replay", &policy, "--log", "missing.log"],
    );
    let stderr = out.stderr.clone();
    assert_eq!(Some(out.code), Some(1), "{stderr}");
    assert!(stderr.contains("missing.log"), "{stderr}");

    let out = segward_in(
        dir.path(),
        &["policy", "replay", &policy, "--log", &junk, "--at", "noon"],
    );
    assert_eq!(Some(out.code), Some(2));
    let out = segward_in(dir.path(), &["policy", "replay", &policy]);
    assert_eq!(Some(out.code), Some(2), "an input is required");
}

/// The policy api starts with: its parties' segments and the guard rail, no allow rule.
const GUARD_ONLY: &str = r#"segments:
  web:
    identities: ["spiffe://example.org/ns/prod/sa/web"]
  batch:
    identities: ["spiffe://example.org/ns/prod/sa/batch"]
  api:
    identities: ["spiffe://example.org/ns/prod/sa/api"]
rules:
  - name: no-admin
    effect: deny
    from: ["*"]
    to: [api]
    paths: ["/admin/**"]
"#;

#[tokio::test]
async fn learn_from_a_real_audit_log_then_check_then_replay_breaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // api runs in audit mode with no allow rule: every request is a would-deny.
    let log = real_log(GUARD_ONLY, "audit", dir.path()).await;
    let current = file(dir.path(), "current.yaml", GUARD_ONLY);
    let log_text = log.display().to_string();

    let out = segward_in(
        dir.path(),
        &[
            "policy", "learn", "--log", &log_text, "--policy", &current, "--out", "learned",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("0 allow -> deny"), "{}", out.stdout);
    // The reach it grants, pair by pair, as `policy diff` states it.
    assert!(
        out.stdout
            .contains("+ added    batch -> api: GET /v1/charges/*"),
        "{}",
        out.stdout
    );
    // The audited admin attempts are learned, but the guard rail still refuses them: no test
    // asserts them.
    assert!(
        out.stdout
            .contains("1 sample(s) stay refused by the current policy's deny rules"),
        "{}",
        out.stdout
    );
    let learned = std::fs::read_to_string(dir.path().join("learned/learned.yaml")).unwrap();
    let copied = std::fs::read_to_string(dir.path().join("learned/current.yaml")).unwrap();
    assert_eq!(
        copied, GUARD_ONLY,
        "the folder is the current policy plus learned.yaml"
    );
    // Segments reused, the methods seen, ids generalized.
    assert!(
        learned.contains("- name: learn-batch-to-api\n"),
        "{learned}"
    );
    assert!(learned.contains("    methods: [GET]\n"), "{learned}");
    assert!(learned.contains("\"/v1/charges/*\""), "{learned}");
    assert!(learned.contains("\"/v1/items/*\""), "{learned}");
    assert!(learned.contains("tests:\n"), "{learned}");
    assert!(!learned.contains("path: \"/admin/keys\""), "{learned}");

    let check = segward_in(dir.path(), &["policy", "check", "learned"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let (code, answer) = replay_json(dir.path(), "learned", &log, &["--fail-on-break"]);
    assert_eq!(code, 0, "{answer}");
    assert_eq!(answer["breaks"], 0, "{answer}");
    assert_eq!(
        answer["admits"],
        (WEB_READS + BATCH_READS) as u64,
        "{answer}"
    );
    assert_eq!(answer["unchanged"], WEB_ADMIN as u64, "{answer}");

    // Learning again from the same evidence writes the same file, byte for byte.
    let again = segward_in(
        dir.path(),
        &["policy", "learn", "--log", &log_text, "--policy", &current],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, learned);
}

#[test]
fn learn_refuses_an_out_folder_holding_another_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("live")).unwrap();
    file(&dir.path().join("live"), "policy.yaml", POLICY);
    let log = file(dir.path(), "a.log", "{}\n");

    let out = segward_in(
        dir.path(),
        &["policy", "learn", "--log", &log, "--out", "live"],
    );

    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("policy.yaml"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_dir(dir.path().join("live")).unwrap().count(),
        1
    );
}

#[tokio::test]
async fn unused_finds_the_planted_wide_and_unused_rules_and_its_proposal_breaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = real_log(POLICY, "enforce", dir.path()).await;
    let policy = file(dir.path(), "policy.yaml", POLICY);
    let log_text = log.display().to_string();

    let out = segward_in(
        dir.path(),
        &[
            "policy",
            "unused",
            &policy,
            "--log",
            &log_text,
            "--propose",
            "narrow",
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    let findings: Vec<(String, String, String)> = answer["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap().to_owned();
            (text("kind"), text("subject"), text("message"))
        })
        .collect();
    let kinds: Vec<(&str, &str)> = findings
        .iter()
        .map(|(k, s, _)| (k.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("rule-wider-than-used", "batch-uses-charges"),
            ("rule-unused", "web-writes-orders"),
        ],
        "{answer}"
    );
    assert!(
        findings[0].2.contains("methods never used: POST,DELETE"),
        "{answer}"
    );
    assert_eq!(
        answer["considered"],
        (WEB_READS + BATCH_READS) as u64,
        "{answer}"
    );

    // The proposal: the unused rule gone, batch narrowed to GET; it checks and replays clean.
    let narrowed = std::fs::read_to_string(dir.path().join("narrow/policy.yaml")).unwrap();
    assert!(!narrowed.contains("web-writes-orders"), "{narrowed}");
    assert!(
        narrowed.contains("methods: [GET], paths: [\"/v1/charges/*\"]"),
        "{narrowed}"
    );
    let check = segward_in(dir.path(), &["policy", "check", "narrow"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let (code, replayed) = replay_json(dir.path(), "narrow", &log, &["--fail-on-break"]);
    assert_eq!(
        (code, &replayed["breaks"]),
        (0, &Value::from(0)),
        "{replayed}"
    );
    let changes = answer["proposal"]["changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "{answer}");
}

#[test]
fn unused_keeps_rules_the_policys_tests_assert_and_refuses_to_propose_into_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let tested = format!(
        "{POLICY}tests:\n  - {{ from: \"{WEB}\", to: \"{API}\", method: POST, path: /v1/orders, expect: allow }}\n"
    );
    let policy = file(dir.path(), "policy.yaml", &tested);
    let line = format!(
        "{{\"time\":\"2026-12-07T15:00:00Z\",\"direction\":\"inbound\",\"source_id\":\"{WEB}\",\"destination_id\":\"{API}\",\"method\":\"GET\",\"path\":\"/v1/x\",\"decision\":\"allow\",\"rule\":\"web-reads-api\",\"reason\":\"allow-rule\"}}\n"
    );
    let log = file(dir.path(), "a.log", &line);

    let out = segward_in(
        dir.path(),
        &["policy", "unused", &policy, "--log", &log, "--propose", "p"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("web-writes-orders"), "{}", out.stdout);
    assert!(out.stdout.contains("tests: assert it"), "{}", out.stdout);
    let proposed = std::fs::read_to_string(dir.path().join("p/policy.yaml")).unwrap();
    assert!(proposed.contains("web-writes-orders"), "{proposed}");
    assert!(
        !proposed.contains("batch-uses-charges"),
        "never used, not asserted: {proposed}"
    );

    let here = dir.path().display().to_string();
    let out = segward_in(
        dir.path(),
        &[
            "policy",
            "unused",
            &policy,
            "--log",
            &log,
            "--propose",
            &here,
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
}

/// The aggregation query of docs/least-privilege.md#observations, as the page shows it.
fn observations_query() -> String {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/least-privilege.md"),
    )
    .unwrap();
    let after = page.split("<!-- observations-query -->").nth(1).unwrap();
    let body = after.split("```sql\n").nth(1).unwrap();
    body.split("\n```").next().unwrap().to_owned()
}

/// Whether `python3` (the test venv's first, as scripts/test.sh puts it on PATH) has duckdb.
fn duckdb_here() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn duckdbs_aggregate_of_real_logs_answers_as_the_raw_logs_do() {
    let test = "evidence::duckdbs_aggregate_of_real_logs_answers_as_the_raw_logs_do";
    if !crate::support::component::present_or_skip(test, "duckdb (PyPI)", duckdb_here()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let log = real_log(POLICY, "enforce", &dir.path().join("logs")).await;
    // A second sidecar's rotated file: the same lines again, so counts add up across files.
    std::fs::copy(&log, dir.path().join("logs/api-1.log")).unwrap();
    let query = file(dir.path(), "aggregate.sql", &observations_query());

    let ran = std::process::Command::new("python3")
        .args([
            "-c",
            "import duckdb, sys; duckdb.connect().execute(open(sys.argv[1]).read())",
            &query,
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );

    let revoked = file(
        dir.path(),
        "revoked.yaml",
        &format!("{POLICY}revoked: [\"{BATCH}\"]\n"),
    );
    let logs = ["logs/api.log", "logs/api-1.log"];
    let answer = |input: &[&str]| {
        let mut args = vec!["policy", "replay", revoked.as_str(), "--json"];
        args.extend_from_slice(input);
        let out = segward_in(dir.path(), &args);
        let value: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
        value
    };
    let raw = answer(&[&["--log"][..], &logs].concat());
    let aggregated = answer(&["--observations", "observations.csv"]);

    for field in [
        "replayed",
        "unchanged",
        "breaks",
        "admits",
        "invalid",
        "flips",
    ] {
        assert_eq!(
            raw[field], aggregated[field],
            "{field}:\n{raw}\n{aggregated}"
        );
    }
    assert_eq!(raw["breaks"], 2 * BATCH_READS as u64, "{raw}");
    assert_eq!(
        raw["input"]["distinct"], aggregated["input"]["distinct"],
        "{raw}\n{aggregated}"
    );
    // And learn proposes the same file from either.
    let learn = |input: &[&str]| {
        let mut args = vec!["policy", "learn"];
        args.extend_from_slice(input);
        segward_in(dir.path(), &args).stdout
    };
    assert_eq!(
        learn(&[&["--log"][..], &logs].concat()),
        learn(&["--observations", "observations.csv"])
    );
}

/// One allowed decision line of batch reading a charge, at `time`.
fn batch_line(time: &str, n: usize) -> String {
    format!(
        "{{\"time\":\"{time}\",\"request_id\":\"r{n}\",\"direction\":\"inbound\",\"source_id\":\"{BATCH}\",\"destination_id\":\"{API}\",\"method\":\"GET\",\"path\":\"/v1/charges/{n}\",\"decision\":\"allow\",\"rule\":\"batch-uses-charges\",\"reason\":\"allow-rule\",\"status\":200}}\n"
    )
}

#[test]
fn replay_at_an_instant_counts_the_expiries_due_by_then() {
    let dir = tempfile::tempdir().unwrap();
    let expiring = POLICY.replace(
        "  - name: batch-uses-charges\n",
        "  - name: batch-uses-charges\n    expires: 2030-01-01T00:00:00Z\n",
    );
    assert_ne!(expiring, POLICY);
    let policy = file(dir.path(), "policy.yaml", &expiring);
    let log = dir.path().join("batch.log");
    std::fs::write(
        &log,
        (0..3)
            .map(|n| batch_line("2026-12-07T10:00:00Z", n))
            .collect::<String>(),
    )
    .unwrap();

    let (code, before) = replay_json(dir.path(), &policy, &log, &["--at", "2029-12-31T23:59:59Z"]);
    assert_eq!((code, &before["breaks"]), (0, &Value::from(0)), "{before}");
    let (code, after) = replay_json(
        dir.path(),
        &policy,
        &log,
        &["--at", "2030-01-01T00:00:00Z", "--fail-on-break"],
    );
    assert_eq!(code, 3, "{after}");
    assert_eq!(after["breaks"], 3, "{after}");
    assert_eq!(after["flips"][0]["rule"], "batch-uses-charges", "{after}");
    assert!(
        after["flips"][0]["example"]["now"]
            .as_str()
            .unwrap()
            .contains("rule-expired"),
        "{after}"
    );
}

#[test]
fn a_log_on_stdin_is_read_and_its_skipped_lines_are_named() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let policy = file(dir.path(), "policy.yaml", POLICY);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segward"))
        .args(["policy", "replay", &policy, "--log", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            format!(
                "{}not a decision\n{}",
                batch_line("2026-12-07T10:00:00Z", 1),
                batch_line("2026-12-07T10:00:01Z", 2)
            )
            .as_bytes(),
        )
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert!(out.status.success(), "{answer}");
    assert_eq!(answer["replayed"], 2, "{answer}");
    assert_eq!(
        answer["input"]["skipped"]["first"][0]["file"], "stdin",
        "{answer}"
    );
    assert_eq!(
        answer["input"]["skipped"]["first"][0]["line"], 2,
        "{answer}"
    );
}

#[test]
fn unused_since_leaves_out_evidence_older_than_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let policy = file(dir.path(), "policy.yaml", POLICY);
    let now = time::OffsetDateTime::now_utc();
    let stamp = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // batch used its grant 40 days ago and 2 days ago: once in a 30-day window.
    let old = batch_line(&stamp(now - time::Duration::days(40)), 1);
    let recent = batch_line(&stamp(now - time::Duration::days(2)), 2);
    let log = file(dir.path(), "batch.log", &format!("{old}{recent}"));

    let out = segward_in(
        dir.path(),
        &[
            "policy", "unused", &policy, "--log", &log, "--since", "30d", "--json",
        ],
    );
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        (answer["older"].as_u64(), answer["considered"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );

    let out = segward_in(
        dir.path(),
        &[
            "policy", "unused", &policy, "--log", &log, "--since", "soon",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
}

//! `segward run` end to end (docs/cli.md exit codes, §2 config, §4 "fail closed", §6 decision
//! log and SIGTERM): each process test starts the real binary as a child, judges it only by its
//! exit code, its decision-log JSON lines on stderr and what reached the backend, and kills it
//! by PID when the test ends. The last test drains an in-process `Sidecar` the same way.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::support::backend::Backend;
use crate::support::client::{Alpn, MtlsClient, Reply};
use crate::support::eventually;
use crate::support::pki::{Pki, SvidFiles};
use crate::support::process::{Segward, WAIT};
use crate::support::sidecar::{self, inbound_block, write_config, write_policy};

const TD: &str = "example.org";
const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const API: &str = "spiffe://example.org/ns/prod/sa/api";

/// How long the slow backend takes to answer: long enough to SIGTERM mid-request.
const SLOW: Duration = Duration::from_millis(800);

/// Web may read api's `/v1/**`; nobody may reach api's `/admin/**`.
const POLICY: &str = r#"segments:
  web:
    identities: ["spiffe://example.org/ns/prod/sa/web"]
  api:
    identities: ["spiffe://example.org/ns/prod/sa/api"]
rules:
  - name: web-reads-api
    from: [web]
    to: [api]
    methods: [GET]
    paths: ["/v1/**"]
  - name: no-admin
    effect: deny
    from: ["*"]
    to: [api]
    paths: ["/admin/**"]
"#;

/// A YAML syntax error: the flow mapping opened on line 2 is never closed.
const BROKEN_POLICY: &str = "segments:\n  web: {\n";

// --- §4 fail closed: exit 1 naming the file, nothing listens --------------------------------

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_exits_1_naming_the_key() {
    let pki = Pki::new(&[TD]);
    let (api, web) = (pki.issue(API), pki.issue(WEB));
    let mismatched = SvidFiles {
        key: web.key.clone(),
        ..api
    };
    let listen = Backend::unused_addr();
    let policy = write_policy(&pki, POLICY);
    let listeners = inbound(listen, Backend::unused_addr());
    let config = write_config(&pki, &mismatched, &[TD], &policy, &listeners);

    let (code, stderr) = fails_to_start(&config, listen).await;

    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(s(&web.key)), "{stderr}");
}

#[tokio::test]
async fn an_svid_that_does_not_verify_against_our_own_bundle_exits_1_naming_it() {
    let pki = Pki::new(&[TD]);
    // Signed by another CA of our trust domain than the one our bundle holds.
    let stranger = Pki::new(&[TD]);
    let foreign = stranger.issue(API);
    let listen = Backend::unused_addr();
    let policy = write_policy(&pki, POLICY);
    let listeners = inbound(listen, Backend::unused_addr());
    let config = write_config(&pki, &foreign, &[TD], &policy, &listeners);

    let (code, stderr) = fails_to_start(&config, listen).await;

    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(s(&foreign.cert)), "{stderr}");
    assert!(
        stderr.contains("does not verify against the bundle of our trust domain"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_policy_with_a_yaml_error_exits_1_at_its_file_line_col() {
    let pki = Pki::new(&[TD]);
    let api = pki.issue(API);
    let listen = Backend::unused_addr();
    let policy = write_policy(&pki, BROKEN_POLICY);
    let listeners = inbound(listen, Backend::unused_addr());
    let config = write_config(&pki, &api, &[TD], &policy, &listeners);

    let (code, stderr) = fails_to_start(&config, listen).await;

    assert_eq!(code, 1, "{stderr}");
    // The unclosed `{` on line 2, column 8.
    let at = format!("{}:2:8:", s(&policy.join("policy.yaml")));
    assert!(stderr.contains(&at), "no `{at}` in:\n{stderr}");
}

#[tokio::test]
async fn a_missing_bundle_file_exits_1_naming_it() {
    let pki = Pki::new(&[TD]);
    let api = pki.issue(API);
    let bundle = pki.bundle_path(TD);
    std::fs::remove_file(&bundle).unwrap();
    let listen = Backend::unused_addr();
    let policy = write_policy(&pki, POLICY);
    let listeners = inbound(listen, Backend::unused_addr());
    let config = write_config(&pki, &api, &[TD], &policy, &listeners);

    let (code, stderr) = fails_to_start(&config, listen).await;

    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(s(&bundle)), "{stderr}");
}

#[tokio::test]
async fn a_config_with_an_unknown_key_exits_1_naming_the_config_file() {
    let pki = Pki::new(&[TD]);
    let api = pki.issue(API);
    let listen = Backend::unused_addr();
    let policy = write_policy(&pki, POLICY);
    let listeners = inbound(listen, Backend::unused_addr()) + "colour: blue\n";
    let config = write_config(&pki, &api, &[TD], &policy, &listeners);

    let (code, stderr) = fails_to_start(&config, listen).await;

    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(s(&config)), "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
}

// --- §6 decision log -------------------------------------------------------------------------

#[tokio::test]
async fn every_request_gets_one_decision_line_and_the_query_is_never_logged() {
    let backend = Backend::start().await;
    let (_pki, mut segward, client, listen) = started(&backend, "", None).await;

    let allowed = client.get(listen, "/v1/x?secret=1").await.unwrap();
    let denied = client.get(listen, "/admin/keys").await.unwrap();
    let stderr = segward.stop().await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let lines = decision_lines(&stderr);
    assert_eq!(lines.len(), 2, "one line per request:\n{stderr}");
    let allow = line_for(&lines, "/v1/x");
    let deny = line_for(&lines, "/admin/keys");

    assert_eq!(deny["decision"], "deny", "{deny}");
    assert_eq!(deny["rule"], "no-admin", "{deny}");
    assert_eq!(deny["reason"], "deny-rule", "{deny}");
    assert_eq!(deny["status"], 403, "{deny}");
    assert_eq!(deny["direction"], "inbound", "{deny}");
    assert_eq!(deny["source_id"], WEB, "{deny}");
    assert_eq!(deny["destination_id"], API, "{deny}");
    assert_eq!(deny["method"], "GET", "{deny}");
    let version = deny["policy_version"].as_str().unwrap_or_default();
    assert!(version.starts_with("sha256:"), "{deny}");
    assert_eq!(deny["request_id"], request_id(&denied), "{deny}");
    assert!(deny["time"].is_string(), "{deny}");
    assert!(deny["duration_ms"].is_number(), "{deny}");
    assert!(deny.get("error").is_none(), "{deny}");
    // The peer's address as the sidecar's socket saw it: the client's own port, not ours.
    let peer: SocketAddr = deny["peer_addr"].as_str().unwrap().parse().unwrap();
    assert!(
        peer.ip().is_loopback() && peer.port() != listen.port(),
        "{deny}"
    );

    assert_eq!(allow["decision"], "allow", "{allow}");
    assert_eq!(allow["rule"], "web-reads-api", "{allow}");
    assert_eq!(allow["reason"], "allow-rule", "{allow}");
    assert_eq!(allow["status"], 200, "{allow}");
    assert_eq!(allow["policy_version"], version, "{allow}");
    assert_eq!(allow["request_id"], request_id(&allowed), "{allow}");
    assert_ne!(allow["request_id"], deny["request_id"]);
    assert!(
        !stderr.contains("secret"),
        "the query was logged:\n{stderr}"
    );

    let seen: Vec<_> = backend.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/v1/x?secret=1"], "the denied request was forwarded");
}

/// Decision lines are written in batches (telemetry::sink): a lone line still reaches stderr
/// while the sidecar keeps running, a burst larger than the batch size arrives whole (every
/// line is one JSON object), and SIGTERM writes out the rest.
#[tokio::test]
async fn decision_lines_reach_stderr_while_running_and_whole_in_bursts() {
    let backend = Backend::start().await;
    let (_pki, mut segward, client, listen) = started(&backend, "", None).await;

    let first = client.get(listen, "/v1/first").await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    let wait = Duration::from_secs(3);
    let seen = eventually(wait, || {
        let lines = decision_lines(&segward.stderr());
        async move { lines.len() == 1 }
    })
    .await;
    assert!(
        seen,
        "no decision line within {wait:?}:\n{}",
        segward.stderr()
    );
    assert!(segward.is_running(), "it must still run");

    // ~200 lines of ~400 bytes: several batches' worth.
    for n in 0..200 {
        let reply = client.get(listen, &format!("/v1/burst/{n}")).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    let all = eventually(wait, || {
        let lines = decision_lines(&segward.stderr());
        async move { lines.len() == 201 }
    })
    .await;
    assert!(all, "{}", segward.stderr());
    let stderr = segward.stop().await;
    let lines = decision_lines(&stderr);
    assert_eq!(lines.len(), 201, "{stderr}");
    let mut ids: Vec<_> = lines.iter().map(|l| l["request_id"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 201, "every request's own line");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("stopped"), "last line: {last}");
}

/// With human-readable logging at `error` nothing else is written at exit: the decision line of
/// a request answered just before SIGTERM must still be written out.
#[tokio::test]
async fn pending_decision_lines_are_written_out_at_exit() {
    let backend = Backend::start().await;
    let (_pki, mut segward, client, listen) = started(&backend, "", Some("error")).await;

    let reply = client.get(listen, "/admin/keys").await.unwrap();
    let stderr = segward.stop().await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let lines = decision_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(lines[0]["request_id"], request_id(&reply), "{stderr}");
}

#[tokio::test]
async fn audit_mode_forwards_a_denied_request_and_logs_it_as_would_deny() {
    let backend = Backend::start().await;
    let (_pki, mut segward, client, listen) = started(&backend, "mode: audit\n", None).await;

    let reply = client.get(listen, "/admin/keys").await.unwrap();
    let stderr = segward.stop().await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen: Vec<_> = backend.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/admin/keys"]);
    let lines = decision_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    let line = &lines[0];
    assert_eq!(line["decision"], "would-deny", "{line}");
    assert_eq!(line["rule"], "no-admin", "{line}");
    assert_eq!(line["reason"], "deny-rule", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["path"], "/admin/keys", "{line}");
    assert_eq!(line["request_id"], request_id(&reply), "{line}");
}

// --- §6 SIGTERM: stop accepting, drain in-flight requests, exit -------------------------------

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    serves_then_drains_on_sigterm("", 1).await;
}

/// The same with two event loops (`limits.worker_threads: 2`): two requests in flight on two
/// connections, which the listener puts on different loops; both finish before the exit.
#[tokio::test]
async fn a_sidecar_with_two_event_loops_drains_both_on_sigterm() {
    serves_then_drains_on_sigterm("limits: { worker_threads: 2 }\n", 2).await;
}

/// Starts the real binary with `extra` config, holds `n` requests in flight (each on its own
/// connection), sends SIGTERM: every request completes 200, the process exits 0 and stops
/// listening.
async fn serves_then_drains_on_sigterm(extra: &str, n: usize) {
    let backend = Backend::slow(SLOW).await;
    let (_pki, mut segward, client, listen) = started(&backend, extra, None).await;

    let mut in_flight = Vec::new();
    for i in 0..n {
        let client = client.clone();
        in_flight.push(tokio::spawn(async move {
            client.get(listen, &format!("/v1/slow/{i}")).await
        }));
    }
    let recorded = &backend;
    let arrived = eventually(WAIT, || async move { recorded.requests().len() == n }).await;
    assert!(arrived, "the requests never reached the backend");
    segward.terminate();
    let mut replies = Vec::new();
    for request in in_flight {
        replies.push(timeout(WAIT, request).await.unwrap().unwrap());
    }
    let code = segward.exit_code().await;

    let stderr = segward.stderr();
    for reply in replies {
        let reply = reply.unwrap_or_else(|e| panic!("in-flight request failed: {e}\n{stderr}"));
        assert_eq!(reply.status, StatusCode::OK, "{stderr}");
    }
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(refused(listen).await, Some(ErrorKind::ConnectionRefused));
    let lines = decision_lines(&stderr);
    assert_eq!(lines.len(), n, "{stderr}");
    assert!(lines.iter().all(|line| line["status"] == 200), "{stderr}");
}

#[tokio::test]
async fn an_in_process_sidecar_drains_on_shutdown_then_stops_listening() {
    let pki = Pki::new(&[TD]);
    let (api, web) = (pki.issue(API), pki.issue(WEB));
    let backend = Backend::slow(SLOW).await;
    let policy = write_policy(&pki, POLICY);
    let config = write_config(&pki, &api, &[TD], &policy, &inbound_block(backend.addr()));
    let sidecar = sidecar::start(&config, |_| {}).await;
    let addr = sidecar.inbound_addr().unwrap();
    let client = MtlsClient::new(Some(&web.pem), &pki.bundle_pems(), Alpn::H1);

    let in_flight = tokio::spawn(async move { client.get(addr, "/v1/slow").await });
    let recorded = &backend;
    let arrived = eventually(WAIT, || async move { recorded.requests().len() == 1 }).await;
    assert!(arrived, "the request never reached the backend");
    timeout(WAIT, sidecar.shutdown())
        .await
        .expect("shutdown did not return");
    let reply = timeout(WAIT, in_flight).await.unwrap().unwrap();

    assert_eq!(reply.unwrap().status, StatusCode::OK);
    let closed = eventually(WAIT, || async move { refused(addr).await.is_some() }).await;
    assert!(closed, "still accepting after shutdown");
    assert_eq!(refused(addr).await, Some(ErrorKind::ConnectionRefused));
}

// --- helpers -------------------------------------------------------------------------------

/// Starts `segward run` as api's inbound sidecar in front of `backend`, with `extra` config and
/// `SEGWARD_LOG=log_filter` (default if `None`), once it listens; returns the PKI (keep it:
/// it owns the files), the child, web's mTLS client and the inbound address.
async fn started(
    backend: &Backend,
    extra: &str,
    log_filter: Option<&str>,
) -> (Pki, Segward, MtlsClient, SocketAddr) {
    let pki = Pki::new(&[TD]);
    let (api, web) = (pki.issue(API), pki.issue(WEB));
    let listen = Backend::unused_addr();
    let policy = write_policy(&pki, POLICY);
    let listeners = inbound(listen, backend.addr()) + extra;
    let config = write_config(&pki, &api, &[TD], &policy, &listeners);
    let mut segward = Segward::spawn_logging(&config, log_filter);
    segward.until_listening(listen).await;
    let client = MtlsClient::new(Some(&web.pem), &pki.bundle_pems(), Alpn::H1);
    (pki, segward, client, listen)
}

/// Runs `segward run --config config`, which must exit on its own, while checking that nothing
/// ever accepts on `listen`; returns the exit code and stderr.
async fn fails_to_start(config: &Path, listen: SocketAddr) -> (i32, String) {
    let mut segward = Segward::spawn(config);
    let (code, listened) = segward.exit_code_watching(Some(listen)).await;
    let stderr = segward.stderr();
    assert!(!listened, "something listened on {listen}:\n{stderr}");
    assert_eq!(refused(listen).await, Some(ErrorKind::ConnectionRefused));
    (code, stderr)
}

/// An `inbound:` block listening on `listen` (a child process cannot report port 0's pick),
/// and an `admin:` block on a port of its own, so that parallel children never share the
/// default 127.0.0.1:9901.
fn inbound(listen: SocketAddr, upstream: SocketAddr) -> String {
    let admin = Backend::unused_addr();
    format!("inbound:\n  listen: {listen}\n  upstream: {upstream}\nadmin:\n  listen: {admin}\n")
}

/// Why a TCP connect to `addr` failed; `None` if it succeeded.
async fn refused(addr: SocketAddr) -> Option<ErrorKind> {
    TcpStream::connect(addr).await.err().map(|e| e.kind())
}

/// Every decision-log line of `stderr`: the lines that are JSON objects.
fn decision_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The one decision line for `path`.
fn line_for<'a>(lines: &'a [Value], path: &str) -> &'a Value {
    let found: Vec<_> = lines.iter().filter(|l| l["path"] == path).collect();
    assert_eq!(found.len(), 1, "lines for {path}: {lines:?}");
    found[0]
}

/// The `x-request-id` a reply carried.
fn request_id(reply: &Reply) -> &str {
    reply.headers["x-request-id"].to_str().unwrap()
}

/// A temporary path as text (they are UTF-8 on every test machine).
fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

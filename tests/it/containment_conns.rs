//! A policy change cuts open connections of the contained scope only (docs/runbook.md, issue
//! 15): four callers keep HTTP/1.1 and HTTP/2 connections open to one inbound sidecar and call
//! it in a loop while `revoked:` gains `ns/staging/**`. The staging callers' connections are
//! closed within 1 s and nothing of theirs reaches the backend after the reload; the prod
//! callers see no failed request and keep their connections; the same story runs end to end
//! through the real `segward policy contain` and `release` on the sidecar's folder. On the
//! outbound side, revoking a destination drops its pooled connections, so none is reused after
//! the change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use segward::app::Sidecar;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cli::{Output, json, segward_in};
use crate::support::backend::Backend;
use crate::support::client::{Alpn, ClientError, Conn, MtlsClient, PlainClient};
use crate::support::eventually;
use crate::support::metrics::{count, scrape};
use crate::support::pki::Pki;
use crate::support::sidecar::{inbound_block, outbound_block, start, write_config, write_policy};

const TD: &str = "example.org";
const API: &str = "spiffe://example.org/ns/prod/sa/api";
const LEDGER: &str = "spiffe://example.org/ns/staging/sa/ledger";
const BUILD: &str = "spiffe://example.org/ns/staging/sa/build";
const DEPLOY: &str = "spiffe://example.org/ns/staging/sa/deploy";
const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const BATCH: &str = "spiffe://example.org/ns/prod/sa/batch";

/// "Every sidecar watching the folder applies it within 2 s" (docs/runbook.md).
const RELOAD_WITHIN: Duration = Duration::from_secs(2);
/// "… and its connections are closed within 1 s" (docs/runbook.md).
const CUT_WITHIN: Duration = Duration::from_secs(1);
/// Requests each caller makes before the change, and each prod caller after it.
const CALLS: usize = 5;

const BASE: &str = r#"
segments:
  staging: { identities: ["spiffe://example.org/ns/staging/**"] }
  prod: { identities: ["spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/ns/prod/sa/batch"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
rules:
  - name: callers-reach-api
    from: [staging, prod]
    to: [api]
    paths: ["/v1/**"]
  - name: prod-calls-staging
    from: [prod]
    to: [staging]
"#;

fn contained() -> String {
    format!("{BASE}revoked: [\"spiffe://example.org/ns/staging/**\"]\n")
}

// --- inbound: open connections of revoked callers are cut, the others untouched -----------------

#[tokio::test]
async fn revoking_a_pattern_cuts_the_open_connections_of_its_callers_only() {
    let pki = Pki::new(&[TD]);
    let backend = Backend::start().await;
    let policy = write_policy(&pki, BASE);
    let config = write_config(
        &pki,
        &pki.issue(API),
        &[TD],
        &policy,
        &inbound_block(backend.addr()),
    );
    let api = start(&config, |_| {}).await;
    let addr = api.inbound_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let running = start_callers(&pki, addr, &stop).await;
    let warmed = || async {
        running
            .iter()
            .all(|c| c.ok.load(Ordering::Relaxed) >= CALLS)
    };
    assert!(
        eventually(RELOAD_WITHIN, warmed).await,
        "every caller is served"
    );
    assert_eq!(inbound_connections(&api).await, 4.0);

    let written = Instant::now();
    write_by_rename(&policy.join("policy.yaml"), &contained());
    let reloaded = wait_for_version(&api, &contained()).await;
    assert!(
        reloaded - written <= RELOAD_WITHIN,
        "reload took {:?}",
        reloaded - written
    );

    // The prod callers go on; each makes `CALLS` more requests on its connection.
    let (staging, prod) = running.split_at(2);
    let marks: Vec<_> = prod.iter().map(|c| c.ok.load(Ordering::Relaxed)).collect();
    let went_on = || async {
        let served = prod.iter().zip(&marks);
        served
            .into_iter()
            .all(|(c, mark)| c.ok.load(Ordering::Relaxed) >= mark + CALLS)
    };
    assert!(
        eventually(RELOAD_WITHIN, went_on).await,
        "prod callers go on"
    );
    let cut = || async { staging.iter().all(|c| c.task.is_finished()) };
    assert!(
        eventually(RELOAD_WITHIN, cut).await,
        "staging callers see their close"
    );
    let logs = stop_callers(&stop, running).await;

    let forwarded: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
    for log in &logs[..2] {
        log.assert_cut_after(reloaded, &forwarded);
    }
    for log in &logs[2..] {
        log.assert_untouched();
    }
    // Exactly the two staging connections were cut; the two prod ones are still open.
    let metrics = scrape(api.admin_addr()).await;
    let series = r#"segward_connections_cut_total{direction="inbound",reason="revoked"}"#;
    assert_eq!(count(&metrics, series), 2.0);
    assert_eq!(inbound_connections(&api).await, 2.0);
    drop(logs);
    api.shutdown().await;
}

#[tokio::test]
async fn a_cut_connection_busy_with_a_slow_request_is_still_closed_within_a_second() {
    let pki = Pki::new(&[TD]);
    let backend = Backend::slow(Duration::from_secs(10)).await;
    let policy = write_policy(&pki, BASE);
    let listeners = inbound_block(backend.addr());
    let config = write_config(&pki, &pki.issue(API), &[TD], &policy, &listeners);
    let api = start(&config, |_| {}).await;
    let client = MtlsClient::new(Some(&pki.issue(DEPLOY).pem), &pki.bundle_pems(), Alpn::H2);
    let mut conn = client.connect(api.inbound_addr().unwrap()).await.unwrap();
    let in_flight = tokio::spawn(async move {
        let outcome = conn.get("/v1/slow").await.map(|reply| reply.status);
        (outcome, Instant::now())
    });
    let forwarded = || async { backend.requests().len() == 1 };
    assert!(
        eventually(RELOAD_WITHIN, forwarded).await,
        "request in flight"
    );

    write_by_rename(&policy.join("policy.yaml"), &contained());
    let reloaded = wait_for_version(&api, &contained()).await;

    // GOAWAY first; the stream still open after the grace, the connection is dropped.
    let (outcome, ended) = in_flight.await.unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(
        ended <= reloaded + CUT_WITHIN,
        "closed {:?} after the reload",
        ended - reloaded
    );
    api.shutdown().await;
}

// --- the issue's end to end: `policy contain` and `release` through the real binary ----------

/// The whole story, CLI runs included, ends well within this.
const WHOLE_RUN: Duration = Duration::from_secs(15);

#[tokio::test]
async fn policy_contain_through_the_binary_cuts_only_the_staging_callers_and_release_lets_them_back()
 {
    let began = Instant::now();
    let pki = Pki::new(&[TD]);
    let backend = Backend::start().await;
    // No `tests:`: nothing vetoes the containment, so no `--suspend-tests`.
    let policy = write_policy(&pki, BASE);
    let listeners = inbound_block(backend.addr());
    let config = write_config(&pki, &pki.issue(API), &[TD], &policy, &listeners);
    let api = start(&config, |_| {}).await;
    let (addr, admin) = (api.inbound_addr().unwrap(), api.admin_addr());
    let stop = Arc::new(AtomicBool::new(false));
    let running = start_callers(&pki, addr, &stop).await;
    let served = |callers: &[Caller], marks: &[usize]| {
        callers
            .iter()
            .zip(marks)
            .all(|(c, mark)| c.ok.load(Ordering::Relaxed) >= mark + CALLS)
    };
    let warmed = || async { served(&running, &[0; 4]) };
    assert!(
        eventually(RELOAD_WITHIN, warmed).await,
        "every caller is served"
    );
    assert_eq!(inbound_connections(&api).await, 4.0);
    let original = policy_version(admin).await;
    let folder = policy.display().to_string();

    // Contain the staging pattern.
    let (out, exited) = segward_cli(
        &pki,
        &[
            "policy",
            "contain",
            &folder,
            "--identity",
            "spiffe://example.org/ns/staging/**",
            "--reason",
            "INC-42 leaked CI token",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let report = json(&out.stdout);
    let id = report["containment_id"].as_str().unwrap().to_owned();
    assert!(
        policy.join(format!("contain-{id}.yaml")).is_file(),
        "{report}"
    );
    let changed = || async { policy_version(admin).await != original };
    assert!(
        eventually(RELOAD_WITHIN, changed).await,
        "no new version within {RELOAD_WITHIN:?} of contain"
    );
    let reloaded = Instant::now();

    let (staging, prod) = running.split_at(2);
    let cut = || async { staging.iter().all(|c| c.task.is_finished()) };
    assert!(
        eventually(RELOAD_WITHIN, cut).await,
        "staging callers see their close"
    );
    let gone = || async { inbound_connections(&api).await == 2.0 };
    assert!(eventually(CUT_WITHIN, gone).await, "4 → 2 connections");
    let marks: Vec<_> = prod.iter().map(|c| c.ok.load(Ordering::Relaxed)).collect();
    let went_on = || async { served(prod, &marks) };
    assert!(
        eventually(RELOAD_WITHIN, went_on).await,
        "prod callers go on while contained"
    );
    assert_eq!(inbound_connections(&api).await, 2.0);

    // Release it: the original policy, and the staging identities may connect again.
    let (out, released) = segward_cli(&pki, &["policy", "release", &folder, &id]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!policy.join(format!("contain-{id}.yaml")).exists());
    let restored = || async { policy_version(admin).await == original };
    assert!(
        eventually(RELOAD_WITHIN, restored).await,
        "version not back within {RELOAD_WITHIN:?} of release"
    );
    let restored_at = Instant::now();
    let marks: Vec<_> = prod.iter().map(|c| c.ok.load(Ordering::Relaxed)).collect();
    let went_on = || async { served(prod, &marks) };
    assert!(
        eventually(RELOAD_WITHIN, went_on).await,
        "prod callers go on after release"
    );
    assert_eq!(inbound_connections(&api).await, 2.0, "prod kept theirs");
    for (id, alpn) in [(BUILD, Alpn::H1), (DEPLOY, Alpn::H2)] {
        let client = MtlsClient::new(Some(&pki.issue(id).pem), &pki.bundle_pems(), alpn);
        let mut conn = client.connect(addr).await.unwrap();
        let target = format!("/v1/{}/released", id.rsplit('/').next().unwrap());
        let reply = conn.get(&target).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{id}: a new connection");
        assert!(backend.requests().iter().any(|r| r.target == target));
    }

    let logs = stop_callers(&stop, running).await;
    let forwarded: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
    for log in &logs[..2] {
        log.assert_cut_after(reloaded, &forwarded);
        let closed = log.closed_at.unwrap();
        let seen = match closed.checked_duration_since(reloaded) {
            Some(after) => format!("{after:?} after"),
            None => format!("{:?} before", reloaded - closed),
        };
        eprintln!(
            "{}: closed {:?} after contain exited, {seen} the new version was seen",
            log.id,
            closed.saturating_duration_since(exited),
        );
    }
    // Prod: every request of the whole run (before, during, after contain and release)
    // answered 200, on its one connection, still open.
    for log in &logs[2..] {
        log.assert_untouched();
        let after_release = log.calls.iter().filter(|(sent, ..)| *sent > restored_at);
        assert!(after_release.count() >= CALLS, "{}: after release", log.id);
    }
    let metrics = scrape(admin).await;
    let series = r#"segward_connections_cut_total{direction="inbound",reason="revoked"}"#;
    assert_eq!(count(&metrics, series), 2.0);
    eprintln!(
        "contain exit → new version seen {:?}; release exit → original version seen {:?}; \
         whole run {:?}",
        reloaded - exited,
        restored_at - released,
        began.elapsed()
    );
    assert!(began.elapsed() < WHOLE_RUN, "took {:?}", began.elapsed());
    drop(logs);
    api.shutdown().await;
}

/// One caller's loop over its one connection: `GET /v1/<name>/<n>` until stopped or the
/// connection is closed.
struct Caller {
    ok: Arc<AtomicUsize>,
    task: JoinHandle<CallLog>,
}

/// What one caller saw.
struct CallLog {
    id: &'static str,
    /// `(sent at, target, outcome)` of every request, in order.
    calls: Vec<(Instant, String, Result<StatusCode, ClientError>)>,
    /// When the caller saw its connection closed (a failed request or `is_closed`).
    closed_at: Option<Instant>,
    conn: Conn,
}

impl Caller {
    fn start(id: &'static str, conn: Conn, stop: Arc<AtomicBool>) -> Caller {
        let ok = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(call_in_a_loop(id, conn, ok.clone(), stop));
        Caller { ok, task }
    }
}

async fn call_in_a_loop(
    id: &'static str,
    mut conn: Conn,
    ok: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> CallLog {
    let name = id.rsplit('/').next().unwrap();
    let (mut calls, mut closed_at) = (Vec::new(), None);
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if conn.is_closed() {
            closed_at = Some(Instant::now());
            break;
        }
        let (sent, target) = (Instant::now(), format!("/v1/{name}/{n}"));
        let outcome = conn.get(&target).await.map(|reply| reply.status);
        match &outcome {
            Ok(StatusCode::OK) => _ = ok.fetch_add(1, Ordering::Relaxed),
            Ok(_) => {}
            Err(_) => closed_at = Some(Instant::now()),
        }
        calls.push((sent, target, outcome));
        if closed_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    CallLog {
        id,
        calls,
        closed_at,
        conn,
    }
}

impl CallLog {
    /// A contained caller: its connection closed within 1 s of the reload, no request it sent
    /// after the reload was answered 200 (a 403 or the close is its answer), and the backend
    /// received none of them.
    fn assert_cut_after(&self, reloaded: Instant, forwarded: &[String]) {
        let id = self.id;
        let closed_at = self
            .closed_at
            .unwrap_or_else(|| panic!("{id}: never closed"));
        assert!(closed_at <= reloaded + CUT_WITHIN, "{id}: closed too late");
        assert!(self.conn.is_closed(), "{id}: connection still open");
        let after: Vec<_> = self
            .calls
            .iter()
            .filter(|(sent, ..)| *sent > reloaded)
            .collect();
        for (_, target, outcome) in &after {
            let refused = matches!(outcome, Ok(StatusCode::FORBIDDEN) | Err(_));
            assert!(refused, "{id}: {target} after the reload got {outcome:?}");
            assert!(
                !forwarded.contains(target),
                "{id}: {target} reached the backend"
            );
        }
        let before = self.calls.iter().filter(|(sent, ..)| *sent <= reloaded);
        assert!(before.count() >= CALLS, "{id}: served before the reload");
    }

    /// An uncontained caller: every request answered 200 on the same, still open connection.
    fn assert_untouched(&self) {
        let id = self.id;
        assert_eq!(self.closed_at, None, "{id}: connection closed");
        assert!(!self.conn.is_closed(), "{id}: connection closed");
        for (_, target, outcome) in &self.calls {
            assert_eq!(outcome, &Ok(StatusCode::OK), "{id}: {target}");
        }
        assert!(
            self.calls.len() >= 2 * CALLS,
            "{id}: served before and after"
        );
    }
}

// --- outbound: a revoked destination's pool is dropped -----------------------------------------

#[tokio::test]
async fn revoking_a_destination_closes_its_pooled_connections_so_none_is_reused() {
    let pki = Pki::new(&[TD]);
    let backend = Backend::start().await;
    let ledger_policy = write_policy(&pki, BASE);
    let listeners = inbound_block(backend.addr());
    let config = write_config(&pki, &pki.issue(LEDGER), &[TD], &ledger_policy, &listeners);
    let ledger = start(&config, |_| {}).await;
    let web_policy = write_policy(&pki, BASE);
    let listeners = outbound_block(&[("ledger", ledger.inbound_addr().unwrap(), LEDGER)]);
    let config = write_config(&pki, &pki.issue(WEB), &[TD], &web_policy, &listeners);
    let web = start(&config, |_| {}).await;
    let mut app = PlainClient::connect(web.outbound_addr().unwrap())
        .await
        .unwrap();

    // Three requests, one pooled connection to ledger.
    for _ in 0..3 {
        assert_eq!(
            app.get("http://ledger/v1/x").await.unwrap().status,
            StatusCode::OK
        );
    }
    assert_eq!(inbound_connections(&ledger).await, 1.0);

    write_by_rename(&web_policy.join("policy.yaml"), &contained());
    wait_for_version(&web, &contained()).await;
    // The pooled connection is closed, as ledger sees it.
    let closed = || async { inbound_connections(&ledger).await == 0.0 };
    assert!(
        eventually(CUT_WITHIN, closed).await,
        "pooled connection closed"
    );
    let evicted = r#"segward_upstream_pools_evicted_total{reason="revoked"}"#;
    assert_eq!(count(&scrape(web.admin_addr()).await, evicted), 1.0);

    // `revoked` refuses a revoked *source* (docs/policy-language.md step 1), so web may still call
    // ledger: the next request is served, over a new connection (the old one is gone).
    assert_eq!(
        app.get("http://ledger/v1/y").await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(inbound_connections(&ledger).await, 1.0);
    assert_eq!(backend.requests().len(), 4);
    drop(app);
    web.shutdown().await;
    ledger.shutdown().await;
}

// --- helpers -----------------------------------------------------------------------------------

/// `segward_connections_active{direction="inbound"}` of `sidecar`.
async fn inbound_connections(sidecar: &Sidecar) -> f64 {
    let metrics = scrape(sidecar.admin_addr()).await;
    count(
        &metrics,
        r#"segward_connections_active{direction="inbound"}"#,
    )
}

/// Polls `sidecar`'s `/policy` until it reports the version of `text`; returns when it did.
async fn wait_for_version(sidecar: &Sidecar, text: &str) -> Instant {
    let policy = segward::policy::from_text("policy.yaml", text).unwrap();
    let (version, admin) = (policy.version().to_owned(), sidecar.admin_addr());
    let seen = || async { policy_version(admin).await == version };
    assert!(
        eventually(RELOAD_WITHIN, seen).await,
        "no reload to {version}"
    );
    Instant::now()
}

/// Runs the real `segward args` (with the CLI tests' deadline) off the runtime, so the sidecar
/// and the callers go on meanwhile; returns its output and when it exited.
async fn segward_cli(pki: &Pki, args: &[&str]) -> (Output, Instant) {
    let dir = pki.dir().to_owned();
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = segward_in(&dir, &args);
        (out, Instant::from_std(std::time::Instant::now()))
    })
    .await
    .unwrap()
}

async fn policy_version(admin: SocketAddr) -> String {
    let reply = PlainClient::get(admin, "/policy").await.unwrap();
    let policy: Value = serde_json::from_slice(&reply.body).unwrap();
    policy["version"].as_str().unwrap_or_default().to_owned()
}

/// How editors save: a temporary file next to it, renamed over the original.
fn write_by_rename(file: &Path, text: &str) {
    let temp: PathBuf = file.with_extension("yaml.swp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, file).unwrap();
}

/// The four callers — staging build (h1) and deploy (h2), prod web (h1) and batch (h2) —
/// each on one connection of its own, calling in a loop until `stop`.
async fn start_callers(pki: &Pki, addr: SocketAddr, stop: &Arc<AtomicBool>) -> Vec<Caller> {
    let callers = [
        (BUILD, Alpn::H1),
        (DEPLOY, Alpn::H2),
        (WEB, Alpn::H1),
        (BATCH, Alpn::H2),
    ];
    let mut running = Vec::new();
    for (id, alpn) in callers {
        let client = MtlsClient::new(Some(&pki.issue(id).pem), &pki.bundle_pems(), alpn);
        let conn = client.connect(addr).await.unwrap();
        running.push(Caller::start(id, conn, stop.clone()));
    }
    running
}

/// Stops the callers and returns what each saw, in start order.
async fn stop_callers(stop: &AtomicBool, running: Vec<Caller>) -> Vec<CallLog> {
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for caller in running {
        logs.push(caller.task.await.unwrap());
    }
    logs
}

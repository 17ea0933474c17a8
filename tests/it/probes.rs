//! Probe detection and automatic containment at the sidecar (docs/probes.md, issue 29),
//! through real sidecars on loopback: a leaked identity enumerating paths on the inbound
//! side is contained at its N-th distinct denied target (not before), its open HTTP/1.1 and
//! HTTP/2 connections are cut while two other identities calling in a loop on keep-alive
//! connections see no failure and no close; `POST /probes/release` lets it back; a short
//! `contain_for` lifts by itself; a compromised app fanning out to denied destinations is
//! contained on its outbound side, its open TCP tunnel closed; a peer contained after probing
//! over HTTP loses its open inbound TCP connection while another keeps its own; one denied
//! request repeated
//! 1,000 times is no probe; a tripwire contains on the first hit; `action: alert` changes
//! nothing on the data plane; `policy check` lists tripwires and refuses one on an allow rule.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use segward::app::Sidecar;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::cli::{json, policy_dir, segward};
use crate::support::backend::Backend;
use crate::support::client::{Alpn, Conn, MtlsClient, PlainClient, request};
use crate::support::component::present_or_skip;
use crate::support::eventually;
use crate::support::metrics::{count, scrape};
use crate::support::pki::Pki;
use crate::support::sidecar::{
    ANY_PORT, inbound_block, start, tcp_inbound_block, write_config, write_policy,
};
use crate::support::tcp::{Echo, closed_within, round_trip};

const TD: &str = "example.org";
const API: &str = "spiffe://example.org/ns/prod/sa/api";
const LEAKED: &str = "spiffe://example.org/ns/prod/sa/leaked";
const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const BATCH: &str = "spiffe://example.org/ns/prod/sa/batch";
const DB: &str = "spiffe://example.org/ns/prod/sa/ledger-db";

/// A generous bound on waiting for a side effect (never a latency assertion).
const WAIT: Duration = Duration::from_secs(10);

const POLICY: &str = r#"
segments:
  callers: { identities: ["spiffe://example.org/ns/prod/sa/leaked", "spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/ns/prod/sa/batch"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
  db: { identities: ["spiffe://example.org/ns/prod/sa/ledger-db"] }
rules:
  - { name: callers-reach-api, from: [callers], to: [api], paths: ["/v1/**"] }
  - { name: api-uses-db, from: [api], to: [db] }
  - name: decoy-admin
    effect: deny
    tripwire: true
    from: ["*"]
    to: [api]
    paths: ["/.git/**"]
"#;

/// `detect:` with `distinct_denied: 5`, `window: 60s` and `action`/`contain_for` as given.
fn detect(action: &str, contain_for: &str) -> String {
    format!(
        "detect:\n  probe: {{ distinct_denied: 5, window: 60s, action: {action}, contain_for: {contain_for} }}\n"
    )
}

/// The api sidecar (inbound HTTP in front of a recording backend) with `detect`.
async fn api(pki: &Pki, backend: &Backend, detect: &str) -> Sidecar {
    let policy = write_policy(pki, POLICY);
    let listeners = format!("{}{detect}", inbound_block(backend.addr()));
    let config = write_config(pki, &pki.issue(API), &[TD], &policy, &listeners);
    start(&config, |_| {}).await
}

async fn connect(pki: &Pki, id: &str, alpn: Alpn, addr: SocketAddr) -> Conn {
    let client = MtlsClient::new(Some(&pki.issue(id).pem), &pki.bundle_pems(), alpn);
    client.connect(addr).await.unwrap()
}

async fn status(conn: &mut Conn, target: &str) -> StatusCode {
    conn.get(target).await.unwrap().status
}

async fn admin_json(admin: SocketAddr, path: &str) -> Value {
    let reply = PlainClient::get(admin, path).await.unwrap();
    serde_json::from_slice(&reply.body).unwrap()
}

async fn release(admin: SocketAddr, body: &str) -> (StatusCode, Value) {
    let mut conn = PlainClient::connect(admin).await.unwrap();
    let req = request("POST", "/probes/release")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let reply = conn.send(req).await.unwrap();
    (
        reply.status,
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

async fn probes_detected(admin: SocketAddr, direction: &str, action: &str) -> f64 {
    let series =
        format!(r#"segward_probes_detected_total{{direction="{direction}",action="{action}"}}"#);
    count(&scrape(admin).await, &series)
}

/// A caller on one keep-alive connection, `GET /v1/<name>/<n>` in a loop until stopped:
/// counts the 200s, and records any other answer, failure or close.
struct Load {
    ok: Arc<AtomicUsize>,
    task: JoinHandle<(Vec<String>, Conn)>,
}

impl Load {
    fn start(name: &'static str, mut conn: Conn, stop: Arc<AtomicBool>) -> Load {
        let ok = Arc::new(AtomicUsize::new(0));
        let served = ok.clone();
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_closed() {
                    failures.push(format!("{name}: connection closed"));
                    break;
                }
                n += 1;
                match conn.get(&format!("/v1/{name}/{n}")).await {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.push(format!("{name} #{n}: {other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (failures, conn)
        });
        Load { ok, task }
    }

    /// Waits until `more` further requests were served.
    async fn served_more(&self, more: usize) -> bool {
        let mark = self.ok.load(Ordering::Relaxed);
        eventually(WAIT, || async {
            self.ok.load(Ordering::Relaxed) >= mark + more
        })
        .await
    }
}

#[tokio::test]
async fn inbound_enumeration_is_contained_at_the_nth_target_and_cut_while_others_carry_on() {
    let pki = Pki::new(&[TD]);
    let backend = Backend::start().await;
    let api = api(&pki, &backend, &detect("contain", "15m")).await;
    let (addr, admin) = (api.inbound_addr().unwrap(), api.admin_addr());

    // Two other identities under load on keep-alive connections, throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let web = Load::start(
        "web",
        connect(&pki, WEB, Alpn::H1, addr).await,
        stop.clone(),
    );
    let batch = Load::start(
        "batch",
        connect(&pki, BATCH, Alpn::H2, addr).await,
        stop.clone(),
    );
    assert!(web.served_more(5).await && batch.served_more(5).await);

    // The leaked identity holds an HTTP/1.1 and an HTTP/2 connection; it is served on both.
    let mut h1 = connect(&pki, LEAKED, Alpn::H1, addr).await;
    let mut h2 = connect(&pki, LEAKED, Alpn::H2, addr).await;
    assert_eq!(status(&mut h1, "/v1/leaked/ok").await, StatusCode::OK);
    assert_eq!(status(&mut h2, "/v1/leaked/ok").await, StatusCode::OK);

    // Four distinct denied paths (one repeated, with a query: it counts once): not a probe.
    for target in [
        "/admin",
        "/admin?x=1",
        "/internal/users",
        "/metrics",
        "/debug/pprof",
    ] {
        assert_eq!(
            status(&mut h1, target).await,
            StatusCode::FORBIDDEN,
            "{target}"
        );
    }
    assert_eq!(
        status(&mut h2, "/v1/leaked/still").await,
        StatusCode::OK,
        "not before"
    );
    assert_eq!(probes_detected(admin, "inbound", "contain").await, 0.0);
    let suspects = admin_json(admin, "/probes").await;
    assert_eq!(suspects["suspects"][0]["identity"], LEAKED, "{suspects}");
    assert_eq!(
        suspects["suspects"][0]["targets"].as_array().unwrap().len(),
        4
    );

    // The fifth distinct denied target: contained at that instant.
    assert_eq!(status(&mut h2, "/backup.tar").await, StatusCode::FORBIDDEN);
    assert_eq!(probes_detected(admin, "inbound", "contain").await, 1.0);
    // Its open connections are cut (HTTP/2 GOAWAY then close, HTTP/1.1 closed).
    let cut = || async { h1.is_closed() && h2.is_closed() };
    assert!(
        eventually(WAIT, cut).await,
        "the leaked connections are cut"
    );
    // A new connection is refused with 403, reason probe-contained, nothing forwarded.
    let mut again = connect(&pki, LEAKED, Alpn::H2, addr).await;
    assert_eq!(
        status(&mut again, "/v1/leaked/after").await,
        StatusCode::FORBIDDEN
    );
    let metrics = scrape(admin).await;
    let refused = r#"segward_requests_total{direction="inbound",decision="deny",rule="probe-contained",protocol="http"}"#;
    assert!(count(&metrics, refused) >= 1.0);
    let cuts = r#"segward_connections_cut_total{direction="inbound",reason="probe-contained"}"#;
    assert!(count(&metrics, cuts) >= 2.0, "{metrics:#?}");
    // Refused requests of a contained identity are no new detection.
    for n in 0..10 {
        let _ = again.get(&format!("/more/{n}")).await;
    }
    assert_eq!(probes_detected(admin, "inbound", "contain").await, 1.0);

    // Listed in /probes (with the fleet-wide command) and /policy.
    let probes = admin_json(admin, "/probes").await;
    let contained = &probes["contained"][0];
    assert_eq!(contained["identity"], LEAKED, "{probes}");
    assert_eq!(contained["targets"].as_array().unwrap().len(), 5);
    let command = contained["fleet_command"].as_str().unwrap();
    assert!(
        command.starts_with("segward policy contain ")
            && command.contains(&format!("--identity {LEAKED}"))
            && command.contains("--reason "),
        "{command}"
    );
    let policy = admin_json(admin, "/policy").await;
    assert_eq!(policy["probe_contained"][0]["identity"], LEAKED, "{policy}");

    // The others carried on, untouched, all along.
    assert!(web.served_more(5).await && batch.served_more(5).await);

    // Released early by the endpoint: a new connection is served again.
    assert_eq!(
        release(admin, r#"{"identity": "spiffe://x/none"}"#).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(release(admin, "not json").await.0, StatusCode::BAD_REQUEST);
    let (code, body) = release(admin, &format!(r#"{{"identity": "{LEAKED}"}}"#)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let mut back = connect(&pki, LEAKED, Alpn::H1, addr).await;
    assert_eq!(status(&mut back, "/v1/leaked/back").await, StatusCode::OK);
    assert_eq!(
        admin_json(admin, "/probes").await["contained"],
        Value::Array(vec![])
    );

    stop.store(true, Ordering::Relaxed);
    for load in [web, batch] {
        let (failures, conn) = load.task.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        assert!(
            !conn.is_closed(),
            "the other identities keep their connections"
        );
    }
    // Nothing the leaked identity was denied reached the backend.
    let forwarded: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
    for denied in ["/admin", "/backup.tar", "/v1/leaked/after", "/more/0"] {
        assert!(
            !forwarded.iter().any(|t| t.starts_with(denied)),
            "{denied} forwarded"
        );
    }
    api.shutdown().await;
}

#[tokio::test]
async fn a_containment_lifts_by_itself_after_contain_for() {
    let pki = Pki::new(&[TD]);
    let backend = Backend::start().await;
    let api = api(&pki, &backend, &detect("contain", "1s")).await;
    let addr = api.inbound_addr().unwrap();
    let mut conn = connect(&pki, LEAKED, Alpn::H2, addr).await;
    for n in 0..5 {
        assert_eq!(
            status(&mut conn, &format!("/x/{n}")).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        probes_detected(api.admin_addr(), "inbound", "contain").await,
        1.0
    );
    let lifted = || async {
        let Ok(mut conn) =
            MtlsClient::new(Some(&pki.issue(LEAKED).pem), &pki.bundle_pems(), Alpn::H1)
                .connect(addr)
                .await
        else {
            return false;
        };
        matches!(conn.get("/v1/leaked/lifted").await, Ok(r) if r.status == StatusCode::OK)
    };
    assert!(eventually(WAIT, lifted).await, "lifted after contain_for");
    api.shutdown().await;
}

#[tokio::test]
async fn one_denied_request_repeated_a_thousand_times_is_no_probe() {
    let pki = Pki::new(&[TD]);
    let backend = Backend::start().await;
    let api = api(&pki, &backend, &detect("contain", "15m")).await;
    let mut conn = connect(&pki, LEAKED, Alpn::H2, api.inbound_addr().unwrap()).await;
    for _ in 0..1000 {
        assert_eq!(status(&mut conn, "/admin").await, StatusCode::FORBIDDEN);
    }
    assert_eq!(status(&mut conn, "/v1/leaked/fine").await, StatusCode::OK);
    assert!(!conn.is_closed());
    assert_eq!(
        probes_detected(api.admin_addr(), "inbound", "contain").await,
        0.0
    );
    api.shutdown().await;
}

#[tokio::test]
async fn a_tripwire_contains_on_the_first_hit() {
    let pki = Pki::new(&[TD]);
    let backend = Backend::start().await;
    let api = api(&pki, &backend, &detect("contain", "15m")).await;
    let addr = api.inbound_addr().unwrap();
    let mut conn = connect(&pki, LEAKED, Alpn::H1, addr).await;
    assert_eq!(status(&mut conn, "/v1/leaked/ok").await, StatusCode::OK);
    assert_eq!(
        status(&mut conn, "/.git/config").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        probes_detected(api.admin_addr(), "inbound", "contain").await,
        1.0
    );
    let probes = admin_json(api.admin_addr(), "/probes").await;
    assert_eq!(probes["contained"][0]["trigger"], "tripwire", "{probes}");
    assert_eq!(probes["contained"][0]["rule"], "decoy-admin");
    assert!(eventually(WAIT, || async { conn.is_closed() }).await);
    let mut again = connect(&pki, LEAKED, Alpn::H1, addr).await;
    assert_eq!(
        status(&mut again, "/v1/leaked/ok").await,
        StatusCode::FORBIDDEN
    );
    // Another identity is not touched.
    let mut web = connect(&pki, WEB, Alpn::H1, addr).await;
    assert_eq!(status(&mut web, "/v1/web/ok").await, StatusCode::OK);
    api.shutdown().await;
}

#[tokio::test]
async fn action_alert_counts_and_lists_the_probe_and_changes_nothing_on_the_data_plane() {
    let pki = Pki::new(&[TD]);
    let backend = Backend::start().await;
    let api = api(&pki, &backend, &detect("alert", "15m")).await;
    let (addr, admin) = (api.inbound_addr().unwrap(), api.admin_addr());
    let mut conn = connect(&pki, LEAKED, Alpn::H2, addr).await;
    for n in 0..5 {
        assert_eq!(
            status(&mut conn, &format!("/x/{n}")).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(status(&mut conn, "/.git/HEAD").await, StatusCode::FORBIDDEN);
    assert_eq!(probes_detected(admin, "inbound", "alert").await, 2.0);
    assert_eq!(probes_detected(admin, "inbound", "contain").await, 0.0);
    // Same connection, still open, still served; nobody contained.
    assert_eq!(status(&mut conn, "/v1/leaked/ok").await, StatusCode::OK);
    assert!(!conn.is_closed());
    assert_eq!(
        admin_json(admin, "/probes").await["contained"],
        Value::Array(vec![])
    );
    api.shutdown().await;
}

#[tokio::test]
async fn an_outbound_fan_out_contains_the_app_and_closes_its_open_tcp_tunnel() {
    let pki = Pki::new(&[TD]);
    // The database sidecar: inbound TCP in front of an echo workload.
    let echo = Echo::start().await;
    let db_policy = write_policy(&pki, POLICY);
    let db_cfg = write_config(
        &pki,
        &pki.issue(DB),
        &[TD],
        &db_policy,
        &tcp_inbound_block(ANY_PORT, echo.addr()),
    );
    let db = start(&db_cfg, |_| {}).await;
    // The api app's sidecar: ledger-db over TCP (allowed), and five HTTP destinations it
    // never may call (denied before anything is sent, so their addresses need no server).
    let nowhere = Backend::unused_addr();
    let mut outbound = format!(
        "outbound:\n  listen: 127.0.0.1:0\n  destinations:\n    ledger-db:\n      address: {}\n      \
         spiffe_id: {DB}\n      protocol: tcp\n      local: 127.0.0.1:0\n",
        db.inbound_addr().unwrap()
    );
    for n in 0..5 {
        outbound.push_str(&format!(
            "    svc{n}:\n      address: {nowhere}\n      spiffe_id: spiffe://example.org/ns/prod/sa/svc{n}\n"
        ));
    }
    outbound.push_str(&detect("contain", "15m"));
    let app_policy = write_policy(&pki, POLICY);
    let app_cfg = write_config(&pki, &pki.issue(API), &[TD], &app_policy, &outbound);
    let app = start(&app_cfg, |_| {}).await;
    let admin = app.admin_addr();

    let mut tunnel = TcpStream::connect(app.tcp_local_addr("ledger-db").unwrap())
        .await
        .unwrap();
    round_trip(&mut tunnel, b"SELECT 1;").await;

    let mut local = PlainClient::connect(app.outbound_addr().unwrap())
        .await
        .unwrap();
    for n in 0..4 {
        let reply = local.get(&format!("http://svc{n}/v1/x")).await.unwrap();
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    round_trip(&mut tunnel, b"SELECT 2;").await;
    assert_eq!(probes_detected(admin, "outbound", "contain").await, 0.0);
    let reply = local.get("http://svc4/v1/x").await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(probes_detected(admin, "outbound", "contain").await, 1.0);
    // The app's own identity is contained here: its open tunnel is closed, a new one refused.
    assert!(
        closed_within(&mut tunnel, WAIT).await.is_some(),
        "tunnel closed"
    );
    let mut refused = TcpStream::connect(app.tcp_local_addr("ledger-db").unwrap())
        .await
        .unwrap();
    assert!(closed_within(&mut refused, WAIT).await.is_some());
    assert_eq!(echo.accepted(), 1, "no new connection reached the database");
    let probes = admin_json(admin, "/probes").await;
    assert_eq!(probes["contained"][0]["identity"], API, "{probes}");
    assert_eq!(probes["contained"][0]["direction"], "outbound");
    app.shutdown().await;
    db.shutdown().await;
}

#[test]
fn policy_check_lists_tripwires_and_refuses_one_on_an_allow_rule() {
    let dir = policy_dir(&[("policy.yaml", POLICY)]);
    let folder = dir.path().display().to_string();
    let out = segward(&["policy", "check", &folder]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("tripwires (1):"), "{}", out.stdout);
    assert!(out.stdout.contains("decoy-admin"), "{}", out.stdout);
    let out = segward(&["policy", "check", &folder, "--json"]);
    assert_eq!(json(&out.stdout)["tripwires"][0]["rule"], "decoy-admin");

    let allow = POLICY.replace("effect: deny\n    tripwire: true", "tripwire: true");
    let dir = policy_dir(&[("policy.yaml", &allow)]);
    let out = segward(&["policy", "check", &dir.path().display().to_string()]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("`tripwire` applies to deny rules only"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_prometheus_probe_alerts_pass_promtool_check_and_their_unit_test() {
    let here = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present_or_skip(
        "probes::prometheus rules",
        "promtool (Debian prometheus)",
        here,
    ) {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        ["check", "rules", "probes.rules.yaml"],
        ["test", "rules", "probes.rules.test.yaml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn a_contained_peer_loses_its_open_inbound_tcp_connection_and_another_keeps_its_own() {
    // One sidecar, an HTTP and a TCP listener; the callers may reach it whole (no paths, so
    // TCP too). The leaked identity probes with spellings a lenient upstream would route
    // above the root: each is denied `ambiguous-path`, five distinct ones are a probe.
    let pki = Pki::new(&[TD]);
    let (backend, echo) = (Backend::start().await, Echo::start().await);
    // No deny rule naming paths here: such a rule would refuse every TCP connection it
    // covers (docs/l4.md, fail closed).
    let text = r#"
segments:
  callers: { identities: ["spiffe://example.org/ns/prod/sa/leaked", "spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
rules:
  - { name: callers-reach-api, from: [callers], to: [api] }
"#;
    let policy = write_policy(&pki, text);
    let listeners = format!(
        "inbound:\n  - {{ listen: 127.0.0.1:0, upstream: {} }}\n  - {{ listen: 127.0.0.1:0, upstream: {}, protocol: tcp }}\n{}",
        backend.addr(),
        echo.addr(),
        detect("contain", "15m")
    );
    let config = write_config(&pki, &pki.issue(API), &[TD], &policy, &listeners);
    let api = start(&config, |_| {}).await;
    let (http, tcp) = (api.inbound_addrs()[0], api.inbound_addrs()[1]);
    let stream = |id: &str| {
        let client = MtlsClient::new(Some(&pki.issue(id).pem), &pki.bundle_pems(), Alpn::None);
        async move { client.stream(tcp).await.unwrap() }
    };
    let mut leaked_tcp = stream(LEAKED).await;
    let mut web_tcp = stream(WEB).await;
    round_trip(&mut leaked_tcp, b"hello").await;
    round_trip(&mut web_tcp, b"hello").await;

    let mut conn = connect(&pki, LEAKED, Alpn::H1, http).await;
    for n in 0..5 {
        let target = format!("/..;/probe{n}");
        assert_eq!(
            status(&mut conn, &target).await,
            StatusCode::FORBIDDEN,
            "{target}"
        );
    }
    assert_eq!(
        probes_detected(api.admin_addr(), "inbound", "contain").await,
        1.0
    );
    assert!(
        closed_within(&mut leaked_tcp, WAIT).await.is_some(),
        "leaked tcp cut"
    );
    round_trip(&mut web_tcp, b"still here").await;
    assert_eq!(echo.accepted(), 2);
    let mut again = stream(LEAKED).await;
    assert!(
        closed_within(&mut again, WAIT).await.is_some(),
        "a new one refused"
    );
    assert_eq!(echo.accepted(), 2, "nothing new reached the workload");
    // An open tunnel would hold the drain for `limits.drain_timeout`.
    drop((web_tcp, conn));
    api.shutdown().await;
}

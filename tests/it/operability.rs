//! Operability end to end (docs/security.md "bounded resources", §6; ISSUE 6): the admin
//! endpoints, the Prometheus metrics after a scripted set of requests, and the limits that
//! keep slow or hostile clients from starving the sidecar — each on real sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use segward::app::Sidecar;
use serde_json::Value;

use crate::support::backend::Backend;
use crate::support::client::{Alpn, MtlsClient, PlainClient, Reply, request};
use crate::support::eventually;
use crate::support::metrics::{count, scrape};
use crate::support::pki::Pki;
use crate::support::sidecar::{inbound_block, start, write_config, write_policy};

const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const API: &str = "spiffe://example.org/ns/prod/sa/api";
const INTRUDER: &str = "spiffe://example.org/ns/prod/sa/intruder";

const POLICY: &str = r#"
segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
rules:
  - name: web-calls-api
    from: [web]
    to: [api]
    paths: ["/v1/**"]
  - name: no-admin
    effect: deny
    from: ["*"]
    to: [api]
    paths: ["/admin/**"]
"#;

/// api's inbound sidecar with `extra` YAML (e.g. a `limits:` block) in its config.
struct Api {
    pki: Pki,
    backend: Backend,
    policy_dir: std::path::PathBuf,
    sidecar: Sidecar,
}

impl Api {
    async fn start(backend: Backend, extra: &str) -> Api {
        let pki = Pki::new(&["example.org", "other.org"]);
        let policy_dir = write_policy(&pki, POLICY);
        let listeners = format!("{}{extra}", inbound_block(backend.addr()));
        let config = write_config(
            &pki,
            &pki.issue(API),
            &["example.org"],
            &policy_dir,
            &listeners,
        );
        let sidecar = start(&config, |_| {}).await;
        Api {
            pki,
            backend,
            policy_dir,
            sidecar,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sidecar.inbound_addr().unwrap()
    }

    fn client(&self, id: &str) -> MtlsClient {
        MtlsClient::new(
            Some(&self.pki.issue(id).pem),
            &self.pki.bundle_pems(),
            Alpn::H1,
        )
    }

    async fn admin(&self, path: &str) -> Reply {
        PlainClient::get(self.sidecar.admin_addr(), path)
            .await
            .unwrap()
    }

    /// `/metrics`, parsed: `name{labels}` → value.
    async fn metrics(&self) -> BTreeMap<String, f64> {
        scrape(self.sidecar.admin_addr()).await
    }
}

// --- admin endpoints ---------------------------------------------------------------------------

#[tokio::test]
async fn readyz_is_200_when_serving_and_503_while_draining() {
    let api = Api::start(Backend::slow(Duration::from_millis(800)).await, "").await;
    assert_eq!(api.admin("/healthz").await.status, StatusCode::OK);
    assert_eq!(api.admin("/readyz").await.status, StatusCode::OK);
    let admin = api.sidecar.admin_addr();
    let client = api.client(WEB);
    let addr = api.addr();
    let in_flight = tokio::spawn(async move { client.get(addr, "/v1/slow").await });
    let backend = &api.backend;
    assert!(
        eventually(Duration::from_secs(5), || async {
            !backend.requests().is_empty()
        })
        .await
    );

    let Api {
        sidecar,
        backend: _backend,
        pki: _pki,
        ..
    } = api;
    let draining = tokio::spawn(sidecar.shutdown());

    let not_ready = eventually(Duration::from_secs(2), || async {
        PlainClient::get(admin, "/readyz").await.unwrap().status == StatusCode::SERVICE_UNAVAILABLE
    });
    assert!(not_ready.await);
    assert_eq!(in_flight.await.unwrap().unwrap().status, StatusCode::OK);
    draining.await.unwrap();
}

#[tokio::test]
async fn policy_endpoint_reports_version_files_counts_and_the_last_reload_error() {
    let api = Api::start(Backend::start().await, "").await;
    let policy: Value = serde_json::from_slice(&api.admin("/policy").await.body).unwrap();
    assert!(policy["version"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(policy["segments"], 2);
    assert_eq!(policy["rules"], 2);
    assert!(
        policy["files"][0]
            .as_str()
            .unwrap()
            .ends_with("policy.yaml")
    );
    assert!(policy["loaded_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(policy["last_reload_error"]["policy"], Value::Null);

    std::fs::write(api.policy_dir.join("policy.yaml"), "rules: [ {\n").unwrap();

    let reported = eventually(Duration::from_secs(3), || async {
        let body = api.admin("/policy").await.body;
        let policy: Value = serde_json::from_slice(&body).unwrap();
        policy["last_reload_error"]["policy"]
            .as_str()
            .is_some_and(|e| e.contains("policy.yaml:"))
    });
    assert!(reported.await);
    // The same error, typed: its bounded reason in /policy and as the metric's label.
    let policy: Value = serde_json::from_slice(&api.admin("/policy").await.body).unwrap();
    assert_eq!(policy["last_reload_reason"]["policy"], "invalid-policy");
    assert_eq!(policy["last_reload_reason"]["tls"], Value::Null);
    let rejected = r#"segward_reload_rejections_total{what="policy",reason="invalid-policy"}"#;
    assert_eq!(count(&api.metrics().await, rejected), 1.0);
    assert_eq!(api.admin("/nope").await.status, StatusCode::NOT_FOUND);
}

// --- metrics -----------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_allows_and_denies_per_rule_after_a_scripted_set_of_requests() {
    let api = Api::start(Backend::start().await, "").await;
    let mut web = api.client(WEB).connect(api.addr()).await.unwrap();
    for path in ["/v1/a", "/v1/b", "/v1/c", "/admin/x", "/admin/y", "/other"] {
        web.get(path).await.unwrap();
    }
    api.client(INTRUDER).get(api.addr(), "/v1/a").await.unwrap();
    let mut bad_path = api.client(WEB).connect(api.addr()).await.unwrap();
    assert_eq!(
        bad_path.get("/v1/..%2f").await.unwrap().status,
        StatusCode::BAD_REQUEST
    );

    let m = api.metrics().await;

    let requests = |decision: &str, rule: &str| {
        count(
            &m,
            &format!(
                "segward_requests_total{{direction=\"inbound\",decision=\"{decision}\",rule=\"{rule}\",protocol=\"http\"}}"
            ),
        )
    };
    assert_eq!(requests("allow", "web-calls-api"), 3.0);
    assert_eq!(requests("deny", "no-admin"), 2.0);
    assert_eq!(
        requests("deny", "default-deny"),
        2.0,
        "web /other and the intruder"
    );
    assert_eq!(requests("deny", "encoded-slash"), 1.0);
    let observed = count(
        &m,
        "segward_request_duration_seconds_count{direction=\"inbound\"}",
    );
    assert_eq!(observed, 8.0);
    assert!(count(&m, "segward_svid_expiry_seconds") > 3000.0);
    let info = m
        .keys()
        .find(|k| k.starts_with("segward_policy_info{version=\"sha256:"));
    assert!(info.is_some(), "{m:?}");
    assert_eq!(
        count(&m, "segward_connections_active{direction=\"inbound\"}"),
        2.0
    );
}

#[tokio::test]
async fn refused_handshakes_are_counted_by_reason() {
    let api = Api::start(Backend::start().await, "").await;
    let roots = api.pki.bundle_pems();
    let no_cert = MtlsClient::new(None, &roots, Alpn::H1);
    let stranger = api.client("spiffe://other.org/ns/x/sa/y");
    let expired = MtlsClient::new(Some(&api.pki.expired(WEB).pem), &roots, Alpn::H1);

    for client in [&no_cert, &stranger, &expired] {
        assert!(client.get(api.addr(), "/v1/a").await.is_err());
    }

    let m = api.metrics().await;
    for reason in ["no-client-cert", "unknown-trust-domain", "expired"] {
        let series = format!("segward_tls_handshake_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(count(&m, &series), 1.0, "{reason}: {m:?}");
    }
    assert!(api.backend.requests().is_empty());
}

// --- limits ------------------------------------------------------------------------------------

#[tokio::test]
async fn a_slowloris_client_is_cut_off_at_the_header_timeout_while_others_are_served() {
    let api = Api::start(
        Backend::start().await,
        "limits:\n  header_read_timeout: 300ms\n",
    )
    .await;
    let slow = api.client(WEB);
    let addr = api.addr();
    let started = Instant::now();
    // A request head that never ends.
    let stalled = tokio::spawn(async move {
        slow.raw(addr, b"GET /v1/a HTTP/1.1\r\nHost: api\r\nX-Slow: ")
            .await
    });

    let reply = api.client(WEB).get(api.addr(), "/v1/a").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    stalled.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(api.backend.requests().len(), 1);
}

#[tokio::test]
async fn oversized_headers_get_431_and_the_sidecar_stays_up() {
    let api = Api::start(
        Backend::start().await,
        "limits:\n  max_header_bytes: 8192\n",
    )
    .await;
    let mut conn = api.client(WEB).connect(api.addr()).await.unwrap();
    let huge = request("GET", "/v1/a")
        .header("x-big", "a".repeat(20_000))
        .body(Full::new(Bytes::new()))
        .unwrap();

    let reply = conn.send(huge).await.unwrap();

    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(api.backend.requests().is_empty());
    let again = api.client(WEB).get(api.addr(), "/v1/a").await.unwrap();
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn the_connection_limit_holds_until_a_connection_closes() {
    let api = Api::start(Backend::start().await, "limits:\n  max_connections: 2\n").await;
    let mut first = api.client(WEB).connect(api.addr()).await.unwrap();
    let mut second = api.client(WEB).connect(api.addr()).await.unwrap();
    assert_eq!(first.get("/v1/a").await.unwrap().status, StatusCode::OK);
    assert_eq!(second.get("/v1/a").await.unwrap().status, StatusCode::OK);

    let third = api.client(WEB);
    let addr = api.addr();
    let waiting = tokio::spawn(async move { third.get(addr, "/v1/third").await });
    // Not served while two connections are open...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    assert_eq!(api.backend.requests().len(), 2);

    // ...served once one closes.
    drop(first);
    let reply = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap();
    assert_eq!(reply.unwrap().unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn an_upstream_that_hangs_gets_504_within_the_configured_timeout() {
    let api = Api::start(
        Backend::hanging().await,
        "limits:\n  upstream_timeout: 300ms\n",
    )
    .await;
    let started = Instant::now();

    let reply = api.client(WEB).get(api.addr(), "/v1/a").await.unwrap();

    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let m = api.metrics().await;
    let series = "segward_upstream_errors_total{direction=\"inbound\",kind=\"upstream-timeout\"}";
    assert_eq!(count(&m, series), 1.0);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let api = Api::start(Backend::start().await, "limits:\n  idle_timeout: 300ms\n").await;
    let mut conn = api.client(WEB).connect(api.addr()).await.unwrap();
    assert_eq!(conn.get("/v1/a").await.unwrap().status, StatusCode::OK);

    assert!(eventually(Duration::from_secs(3), || async { conn.is_closed() }).await);
}

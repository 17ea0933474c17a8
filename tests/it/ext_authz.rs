//! The `ext_authz` Check service spoken to directly over gRPC (docs/envoy.md), as Envoy
//! speaks it: the generated tonic client on our own hyper HTTP/2 connection to a sidecar
//! started from YAML with `ext_authz: { listen: … }`. What Envoy itself does with the answers
//! is `ext_authz_envoy`'s story; this one pins the mapping (source principal, own identity,
//! method, path in normal form), the responses, the connection decisions, reload and audit,
//! the decision counters, and the Unix socket's life.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use segward::app::Sidecar;
use segward::ext_authz::BoundAt;
use segward::ext_authz::auth::authorization_client::AuthorizationClient;
use segward::ext_authz::auth::{
    AttributeContext, CheckRequest, CheckResponse, attribute_context, check_response,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::support::metrics::{count, scrape};
use crate::support::pki::Pki;
use crate::support::sidecar::{start, write_config, write_policy};

pub(crate) const FRONTEND: &str = "spiffe://example.org/ns/prod/sa/frontend";
pub(crate) const PAYMENTS: &str = "spiffe://example.org/ns/prod/sa/payments";
pub(crate) const BATCH: &str = "spiffe://example.org/ns/prod/sa/batch";
/// In no segment: no rule names it.
const STRANGER: &str = "spiffe://example.org/ns/prod/sa/stranger";

/// frontend may `GET /v1/**` of payments (so never open a connection: its rule names a
/// method and paths); batch's rule names neither, so it allows batch anything, connections
/// included.
pub(crate) const POLICY: &str = r#"
segments:
  frontend: { identities: ["spiffe://example.org/ns/prod/sa/frontend"] }
  payments: { identities: ["spiffe://example.org/ns/prod/sa/payments"] }
  batch: { identities: ["spiffe://example.org/ns/prod/sa/batch"] }
rules:
  - { name: frontend-reads-v1, from: [frontend], to: [payments], methods: [GET], paths: ["/v1/**"] }
  - { name: batch-connects, from: [batch], to: [payments] }
"#;

/// The generated client on one HTTP/2 connection to the Check service.
type Client = AuthorizationClient<H2>;

/// One hyper HTTP/2 connection as the `tower` service the generated client calls.
#[derive(Clone)]
pub(crate) struct H2(http2::SendRequest<tonic::body::Body>);

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

async fn over<IO>(io: IO) -> Client
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    AuthorizationClient::with_origin(H2(sender), http::Uri::from_static("http://localhost"))
}

/// A client of the sidecar's Check service, wherever it listens.
pub(crate) async fn client(sidecar: &Sidecar) -> Client {
    match sidecar.ext_authz_addr().expect("ext_authz configured") {
        BoundAt::Tcp(addr) => over(TcpStream::connect(addr).await.unwrap()).await,
        BoundAt::Unix(path) => over(UnixStream::connect(path).await.unwrap()).await,
    }
}

/// What Envoy's HTTP filter sends for `method path` from a peer whose certificate's URI SAN
/// is `principal` (empty: no certificate).
fn http_check(principal: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                principal: principal.to_owned(),
                ..Default::default()
            }),
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    headers,
                    protocol: "HTTP/1.1".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// What Envoy's network filter sends for a new connection: no `request.http`.
fn connection_check(principal: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                principal: principal.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn check(client: &mut Client, request: CheckRequest) -> CheckResponse {
    client.check(request).await.unwrap().into_inner()
}

/// The gRPC status code of the answer (0 OK, 7 PERMISSION_DENIED).
fn code(response: &CheckResponse) -> i32 {
    response.status.as_ref().map_or(-1, |s| s.code)
}

/// The headers an OK answer tells Envoy to set, each with its append action.
fn ok_headers(response: &CheckResponse) -> Vec<(String, String, i32)> {
    match &response.http_response {
        Some(check_response::HttpResponse::OkResponse(ok)) => ok
            .headers
            .iter()
            .map(|h| {
                let header = h.header.clone().unwrap();
                (header.key, header.value, h.append_action)
            })
            .collect(),
        other => panic!("not an OK response: {other:?}"),
    }
}

/// The denied answer's status, headers and body.
fn denied(response: &CheckResponse) -> (i32, HashMap<String, String>, String) {
    match &response.http_response {
        Some(check_response::HttpResponse::DeniedResponse(denied)) => (
            denied.status.as_ref().unwrap().code,
            denied
                .headers
                .iter()
                .map(|h| {
                    let header = h.header.clone().unwrap();
                    (header.key, header.value)
                })
                .collect(),
            denied.body.clone(),
        ),
        other => panic!("not a denied response: {other:?}"),
    }
}

pub(crate) struct Fixture {
    pub(crate) pki: Pki,
    pub(crate) policy: PathBuf,
    pub(crate) sidecar: Sidecar,
}

/// A sidecar with identity payments, `policy_text`, and `ext_authz.listen: listen` (written
/// as given; `extra` YAML appended).
pub(crate) async fn sidecar(policy_text: &str, listen: &str, extra: &str) -> Fixture {
    let pki = Pki::new(&["example.org"]);
    sidecar_with(pki, policy_text, listen, extra).await
}

pub(crate) async fn sidecar_with(
    pki: Pki,
    policy_text: &str,
    listen: &str,
    extra: &str,
) -> Fixture {
    let svid = pki.issue(PAYMENTS);
    let policy = write_policy(&pki, policy_text);
    let yaml = format!("ext_authz:\n  listen: {listen}\n{extra}");
    let config = write_config(&pki, &svid, &["example.org"], &policy, &yaml);
    let sidecar = start(&config, |_| {}).await;
    Fixture {
        pki,
        policy,
        sidecar,
    }
}

const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;

#[tokio::test]
async fn an_allowed_request_is_ok_with_the_identity_headers_overwriting_the_clients() {
    let f = sidecar(POLICY, "127.0.0.1:0", "").await;
    let mut client = client(&f.sidecar).await;
    let answer = check(
        &mut client,
        http_check(
            FRONTEND,
            "GET",
            "/v1/balance?user=7",
            &[("x-request-id", "req-1")],
        ),
    )
    .await;
    assert_eq!(code(&answer), 0, "{answer:?}");
    let mut headers = ok_headers(&answer);
    headers.sort();
    assert_eq!(
        headers,
        [
            (
                "x-forwarded-client-cert".to_owned(),
                format!("By={PAYMENTS};URI={FRONTEND}"),
                OVERWRITE_IF_EXISTS_OR_ADD
            ),
            (
                "x-request-id".to_owned(),
                "req-1".to_owned(),
                OVERWRITE_IF_EXISTS_OR_ADD
            ),
            (
                "x-spiffe-id".to_owned(),
                FRONTEND.to_owned(),
                OVERWRITE_IF_EXISTS_OR_ADD
            ),
        ]
    );
    f.sidecar.shutdown().await;
}

#[tokio::test]
async fn a_denied_request_is_403_with_a_request_id_and_the_data_planes_body() {
    let f = sidecar(POLICY, "127.0.0.1:0", "").await;
    let mut client = client(&f.sidecar).await;
    // The wrong method, the wrong path, the wrong caller: each denied alike.
    for (principal, method, path) in [
        (FRONTEND, "POST", "/v1/balance"),
        (FRONTEND, "GET", "/admin"),
        (STRANGER, "GET", "/v1/balance"),
    ] {
        let answer = check(&mut client, http_check(principal, method, path, &[])).await;
        assert_eq!(code(&answer), 7, "{principal} {method} {path}: {answer:?}");
        let (status, headers, body) = denied(&answer);
        assert_eq!(status, 403);
        assert_eq!(body, "forbidden\n");
        let id = &headers["x-request-id"];
        assert_eq!(id.len(), 24, "a fresh id: {id}");
    }
    f.sidecar.shutdown().await;
}

#[tokio::test]
async fn a_source_principal_that_is_not_a_spiffe_id_is_denied() {
    let f = sidecar(POLICY, "127.0.0.1:0", "").await;
    let mut client = client(&f.sidecar).await;
    for principal in [
        "",
        "CN=frontend,O=example",
        "spiffe://Example.org/ns/prod/sa/frontend",
        "spiffe://example.org/ns/prod/sa/frontend/",
        "spiffe://example.org/ns/prod/sa/../sa/frontend",
        "spiffe://example.org",
        "https://example.org/ns/prod/sa/frontend",
    ] {
        let answer = check(
            &mut client,
            http_check(principal, "GET", "/v1/balance", &[]),
        )
        .await;
        assert_eq!(code(&answer), 7, "{principal:?}: {answer:?}");
        assert_eq!(denied(&answer).0, 403);
        let answer = check(&mut client, connection_check(principal)).await;
        assert_eq!(code(&answer), 7, "connection from {principal:?}");
    }
    let metrics = scrape(f.sidecar.admin_addr()).await;
    let series = |reason: &str| {
        format!(
            "segward_requests_total{{direction=\"ext_authz\",decision=\"deny\",rule=\"{reason}\",protocol=\"http\"}}"
        )
    };
    assert_eq!(count(&metrics, &series("no-source-principal")), 1.0);
    assert_eq!(count(&metrics, &series("bad-source-principal")), 6.0);
    f.sidecar.shutdown().await;
}

#[tokio::test]
async fn a_path_not_already_in_normal_form_is_denied_though_its_normal_form_is_allowed() {
    let f = sidecar(POLICY, "127.0.0.1:0", "").await;
    let mut client = client(&f.sidecar).await;
    let allowed = check(
        &mut client,
        http_check(FRONTEND, "GET", "/v1/a/b?q=%2F..", &[]),
    )
    .await;
    assert_eq!(code(&allowed), 0, "the query is never matched");
    for path in [
        "/v1/../v1/a",
        "/v1/./a",
        "/v1//a",
        "//v1/a",
        "/v1/%61",
        "/v1/a%2Fb",
        "/v1/a%5Cb",
        "/v1/a\\b",
        "/v1/%2e%2e/admin",
        "/v1/a%00",
        "/../v1/a",
        "v1/a",
        "",
    ] {
        let answer = check(&mut client, http_check(FRONTEND, "GET", path, &[])).await;
        assert_eq!(code(&answer), 7, "{path:?} was not denied: {answer:?}");
        assert_eq!(denied(&answer).0, 403, "{path:?}");
    }
    f.sidecar.shutdown().await;
}

#[tokio::test]
async fn a_check_without_http_attributes_is_one_connection_decision() {
    let f = sidecar(POLICY, "127.0.0.1:0", "").await;
    let mut client = client(&f.sidecar).await;
    // batch's rule names neither methods nor paths: it allows the connection; frontend's
    // names both, so it never matches a connection (docs/l4.md).
    let batch = check(&mut client, connection_check(BATCH)).await;
    assert_eq!(code(&batch), 0, "{batch:?}");
    assert!(batch.http_response.is_none());
    let frontend = check(&mut client, connection_check(FRONTEND)).await;
    assert_eq!(code(&frontend), 7, "{frontend:?}");
    let metrics = scrape(f.sidecar.admin_addr()).await;
    assert_eq!(
        count(
            &metrics,
            "segward_requests_total{direction=\"ext_authz\",decision=\"allow\",rule=\"batch-connects\",protocol=\"tcp\"}"
        ),
        1.0
    );
    f.sidecar.shutdown().await;
}

#[tokio::test]
async fn a_reload_applies_to_the_next_check_on_the_same_connection() {
    let f = sidecar(POLICY, "127.0.0.1:0", "").await;
    let mut client = client(&f.sidecar).await;
    let request = || http_check(FRONTEND, "GET", "/v1/balance", &[]);
    assert_eq!(code(&check(&mut client, request()).await), 0);
    let revoked = format!("{POLICY}revoked:\n  - {{ identity: \"{FRONTEND}\", reason: INC-1 }}\n");
    std::fs::write(f.policy.join("policy.yaml"), revoked).unwrap();
    f.sidecar.reload(true).await;
    assert_eq!(code(&check(&mut client, request()).await), 7);
    f.sidecar.shutdown().await;
}

#[tokio::test]
async fn in_audit_mode_a_deny_is_let_through_as_would_deny() {
    let f = sidecar(POLICY, "127.0.0.1:0", "mode: audit\n").await;
    let mut client = client(&f.sidecar).await;
    let answer = check(
        &mut client,
        http_check(STRANGER, "DELETE", "/v1/balance", &[]),
    )
    .await;
    assert_eq!(code(&answer), 0, "{answer:?}");
    let metrics = scrape(f.sidecar.admin_addr()).await;
    assert_eq!(
        count(
            &metrics,
            "segward_requests_total{direction=\"ext_authz\",decision=\"would-deny\",rule=\"default-deny\",protocol=\"http\"}"
        ),
        1.0
    );
    // A principal that is no identity is refused before any policy: audit cannot let it by.
    let answer = check(&mut client, http_check("", "GET", "/v1/balance", &[])).await;
    assert_eq!(code(&answer), 7);
    f.sidecar.shutdown().await;
}

fn socket_in(dir: &Path) -> PathBuf {
    dir.join("ext_authz.sock")
}

#[tokio::test]
async fn on_a_unix_socket_a_stale_socket_is_replaced_and_the_file_removed_at_shutdown() {
    let pki = Pki::new(&["example.org"]);
    let path = socket_in(pki.dir());
    // A socket file left behind by a sidecar that was killed.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let f = sidecar_with(pki, POLICY, &format!("unix://{}", path.display()), "").await;
    assert!(path.starts_with(f.pki.dir()));
    assert_eq!(
        f.sidecar.ext_authz_addr(),
        Some(&BoundAt::Unix(path.clone()))
    );
    let mut client = client(&f.sidecar).await;
    let answer = check(&mut client, http_check(FRONTEND, "GET", "/v1/x", &[])).await;
    assert_eq!(code(&answer), 0);
    drop(client);
    f.sidecar.shutdown().await;
    assert!(!path.exists(), "the socket file outlived the sidecar");
}

#[tokio::test]
async fn a_regular_file_where_the_socket_should_be_is_an_error_and_is_kept() {
    let pki = Pki::new(&["example.org"]);
    let path = socket_in(pki.dir());
    std::fs::write(&path, "not a socket").unwrap();
    let svid = pki.issue(PAYMENTS);
    let policy = write_policy(&pki, POLICY);
    let yaml = format!("ext_authz:\n  listen: unix://{}\n", path.display());
    let config = write_config(&pki, &svid, &["example.org"], &policy, &yaml);
    let config = segward::config::Config::load(&config).unwrap();
    let error = Sidecar::start(&config).await.err().expect("refused");
    assert!(error.to_string().contains("ext_authz.listen"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

#[test]
fn an_ext_authz_address_off_loopback_is_refused_at_load() {
    let pki = Pki::new(&["example.org"]);
    let svid = pki.issue(PAYMENTS);
    let policy = write_policy(&pki, POLICY);
    let yaml = "ext_authz:\n  listen: 0.0.0.0:9191\n";
    let config = write_config(&pki, &svid, &["example.org"], &policy, yaml);
    let error = segward::config::Config::load(&config).unwrap_err();
    assert_eq!(error.reason(), "bad-ext-authz-listen", "{error}");
}

/// The decision log of the real binary (`segward run`): one line per HTTP Check with
/// direction `ext_authz`, the principal as source, the sidecar as destination, Envoy's
/// request id and peer address; one connection line per network-filter Check.
#[tokio::test]
async fn the_real_binary_logs_each_check_with_direction_ext_authz() {
    use segward::ext_authz::pb::envoy::config::core::v3::{
        Address, SocketAddress, address, socket_address,
    };
    let pki = Pki::new(&["example.org"]);
    let svid = pki.issue(PAYMENTS);
    let policy = write_policy(&pki, POLICY);
    let socket = socket_in(pki.dir());
    let yaml = format!("ext_authz:\n  listen: unix://{}\n", socket.display());
    let config = write_config(&pki, &svid, &["example.org"], &policy, &yaml);
    let mut segward = crate::support::process::Segward::spawn(&config);
    let up = crate::support::eventually(crate::support::process::WAIT, || {
        let socket = socket.clone();
        async move { UnixStream::connect(&socket).await.is_ok() }
    })
    .await;
    assert!(up, "{}", segward.stderr());
    let mut client = over(UnixStream::connect(&socket).await.unwrap()).await;

    let mut allowed = http_check(
        FRONTEND,
        "GET",
        "/v1/balance?secret=1",
        &[("x-request-id", "envoy-req-1")],
    );
    let peer = Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: "10.0.3.7".to_owned(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(51234)),
            ..Default::default()
        })),
    };
    if let Some(source) = allowed.attributes.as_mut().and_then(|a| a.source.as_mut()) {
        source.address = Some(peer);
    }
    assert_eq!(code(&check(&mut client, allowed).await), 0);
    assert_eq!(
        code(
            &check(
                &mut client,
                http_check(
                    FRONTEND,
                    "GET",
                    "/admin/keys",
                    &[("x-request-id", "envoy-req-2")]
                )
            )
            .await
        ),
        7
    );
    assert_eq!(code(&check(&mut client, connection_check(BATCH)).await), 0);
    drop(client);

    let stderr = segward.stop().await;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    let (allow, deny, connection) = (&lines[0], &lines[1], &lines[2]);
    for line in &lines {
        assert_eq!(line["direction"], "ext_authz", "{line}");
        assert_eq!(line["destination_id"], PAYMENTS, "{line}");
    }
    assert_eq!(allow["request_id"], "envoy-req-1", "{allow}");
    assert_eq!(allow["source_id"], FRONTEND, "{allow}");
    assert_eq!(allow["peer_addr"], "10.0.3.7:51234", "{allow}");
    assert_eq!(
        (&allow["method"], &allow["path"]),
        (&"GET".into(), &"/v1/balance".into())
    );
    assert_eq!(
        (&allow["decision"], &allow["rule"], &allow["status"]),
        (&"allow".into(), &"frontend-reads-v1".into(), &200.into())
    );
    assert!(
        allow["policy_version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(deny["request_id"], "envoy-req-2", "{deny}");
    assert_eq!(
        (&deny["decision"], &deny["reason"], &deny["status"]),
        (&"deny".into(), &"default-deny".into(), &403.into())
    );
    assert_eq!(
        (&connection["protocol"], &connection["event"]),
        (&"tcp".into(), &"open".into())
    );
    assert_eq!(
        (
            &connection["source_id"],
            &connection["decision"],
            &connection["rule"]
        ),
        (&BATCH.into(), &"allow".into(), &"batch-connects".into())
    );
    assert!(
        !stderr.contains("secret"),
        "the query was logged:\n{stderr}"
    );
}

/// docs/probes.md through Envoy: a principal enumerating paths it may not reach is contained
/// at the `distinct_denied`-th distinct target (its allowed request then refused as
/// `probe-contained`), another principal's checks carry on, the release endpoint lifts it;
/// a contained principal's connection check is refused too.
#[tokio::test]
async fn a_probe_through_ext_authz_is_detected_and_contains_only_the_prober() {
    let detect = "detect:\n  probe: { distinct_denied: 3, window: 60s, action: contain, contain_for: 10m }\n";
    let f = sidecar(POLICY, "127.0.0.1:0", detect).await;
    let mut client = client(&f.sidecar).await;
    let allowed = || http_check(FRONTEND, "GET", "/v1/balance", &[]);
    assert_eq!(code(&check(&mut client, allowed()).await), 0);
    // Two distinct denied targets (one of them repeated): not yet a probe.
    for path in ["/admin/users", "/admin/users", "/internal/keys"] {
        let denied = check(&mut client, http_check(FRONTEND, "POST", path, &[])).await;
        assert_eq!(code(&denied), 7, "{path}");
    }
    assert_eq!(
        code(&check(&mut client, allowed()).await),
        0,
        "contained too early"
    );
    // The third distinct denied target: contained on this sidecar.
    let third = check(
        &mut client,
        http_check(FRONTEND, "DELETE", "/v1/balance", &[]),
    )
    .await;
    assert_eq!(code(&third), 7);
    let refused = check(&mut client, allowed()).await;
    assert_eq!(
        code(&refused),
        7,
        "the prober's allowed request is refused once contained"
    );
    assert_eq!(denied(&refused).0, 403);
    // Another identity is untouched: batch's connection check still passes.
    assert_eq!(code(&check(&mut client, connection_check(BATCH)).await), 0);
    assert_eq!(
        code(&check(&mut client, connection_check(FRONTEND)).await),
        7
    );
    let metrics = scrape(f.sidecar.admin_addr()).await;
    let series = r#"segward_probes_detected_total{direction="ext_authz",action="contain"}"#;
    assert_eq!(count(&metrics, series), 1.0, "{metrics:?}");
    assert!(f.sidecar.probes().release(FRONTEND));
    assert_eq!(code(&check(&mut client, allowed()).await), 0, "released");
    f.sidecar.shutdown().await;
}

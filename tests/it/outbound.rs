//! The outbound side over real sockets (docs/configuration.md, §4): a plain client talks to `web`'s
//! outbound sidecar, which routes by host over mTLS to `api`'s inbound sidecar and on to a
//! recording backend. Egress denials, unknown destinations, `CONNECT`, a server proving the
//! wrong SPIFFE ID, path tricks, an h2-only destination, audit mode and a destination down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use segward::app::Sidecar;
use segward::identity::TrustDomain;
use segward::tls::{Credentials, LiveTls, TlsOptions, server_config};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::support::backend::{BODY, Backend};
use crate::support::client::{PlainClient, Reply, request};
use crate::support::pki::Pki;
use crate::support::sidecar::{inbound_block, outbound_block, start, write_config, write_policy};

const TD: &str = "example.org";
const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const API: &str = "spiffe://example.org/ns/prod/sa/api";
const LEDGER: &str = "spiffe://example.org/ns/prod/sa/ledger";

/// The fleet-wide policy both sidecars load: egress rules apply at `web`'s outbound side,
/// ingress rules at `api`'s inbound side.
const POLICY: &str = r#"
segments:
  web:
    identities: ["spiffe://example.org/ns/prod/sa/web"]
  api:
    identities: ["spiffe://example.org/ns/prod/sa/api"]
  ledger:
    identities: ["spiffe://example.org/ns/prod/sa/ledger"]
rules:
  - name: web-calls-api
    from: [web]
    to: [api]
    methods: [GET, POST]
    paths: ["/v1/**"]
  - name: web-calls-ledger
    from: [web]
    to: [ledger]
  - name: no-admin
    effect: deny
    from: ["*"]
    to: [api]
    paths: ["/admin/**"]
"#;

const ENFORCE: &str = "enforce";
const AUDIT: &str = "audit";

#[tokio::test]
async fn absolute_form_request_reaches_the_backend_through_both_sidecars() {
    let chain = Chain::start().await;
    let reply = chain.get("http://api/v1/x?q=1").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.text(), BODY);

    let seen = chain.backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/v1/x?q=1");
    // The inbound sidecar of api names the caller it authenticated: web, not the client.
    assert_eq!(seen[0].headers["x-spiffe-id"], WEB);
    assert_eq!(
        seen[0].headers["x-forwarded-client-cert"],
        format!("By={API};URI={WEB}").as_str()
    );
    // One id names the request on both sidecars and at the backend.
    let id = &reply.headers["x-request-id"];
    assert!(!id.is_empty());
    assert_eq!(&seen[0].headers["x-request-id"], id);
}

#[tokio::test]
async fn host_header_names_the_destination_case_insensitively_and_without_port() {
    let chain = Chain::start().await;
    for host in ["api", "API:8080"] {
        let reply = chain
            .send(request("GET", "/v1/x").header("host", host))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "Host: {host}: {reply:?}");
        assert_eq!(reply.text(), BODY);
    }
    let targets: Vec<_> = chain
        .backend
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(targets, ["/v1/x", "/v1/x"]);
}

#[tokio::test]
async fn egress_deny_rule_refuses_at_the_outbound_side_with_a_generic_403() {
    // api's inbound sidecar only audits: the refusal can come from web's outbound side only.
    let chain = Chain::with(Pki::new(&[TD]), ENFORCE, AUDIT, &[]).await;
    let reply = chain.get("http://api/admin/x").await;
    chain.assert_refused(&reply, StatusCode::FORBIDDEN);
    // The reason goes to the decision log, not to the caller.
    let text = reply.text();
    assert!(text.len() < 64, "{text}");
    for secret in ["no-admin", "spiffe://", "deny rule"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(!reply.headers["x-request-id"].is_empty());
}

#[tokio::test]
async fn unknown_destination_is_refused_and_never_forwarded() {
    let chain = Chain::start().await;
    let by_host = chain
        .send(request("GET", "/v1/x").header("host", "nowhere"))
        .await;
    chain.assert_refused(&by_host, StatusCode::FORBIDDEN);
    let absolute = chain.get("http://nowhere/").await;
    chain.assert_refused(&absolute, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn connect_is_refused_with_405() {
    let chain = Chain::start().await;
    let raw = b"CONNECT api:443 HTTP/1.1\r\nHost: api:443\r\nConnection: close\r\n\r\n";
    let answer = PlainClient::raw(chain.outbound(), raw).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 405 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(chain.backend.requests().is_empty());
}

#[tokio::test]
async fn server_proving_another_spiffe_id_than_the_destination_gets_502() {
    let chain = Chain::start().await;
    // `ledger` routes to api's inbound sidecar, which proves api's ID; the policy allows
    // web → ledger, so the decision passes and the server check is what refuses.
    let reply = chain.get("http://ledger/v1/x").await;
    chain.assert_refused(&reply, StatusCode::BAD_GATEWAY);
    // The same address, expected to prove api's ID, works.
    let reply = chain.get("http://api/v1/x").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(chain.backend.requests().len(), 1);
}

#[tokio::test]
async fn outbound_paths_are_normalized_before_the_decision_and_forwarded_normalized() {
    // api's inbound sidecar only audits: had web decided on the raw `/v1/../admin` (allowed
    // by `/v1/**`), the request would reach the backend.
    let chain = Chain::with(Pki::new(&[TD]), ENFORCE, AUDIT, &[]).await;
    let get = |path| chain.send(request("GET", path).header("host", "api"));

    let reply = get("/v1/./a//b").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let reply = get("/v1/../admin").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "no-admin after `..`");
    let reply = get("/v1/..%2fadmin").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "encoded slash");

    let targets: Vec<_> = chain
        .backend
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(targets, ["/v1/a/b"], "only the allowed one, normalized");
}

#[tokio::test]
async fn outbound_speaks_h2_to_a_destination_offering_only_h2_and_reuses_the_connection() {
    let pki = Pki::new(&[TD]);
    let server = H2Server::start(&pki, API).await;
    let chain = Chain::with(pki, ENFORCE, ENFORCE, &[("api-h2", server.addr, API)]).await;
    for n in 0..5 {
        let reply = chain.get(&format!("http://api-h2/v1/{n}")).await;
        assert_eq!(reply.status, StatusCode::OK, "request {n}: {reply:?}");
        assert_eq!(reply.text(), H2Server::BODY);
    }
    assert_eq!(*server.versions.lock().unwrap(), [Version::HTTP_2; 5]);
    // The pool keeps the one h2 connection for every request.
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert!(chain.backend.requests().is_empty());
}

#[tokio::test]
async fn audit_mode_on_the_outbound_side_forwards_what_it_would_deny() {
    // api's inbound sidecar audits too, so only web's outbound decision could refuse.
    let chain = Chain::with(Pki::new(&[TD]), AUDIT, AUDIT, &[]).await;
    let reply = chain.get("http://api/admin/x").await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "deny rule, audited: {reply:?}"
    );
    let delete = chain.send(request("DELETE", "http://api/v1/x")).await;
    assert_eq!(
        delete.status,
        StatusCode::OK,
        "default-deny, audited: {delete:?}"
    );

    let seen = chain.backend.requests();
    let seen: Vec<_> = seen
        .iter()
        .map(|r| (r.method.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(seen, [("GET", "/admin/x"), ("DELETE", "/v1/x")]);
}

#[tokio::test]
async fn unreachable_destination_gets_502() {
    let gone = Backend::unused_addr();
    let chain = Chain::with(Pki::new(&[TD]), ENFORCE, ENFORCE, &[("gone", gone, API)]).await;
    let reply = chain.get("http://gone/v1/x").await;
    chain.assert_refused(&reply, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn absolute_form_target_replaces_the_host_header() {
    // RFC 9112 §3.2.2: a proxy receiving absolute-form MUST ignore the received Host and
    // replace it with the request-target's host.
    let chain = Chain::start().await;
    let req = request("GET", "http://api/v1/x").header("host", "elsewhere");
    let reply = chain.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let seen = chain.backend.requests();
    let hosts: Vec<_> = seen[0].headers.get_all("host").iter().collect();
    assert_eq!(hosts, ["api"]);
}

#[tokio::test]
async fn duplicate_host_headers_are_refused_with_400() {
    // RFC 9112 §3.2: more than one Host field line → 400; routing by one while the workload
    // may read the other is ambiguous.
    let chain = Chain::start().await;
    let raw = b"GET /v1/x HTTP/1.1\r\nHost: api\r\nHost: nowhere\r\nConnection: close\r\n\r\n";
    let answer = PlainClient::raw(chain.outbound(), raw).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(chain.backend.requests().is_empty());
}

/// The outbound → inbound chain: `web`'s outbound sidecar routes `api` (and `ledger`, which
/// proves the wrong ID) to `api`'s inbound sidecar, which forwards to `backend`.
struct Chain {
    backend: Backend,
    web: Sidecar,
    _api: Sidecar,
    _pki: Pki,
}

impl Chain {
    /// Both sidecars enforcing, no extra destinations.
    async fn start() -> Chain {
        Chain::with(Pki::new(&[TD]), ENFORCE, ENFORCE, &[]).await
    }

    /// The chain with each sidecar's `mode:` and `extra` destinations on `web`'s side.
    async fn with(
        pki: Pki,
        web_mode: &str,
        api_mode: &str,
        extra: &[(&str, SocketAddr, &str)],
    ) -> Chain {
        let backend = Backend::start().await;
        let policy = write_policy(&pki, POLICY);

        let listeners = format!("{}mode: {api_mode}\n", inbound_block(backend.addr()));
        let config = write_config(&pki, &pki.issue(API), &[TD], &policy, &listeners);
        let api = start(&config, |_| {}).await;
        let api_addr = api.inbound_addr().unwrap();

        let mut destinations = vec![("api", api_addr, API), ("ledger", api_addr, LEDGER)];
        destinations.extend_from_slice(extra);
        let listeners = format!("{}mode: {web_mode}\n", outbound_block(&destinations));
        let config = write_config(&pki, &pki.issue(WEB), &[TD], &policy, &listeners);
        let web = start(&config, |_| {}).await;
        Chain {
            backend,
            web,
            _api: api,
            _pki: pki,
        }
    }

    /// `web`'s outbound listener.
    fn outbound(&self) -> SocketAddr {
        self.web.outbound_addr().unwrap()
    }

    /// `GET target` (origin- or absolute-form) from the app to `web`'s outbound listener.
    async fn get(&self, target: &str) -> Reply {
        self.send(request("GET", target)).await
    }

    /// `req` with an empty body from the app to `web`'s outbound listener.
    async fn send(&self, req: http::request::Builder) -> Reply {
        let mut conn = PlainClient::connect(self.outbound()).await.unwrap();
        conn.send(req.body(Full::default()).unwrap()).await.unwrap()
    }

    /// A refusal is proven two ways: the status, and nothing reached the backend.
    fn assert_refused(&self, reply: &Reply, status: StatusCode) {
        assert_eq!(reply.status, status, "{reply:?}");
        assert!(reply.headers.contains_key("x-request-id"), "{reply:?}");
        let seen = self.backend.requests();
        assert!(seen.is_empty(), "forwarded: {seen:?}");
    }
}

/// An mTLS server that offers only h2 and proves a given SPIFFE ID, recording the HTTP version
/// of every request and counting handshakes; dropping it stops the server.
struct H2Server {
    addr: SocketAddr,
    versions: Arc<Mutex<Vec<Version>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl H2Server {
    const BODY: &str = "h2 ok";

    async fn start(pki: &Pki, id: &str) -> H2Server {
        let svid = pki.issue(id);
        let bundles = [(TrustDomain::parse(TD).unwrap(), pki.bundle_path(TD))];
        let creds = Credentials::load(&svid.cert, &svid.key, &bundles, SystemTime::now()).unwrap();
        let tls = LiveTls::new(creds).unwrap();
        let mut config = (*server_config(&tls, TlsOptions::default()).unwrap()).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let versions = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(h2_accept_loop(
            listener,
            acceptor,
            versions.clone(),
            connections.clone(),
        ));
        H2Server {
            addr,
            versions,
            connections,
            task,
        }
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection too.
        self.task.abort();
    }
}

async fn h2_accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    versions: Arc<Mutex<Vec<Version>>>,
    connections: Arc<AtomicUsize>,
) {
    let mut tasks = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, versions, connections) =
            (acceptor.clone(), versions.clone(), connections.clone());
        tasks.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            connections.fetch_add(1, Ordering::SeqCst);
            let service = service_fn(move |req: Request<Incoming>| {
                versions.lock().unwrap().push(req.version());
                let body = Full::new(Bytes::from_static(H2Server::BODY.as_bytes()));
                async move { Ok::<_, Infallible>(Response::new(body)) }
            });
            let builder = http2::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
        while tasks.try_join_next().is_some() {}
    }
}

//! The fixtures themselves, over real sockets: the recording backend and the plain client, the
//! mTLS client against a tiny in-test tokio-rustls server (h2, HTTP/1.1, TLS 1.2, raw bytes,
//! rejected certificates), and the files and bad leaves the PKI writes.

use std::convert::Infallible;
use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use segward::tls::crypto_provider;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::support::backend::{BODY, Backend};
use crate::support::client::{Alpn, ClientError, MtlsClient, PlainClient, request};
use crate::support::eventually;
use crate::support::pki::{Pki, SvidFiles};

const TRUST_DOMAINS: [&str; 2] = ["example.org", "partner.net"];
const CLIENT: &str = "spiffe://example.org/ns/prod/sa/frontend";
const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn backend_records_what_the_plain_client_sends() {
    let backend = Backend::start().await;
    let mut conn = PlainClient::connect(backend.addr()).await.unwrap();
    let post = request("POST", "/v1/x?q=1").header("x-test", "yes");
    let reply = conn
        .send(post.body(Full::from("hello")).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), BODY);
    assert_eq!(reply.headers["x-backend"], "1");
    // Keep-alive: the same connection carries an absolute-form request, as http_proxy sends.
    let reply = conn.get("http://payments/v1/y").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!conn.is_closed());
    let raw = b"GET /raw HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
    let answer = PlainClient::raw(backend.addr(), raw).await;
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");

    let seen = backend.requests();
    let targets: Vec<_> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/v1/x?q=1", "http://payments/v1/y", "/raw"]);
    assert_eq!(
        (seen[0].method.as_str(), &seen[0].body[..]),
        ("POST", &b"hello"[..])
    );
    assert_eq!(seen[0].headers["x-test"], "yes");
    assert_eq!(seen[0].headers[HOST], "localhost");
    assert_eq!(seen[1].headers[HOST], "payments");
}

#[tokio::test]
async fn hanging_backend_records_but_never_answers() {
    let backend = Backend::hanging().await;
    let mut conn = PlainClient::connect(backend.addr()).await.unwrap();
    let mut pending = tokio::spawn(async move { conn.get("/slow").await });
    let recorded = &backend;
    assert!(eventually(WAIT, || async move { recorded.requests().len() == 1 }).await);
    assert!(
        timeout(Duration::from_millis(300), &mut pending)
            .await
            .is_err()
    );
    pending.abort();

    let down = PlainClient::get(Backend::unused_addr(), "/").await;
    assert!(matches!(down, Err(ClientError::Connect(_))), "{down:?}");
}

#[tokio::test]
async fn mtls_client_speaks_h2_h1_tls12_and_raw() {
    let pki = Pki::new(&TRUST_DOMAINS);
    let server = tls_server(&pki).await;
    let (svid, roots) = (pki.issue(CLIENT).pem, pki.bundle_pems());

    let mut h2 = MtlsClient::new(Some(&svid), &roots, Alpn::H2)
        .connect(server)
        .await
        .unwrap();
    assert_eq!(h2.negotiated_alpn().as_deref(), Some(&b"h2"[..]));
    for path in ["/one", "/two"] {
        let reply = h2.get(path).await.unwrap();
        assert_eq!(
            (reply.status, reply.version),
            (StatusCode::OK, Version::HTTP_2)
        );
        assert_eq!(reply.text(), format!("tls ok {path}"));
    }
    let h1 = MtlsClient::new(Some(&svid), &roots, Alpn::H1);
    let mut conn = h1.connect(server).await.unwrap();
    assert_eq!(conn.negotiated_alpn().as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(conn.get("/h1").await.unwrap().version, Version::HTTP_11);

    let tls12 = [&rustls::version::TLS12];
    let old = MtlsClient::with_versions(Some(&svid), &roots, Alpn::None, &tls12);
    let mut conn = old.connect(server).await.unwrap();
    assert_eq!(conn.negotiated_alpn(), None);
    assert_eq!(conn.get("/old").await.unwrap().text(), "tls ok /old");

    let raw = b"GET /raw HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let answer = h1.raw(server, raw).await;
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
}

#[tokio::test]
async fn rejected_certificates_fail_connect_or_the_first_request() {
    let pki = Pki::new(&TRUST_DOMAINS);
    let server = tls_server(&pki).await;
    let roots = pki.bundle_pems();
    let expired = pki.expired(CLIENT).pem;
    let cases = [
        (None, roots.clone(), "CertificateRequired"),
        (Some(&expired), roots.clone(), "CertificateExpired"),
        // The server's certificate comes from example.org, which these roots do not hold.
        (
            None,
            vec![pki.ca("partner.net").cert_pem().to_owned()],
            "UnknownIssuer",
        ),
    ];
    for (svid, roots, reason) in cases {
        let client = MtlsClient::new(svid, &roots, Alpn::H1);
        let err = client.get(server, "/").await.unwrap_err();
        assert!(err.to_string().contains(reason), "{reason}: {err}");
    }
}

#[test]
fn pki_writes_bundles_svids_and_bad_leaves() {
    let pki = Pki::new(&TRUST_DOMAINS);
    let bundle = pki.bundle_path("partner.net");
    assert!(bundle.starts_with(pki.dir()));
    assert_eq!(
        fs::read_to_string(bundle).unwrap(),
        pki.ca("partner.net").cert_pem()
    );
    let good = pki.issue(CLIENT);
    assert_eq!(fs::read_to_string(&good.cert).unwrap(), good.pem.chain_pem);
    assert_eq!(fs::read_to_string(&good.key).unwrap(), good.pem.key_pem);

    let forged = pki.issue_by("partner.net", CLIENT);
    assert_eq!(uris(&forged), [CLIENT]);
    assert!(leaf(&forged).issuer().to_string().contains("partner.net"));
    assert_eq!(
        uris(&pki.two_uri_sans(CLIENT)),
        [CLIENT, &format!("{CLIENT}-twin")]
    );
    assert!(leaf(&pki.ca_as_leaf(CLIENT)).is_ca());
    assert!(!leaf(&good).is_ca());
    assert!(!leaf(&pki.expired(CLIENT)).validity().is_valid());
    assert!(leaf(&good).validity().is_valid());
}

/// A TLS server requiring client certificates from either trust domain, presenting an
/// example.org SVID, answering every request `tls ok <path>` over h2 or HTTP/1.1.
async fn tls_server(pki: &Pki) -> SocketAddr {
    let acceptor = TlsAcceptor::from(server_config(pki));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|req: Request<Incoming>| async move {
                    let body = format!("tls ok {}", req.uri().path());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    addr
}

/// The in-test server's config, read back from the files the PKI wrote.
fn server_config(pki: &Pki) -> Arc<ServerConfig> {
    let provider = crypto_provider();
    let mut roots = RootCertStore::empty();
    for td in TRUST_DOMAINS {
        let pem = CertificateDer::from_pem_file(pki.bundle_path(td)).unwrap();
        roots.add(pem).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let svid = pki.issue("spiffe://example.org/srv");
    let chain = CertificateDer::pem_file_iter(&svid.cert).unwrap();
    let chain = chain.collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(&svid.key).unwrap();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

fn leaf(svid: &SvidFiles) -> X509Certificate<'_> {
    X509Certificate::from_der(&svid.pem.der).unwrap().1
}

/// The URI SANs of `svid`'s leaf.
fn uris(svid: &SvidFiles) -> Vec<String> {
    let cert = leaf(svid);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names = san.value.general_names.iter();
    names
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

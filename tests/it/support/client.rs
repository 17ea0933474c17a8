//! Real clients for integration tests: [`MtlsClient`] speaks TLS + HTTP/1.1 or h2 to an
//! inbound listener with any client certificate (bad ones included), [`PlainClient`] speaks
//! plain HTTP/1.1 to an outbound listener, and both can send raw bytes for framing tests.
//! Every config uses `segward::tls::crypto_provider()` (CONTRIBUTING.md "Dependencies": ring is the only provider).

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use segward::certs::IssuedSvid;
use segward::tls::crypto_provider;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The name every server is verified as: sidecar and test certificates carry DNS SAN
/// `localhost`. Also the default `Host` / `:authority`.
pub const SERVER_NAME: &str = "localhost";

/// How long a connect or a request may take before the client gives up (a hang fails fast).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How long [`MtlsClient::raw`] and [`PlainClient::raw`] wait for the server to close.
pub const RAW_DEADLINE: Duration = Duration::from_secs(5);

/// The ALPN protocols a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// Offer `http/1.1` only.
    H1,
    /// Offer `h2` only.
    H2,
    /// Send no ALPN extension (as hyper-rustls does with HTTP/1.1 only).
    None,
}

/// A TLS client with an optional client certificate, trusting given CA certificates.
#[derive(Clone)]
pub struct MtlsClient {
    config: Arc<ClientConfig>,
}

/// Plain HTTP/1.1 over TCP, as an application talks to its outbound sidecar listener.
pub struct PlainClient;

/// One open HTTP connection (HTTP/1.1 or h2); several [`Conn::send`]s reuse it.
pub struct Conn {
    sender: Sender,
    alpn: Option<Vec<u8>>,
    scheme: &'static str,
    driver: JoinHandle<()>,
    peer_leaf: Option<Vec<u8>>,
}

/// A response, read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// Every header field of the response.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The HTTP version the response came back in.
    pub version: Version,
}

/// Why a connection or a request failed; the text holds the whole error chain (rustls,
/// hyper, io), so tests can assert on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The TCP connection was refused or failed.
    Connect(String),
    /// The TLS handshake failed (as seen by the client).
    Handshake(String),
    /// The HTTP exchange failed, including a server's late rejection of our certificate.
    Request(String),
    /// Nothing happened within [`DEADLINE`].
    Timeout(&'static str),
}

/// A request builder for `method` and `target`, origin-form (`/v1/x?q`) or absolute-form
/// (`http://payments/v1/x`); [`Conn::send`] adds what the protocol needs.
pub fn request(method: &str, target: &str) -> http::request::Builder {
    Request::builder().method(method).uri(target)
}

impl MtlsClient {
    /// A TLS 1.3 client presenting `svid` (sent as given, never checked), trusting `roots`
    /// (CA certificates, PEM), verifying the server as [`SERVER_NAME`], offering `alpn`.
    pub fn new(svid: Option<&IssuedSvid>, roots: &[String], alpn: Alpn) -> MtlsClient {
        MtlsClient::with_versions(svid, roots, alpn, &[&rustls::version::TLS13])
    }

    /// Like [`MtlsClient::new`] with the given TLS versions, e.g. `&[&rustls::version::TLS12]`.
    pub fn with_versions(
        svid: Option<&IssuedSvid>,
        roots: &[String],
        alpn: Alpn,
        versions: &[&'static SupportedProtocolVersion],
    ) -> MtlsClient {
        let builder = ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(root_store(roots));
        let mut config = match svid {
            Some(svid) => builder.with_client_cert_resolver(Arc::new(client_cert(svid))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.protocols();
        MtlsClient {
            config: Arc::new(config),
        }
    }

    /// TCP connect and TLS handshake, then an HTTP/1.1 or h2 connection by negotiated ALPN.
    ///
    /// In TLS 1.3 the server checks our certificate after the client has finished, so a
    /// rejected certificate may surface only as an `Err` from the first [`Conn::send`]:
    /// assert that "`connect` or the first `send` fails".
    pub async fn connect(&self, addr: SocketAddr) -> Result<Conn, ClientError> {
        let tls = tls_connect(addr, self.config.clone()).await?;
        let session = tls.get_ref().1;
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let leaf = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| leaf.to_vec());
        let mut conn = Conn::over(tls, alpn, "https").await?;
        conn.peer_leaf = leaf;
        Ok(conn)
    }

    /// TCP connect and TLS handshake only: the stream, for bytes that are not HTTP (L4
    /// listeners). ALPN as configured.
    pub async fn stream(&self, addr: SocketAddr) -> Result<TlsStream<TcpStream>, ClientError> {
        tls_connect(addr, self.config.clone()).await
    }

    /// One `GET target` on a fresh connection.
    pub async fn get(&self, addr: SocketAddr, target: &str) -> Result<Reply, ClientError> {
        self.connect(addr).await?.get(target).await
    }

    /// Connects with ALPN `http/1.1`, writes `bytes` verbatim and returns whatever comes back
    /// until the server closes or [`RAW_DEADLINE`] passes (send `Connection: close` to end
    /// sooner). Panics if the TLS handshake fails.
    pub async fn raw(&self, addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = Alpn::H1.protocols();
        let tls = tls_connect(addr, Arc::new(config)).await.unwrap();
        exchange(tls, bytes).await
    }
}

impl PlainClient {
    /// A plain HTTP/1.1 connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Conn, ClientError> {
        Conn::over(tcp_connect(addr).await?, None, "http").await
    }

    /// One `GET target` on a fresh connection; `target` may be absolute-form.
    pub async fn get(addr: SocketAddr, target: &str) -> Result<Reply, ClientError> {
        PlainClient::connect(addr).await?.get(target).await
    }

    /// Writes `bytes` verbatim over TCP and returns whatever comes back until the server
    /// closes or [`RAW_DEADLINE`] passes. Panics if the connection is refused.
    pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        exchange(tcp_connect(addr).await.unwrap(), bytes).await
    }
}

impl Conn {
    /// Sends `req` and reads the whole response. On h2 an origin-form URI gets the scheme
    /// and `:authority` (the `Host` header, else [`SERVER_NAME`]); on HTTP/1.1 the URI is
    /// written as given and a missing `Host` is set from the URI's authority or
    /// [`SERVER_NAME`].
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
        let req = self.prepare(req)?;
        let exchange = async {
            let response = self.round_trip(req).await.map_err(request_error)?;
            Reply::read(response).await
        };
        timeout(DEADLINE, exchange)
            .await
            .map_err(|_| ClientError::Timeout("request"))?
    }

    /// Sends `GET target` with an empty body.
    pub async fn get(&mut self, target: &str) -> Result<Reply, ClientError> {
        self.send(request("GET", target).body(Full::default()).unwrap())
            .await
    }

    /// The server's leaf certificate (DER) as presented in the handshake; `None` on plain TCP.
    pub fn peer_leaf(&self) -> Option<&[u8]> {
        self.peer_leaf.as_deref()
    }

    /// The ALPN protocol the server chose; `None` for plain TCP or no agreement.
    pub fn negotiated_alpn(&self) -> Option<Vec<u8>> {
        self.alpn.clone()
    }

    /// Whether the connection is closed (by either side), e.g. after a policy revocation.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(sender) => sender.is_closed(),
            Sender::H2(sender) => sender.is_closed(),
        }
    }

    /// Starts HTTP over `io`: h2 when ALPN says so, HTTP/1.1 otherwise; spawns the driver.
    async fn over<IO>(
        io: IO,
        alpn: Option<Vec<u8>>,
        scheme: &'static str,
    ) -> Result<Conn, ClientError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let (sender, driver) = if alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(request_error)?;
            (Sender::H2(sender), tokio::spawn(drive(conn)))
        } else {
            let (sender, conn) = http1::handshake(io).await.map_err(request_error)?;
            (Sender::H1(sender), tokio::spawn(drive(conn)))
        };
        Ok(Conn {
            sender,
            alpn,
            scheme,
            driver,
            peer_leaf: None,
        })
    }

    fn prepare(&self, mut req: Request<Full<Bytes>>) -> Result<Request<Full<Bytes>>, ClientError> {
        let host = req.headers().get(HOST).cloned();
        match &self.sender {
            Sender::H2(_) if req.uri().scheme().is_none() => {
                let authority = host.unwrap_or(HeaderValue::from_static(SERVER_NAME));
                *req.uri_mut() = absolute(self.scheme, &authority, req.uri())?;
            }
            Sender::H1(_) if host.is_none() => {
                let host = req.uri().authority().map_or(SERVER_NAME, |a| a.as_str());
                let host = HeaderValue::from_str(host).map_err(request_error)?;
                req.headers_mut().insert(HOST, host);
            }
            _ => {}
        }
        Ok(req)
    }

    async fn round_trip(&mut self, req: Request<Full<Bytes>>) -> hyper::Result<Response<Incoming>> {
        match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await?;
                sender.send_request(req).await
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                sender.send_request(req).await
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Reply {
    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    async fn read(response: Response<Incoming>) -> Result<Reply, ClientError> {
        let (head, body) = response.into_parts();
        let body = body.collect().await.map_err(request_error)?.to_bytes();
        Ok(Reply {
            status: head.status,
            headers: head.headers,
            body,
            version: head.version,
        })
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "tcp connect: {e}"),
            ClientError::Handshake(e) => write!(f, "tls handshake: {e}"),
            ClientError::Request(e) => write!(f, "request: {e}"),
            ClientError::Timeout(what) => write!(f, "{what}: no answer within {DEADLINE:?}"),
        }
    }
}

impl Error for ClientError {}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H1 => vec![b"http/1.1".to_vec()],
            Alpn::H2 => vec![b"h2".to_vec()],
            Alpn::None => Vec::new(),
        }
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// Runs a hyper connection to its end; its error reaches the pending `send` instead.
async fn drive(conn: impl Future<Output = hyper::Result<()>>) {
    let _ = conn.await;
}

fn root_store(roots: &[String]) -> RootCertStore {
    let mut store = RootCertStore::empty();
    for pem in roots {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            store.add(cert.unwrap()).unwrap();
        }
    }
    store
}

/// The client certificate resolver for `svid`. `CertifiedKey::new`, not `from_der`: no
/// key/certificate consistency check, so a deliberately bad leaf goes out as given.
fn client_cert(svid: &IssuedSvid) -> SingleCertAndKey {
    let chain = CertificateDer::pem_slice_iter(svid.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(svid.key_pem.as_bytes()).unwrap();
    let key = crypto_provider()
        .key_provider
        .load_private_key(key)
        .unwrap();
    SingleCertAndKey::from(CertifiedKey::new(chain, key))
}

async fn tcp_connect(addr: SocketAddr) -> Result<TcpStream, ClientError> {
    let tcp = timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Timeout("tcp connect"))?
        .map_err(|e| ClientError::Connect(chain(&e)))?;
    tcp.set_nodelay(true).unwrap();
    Ok(tcp)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, ClientError> {
    let tcp = tcp_connect(addr).await?;
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    timeout(DEADLINE, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| ClientError::Timeout("tls handshake"))?
        .map_err(|e| ClientError::Handshake(chain(&e)))
}

/// `scheme://authority` + the path and query of `uri` (h2 needs both pseudo-headers).
fn absolute(scheme: &str, authority: &HeaderValue, uri: &Uri) -> Result<Uri, ClientError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Uri::builder()
        .scheme(scheme)
        .authority(authority.as_bytes())
        .path_and_query(path)
        .build()
        .map_err(request_error)
}

/// Writes `bytes`, then reads until EOF, an error or [`RAW_DEADLINE`].
async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, bytes: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    if stream.write_all(bytes).await.is_err() || stream.flush().await.is_err() {
        return received;
    }
    let deadline = Instant::now() + RAW_DEADLINE;
    let mut chunk = [0; 4096];
    while let Ok(Ok(n @ 1..)) = timeout_at(deadline, stream.read(&mut chunk)).await {
        received.extend_from_slice(&chunk[..n]);
    }
    received
}

fn request_error(err: impl Error) -> ClientError {
    ClientError::Request(chain(&err))
}

/// `err` and its sources, joined by ": ".
fn chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! The SPIFFE Workload API as an identity source (PRODUCT.md §12): a client of the SPIRE
//! agent's `FetchX509SVID` stream that turns every response into checked [`Credentials`].
//!
//! [`spawn`] connects to the agent's socket (`unix:` or `tcp:`), opens one HTTP/2 connection
//! (hyper, our own — no second HTTP stack), sends `FetchX509SVID` with the
//! `workload.spiffe.io: true` metadata the agent requires, and hands each response to the
//! receiver as an [`Update`]: the first SVID of the response is ours, its `bundle` is our
//! trust domain's and `federated_bundles` adds the foreign ones. A response that cannot be
//! our identity is an `Err` update (logged and counted by the receiver; the material in
//! force stays). When the stream ends or the agent is absent, it reconnects after a capped
//! exponential [`Backoff`], reset once a stream has delivered an update; it stops when the
//! shutdown fires or the receiver is gone.
//!
//! The generated code ([`pb`]) is the official `proto/workload.proto` run through
//! `tonic-prost-build` (scripts/gen-workload-api.sh); its server half serves the tests'
//! stand-in agent.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;

use super::{Bundle, Credentials, TlsError};
use crate::config::{Backoff, WorkloadEndpoint};
use crate::identity::{SpiffeId, TrustDomain};
use crate::shutdown::Shutdown;

/// Generated from `proto/workload.proto`: messages, client and server of `SpiffeWorkloadAPI`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    rustdoc::invalid_html_tags
)]
pub mod pb;

use pb::spiffe_workload_api_client::SpiffeWorkloadApiClient;

/// The metadata key every Workload API call must carry (SPIFFE Workload Endpoint §6: the
/// agent refuses calls without it, so that a browser or a confused proxy cannot call it).
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// How long a connection attempt to the agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on the agent connection: a hung agent (or a socket nobody closes) is found
/// within interval + timeout and reconnected, as a closed one is at once.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A response larger than this is refused by the decoder (tonic's default, stated).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// One `FetchX509SVID` response: our checked credentials, or why they are refused.
pub type Update = Result<Credentials, TlsError>;

/// The receiving end of the updates [`spawn`] produces.
#[derive(Debug)]
pub struct SvidUpdates(mpsc::Receiver<Update>);

impl SvidUpdates {
    /// The next update; `None` once the client has stopped.
    pub async fn next(&mut self) -> Option<Update> {
        self.0.recv().await
    }
}

/// Starts the client of `endpoint`; it runs until `shutdown` fires or the [`SvidUpdates`]
/// are dropped.
pub fn spawn(
    endpoint: WorkloadEndpoint,
    backoff: Backoff,
    shutdown: Shutdown,
) -> (SvidUpdates, JoinHandle<()>) {
    // Small: a receiver that falls behind holds the stream, so stale SVIDs do not pile up.
    let (tx, rx) = mpsc::channel(2);
    let task = tokio::spawn(run(endpoint, backoff, tx, shutdown));
    (SvidUpdates(rx), task)
}

async fn run(
    endpoint: WorkloadEndpoint,
    backoff: Backoff,
    tx: mpsc::Sender<Update>,
    mut shutdown: Shutdown,
) {
    let mut delay = backoff.initial;
    loop {
        let outcome = tokio::select! {
            outcome = stream_once(&endpoint, &tx) => outcome,
            () = shutdown.wait() => return,
        };
        match outcome {
            Ended::ReceiverGone => return,
            Ended::Closed { delivered } => {
                if delivered {
                    delay = backoff.initial;
                }
                tracing::warn!(
                    endpoint = %endpoint,
                    retry_in = ?delay,
                    "SPIFFE Workload API stream ended; reconnecting (the material in force stays \
                     until it expires)"
                );
            }
            Ended::Failed { delivered, error } => {
                if delivered {
                    delay = backoff.initial;
                }
                tracing::warn!(
                    endpoint = %endpoint,
                    %error,
                    retry_in = ?delay,
                    "SPIFFE Workload API unavailable; retrying (the material in force stays \
                     until it expires)"
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.wait() => return,
        }
        delay = (delay * 2).min(backoff.max);
    }
}

/// How one connection's stream ended.
enum Ended {
    /// Nobody listens for updates any more.
    ReceiverGone,
    /// The agent ended the stream cleanly.
    Closed { delivered: bool },
    /// No connection, a refused call, or a broken stream.
    Failed { delivered: bool, error: String },
}

/// One HTTP/2 connection to the agent and the generated client on it; the connection is
/// closed when this is dropped.
pub struct AgentConnection {
    client: SpiffeWorkloadApiClient<AgentService>,
    _driver: AbortOnDrop<()>,
}

impl AgentConnection {
    /// The `SpiffeWorkloadAPI` client on this connection.
    pub fn client(&mut self) -> &mut SpiffeWorkloadApiClient<AgentService> {
        &mut self.client
    }
}

/// Connects to the agent at `endpoint` (within [`CONNECT_TIMEOUT`]) and completes the HTTP/2
/// handshake, with keep-alive pings so that a hung agent is noticed.
///
/// # Errors
/// What failed, in words for the log.
pub async fn connect(endpoint: &WorkloadEndpoint) -> Result<AgentConnection, String> {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        match endpoint {
            WorkloadEndpoint::Unix(path) => UnixStream::connect(path).await.map(boxed),
            WorkloadEndpoint::Tcp(addr) => TcpStream::connect(addr).await.map(boxed),
        }
    })
    .await;
    let io = match connected {
        Ok(Ok(io)) => io,
        Ok(Err(error)) => return Err(format!("cannot connect: {error}")),
        Err(_) => return Err(format!("cannot connect within {CONNECT_TIMEOUT:?}")),
    };
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let (sender, connection) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|error| format!("HTTP/2 handshake: {error}"))?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        // Its end (or error) shows as the stream's end; nothing to report here.
        let _ = connection.await;
    }));
    // The agent ignores the authority; gRPC over a Unix socket conventionally says localhost.
    let origin = http::Uri::from_static("http://localhost");
    let client = SpiffeWorkloadApiClient::with_origin(AgentService(sender), origin)
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    Ok(AgentConnection {
        client,
        _driver: driver,
    })
}

/// A `FetchX509SVID` request with the security metadata the agent requires.
pub fn fetch_request() -> tonic::Request<pb::X509svidRequest> {
    let mut request = tonic::Request::new(pb::X509svidRequest {});
    request
        .metadata_mut()
        .insert(SECURITY_HEADER, MetadataValue::from_static("true"));
    request
}

async fn stream_once(endpoint: &WorkloadEndpoint, tx: &mpsc::Sender<Update>) -> Ended {
    let failed = |error: String| Ended::Failed {
        delivered: false,
        error,
    };
    let mut connection = match connect(endpoint).await {
        Ok(connection) => connection,
        Err(error) => return failed(error),
    };
    let mut stream = match connection.client().fetch_x509svid(fetch_request()).await {
        Ok(response) => response.into_inner(),
        Err(status) => return failed(describe(&status)),
    };
    let mut delivered = false;
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return Ended::Closed { delivered },
            Err(status) => {
                return Ended::Failed {
                    delivered,
                    error: describe(&status),
                };
            }
        };
        // Parsing and checking is a few hundred microseconds, once per rotation.
        let update = credentials_from(&message, SystemTime::now());
        if tx.send(update).await.is_err() {
            return Ended::ReceiverGone;
        }
        delivered = true;
    }
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Checks one response: its first SVID is ours (`spiffe_id` must be the leaf's URI SAN), with
/// our trust domain's `bundle`; each `federated_bundles` entry, keyed by the foreign trust
/// domain (`spiffe://name` or `name`), adds that trust domain. Every certificate and the key
/// pass the same checks as files do.
///
/// # Errors
/// [`TlsError::BadSvidResponse`] for a response that is not well formed, else the
/// [`Credentials`] check that failed.
pub fn credentials_from(response: &pb::X509svidResponse, now: SystemTime) -> Update {
    let bad = |problem: String| TlsError::BadSvidResponse { problem };
    let svid = response
        .svids
        .first()
        .ok_or_else(|| bad("the response carries no X509-SVID".to_owned()))?;
    let id = SpiffeId::parse(&svid.spiffe_id)
        .map_err(|e| bad(format!("spiffe_id `{}`: {e}", svid.spiffe_id)))?;
    let chain = certificates(&svid.x509_svid).map_err(|e| bad(format!("x509_svid: {e}")))?;
    let own_td = TrustDomain::parse(id.trust_domain())
        .map_err(|e| bad(format!("spiffe_id `{}`: {e}", svid.spiffe_id)))?;
    let mut bundles = vec![bundle(own_td.clone(), "bundle", &svid.bundle)?];
    let federated: BTreeMap<&str, &[u8]> = response
        .federated_bundles
        .iter()
        .map(|(name, der)| (name.as_str(), der.as_ref()))
        .collect();
    for (name, der) in federated {
        let td = TrustDomain::parse(name.strip_prefix("spiffe://").unwrap_or(name))
            .map_err(|e| bad(format!("federated_bundles key `{name}`: {e}")))?;
        if td == own_td {
            // Ours comes with the SVID; a second copy would make it unclear which vouches.
            tracing::warn!(trust_domain = %td, "federated bundle for our own trust domain ignored");
            continue;
        }
        bundles.push(bundle(td, "federated_bundles", der)?);
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.x509_svid_key.clone()));
    let credentials = Credentials::from_der(
        ("<workload API x509_svid>", chain),
        ("<workload API x509_svid_key>", key),
        bundles,
        now,
    )?;
    if credentials.id() != &id {
        return Err(bad(format!(
            "spiffe_id says {id}, but the certificate's URI SAN is {}",
            credentials.id()
        )));
    }
    Ok(credentials)
}

fn bundle(trust_domain: TrustDomain, field: &str, der: &[u8]) -> Result<Bundle, TlsError> {
    let problem = |what: String| TlsError::BadSvidResponse {
        problem: format!("{field} for {trust_domain}: {what}"),
    };
    let certs = certificates(der).map_err(problem)?;
    if certs.is_empty() {
        return Err(problem("holds no CA certificate".to_owned()));
    }
    Ok(Bundle {
        source: format!("<workload API {field} {trust_domain}>"),
        trust_domain,
        certs,
    })
}

/// Splits concatenated DER certificates (the Workload API's encoding of chains and
/// bundles), each parsed whole.
fn certificates(mut der: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    while !der.is_empty() {
        let (rest, _) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("certificate {} is not DER X.509: {e}", certs.len() + 1))?;
        let (one, _) = der.split_at(der.len() - rest.len());
        certs.push(CertificateDer::from(one.to_vec()));
        der = rest;
    }
    Ok(certs)
}

/// Either socket type, for one HTTP/2 connection.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

fn boxed(io: impl Io) -> Box<dyn Io> {
    Box::new(io)
}

/// The agent connection as the `tower` service the generated client calls.
#[derive(Clone)]
pub struct AgentService(http2::SendRequest<tonic::body::Body>);

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for AgentService {
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

/// Aborts the task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

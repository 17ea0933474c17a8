//! One HTTP/2 connection to the SPIRE agent's socket (hyper, our own) and the generated
//! `SpiffeWorkloadAPI` client on it, with the security metadata every call must carry.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;

use super::pb;
use super::pb::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use crate::config::WorkloadEndpoint;

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

/// Connects to the agent at `endpoint` (within `CONNECT_TIMEOUT`) and completes the HTTP/2
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

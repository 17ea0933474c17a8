//! The `ext_authz` listener (docs/envoy.md): plain-text gRPC over HTTP/2 on a loopback TCP
//! address or a Unix socket, served by our own hyper (no tonic transport: one HTTP stack,
//! and nothing of aws-lc-rs) with the generated `Authorization` service around a
//! [`Checker`]. Each connection is one task on the sidecar's main event loop; on shutdown
//! the listener stops accepting, each connection gets an HTTP/2 GOAWAY and up to
//! `limits.drain_timeout` to finish its checks, and a Unix socket file is removed.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tonic::codegen::Service;

use super::auth::authorization_server::{Authorization, AuthorizationServer};
use super::auth::{CheckRequest, CheckResponse};
use super::check::Checker;
use crate::config::{ExtAuthzListen, Limits};
use crate::shutdown::Shutdown;
use crate::telemetry::decision_log::Direction;

/// The listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("ext_authz.listen {listen}: {source}")]
pub struct StartError {
    /// The configured address.
    pub listen: String,
    /// What the OS said.
    pub source: io::Error,
}

/// Where the Check service ended up listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAt {
    /// The bound TCP address (the OS's port when the config said 0).
    Tcp(SocketAddr),
    /// The socket file.
    Unix(PathBuf),
}

/// The bound, serving `ext_authz` listener.
#[derive(Debug)]
pub struct ExtAuthzServer {
    /// Where it listens.
    pub bound: BoundAt,
    /// Its accept loop; ends once the shutdown fired and its connections drained.
    pub task: JoinHandle<()>,
}

/// The generated service's handler: every call is one [`Checker::check`].
struct Handler(Checker);

#[tonic::async_trait]
impl Authorization for Handler {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.0.check(request.get_ref())))
    }
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl ExtAuthzServer {
    /// Binds `listen` and serves `checker` on it until `shutdown`.
    ///
    /// # Errors
    /// [`StartError`] when the address cannot be bound (in use, no permission, a socket
    /// path whose folder is missing or that names something other than a socket).
    pub async fn start(
        listen: &ExtAuthzListen,
        checker: Checker,
        limits: Limits,
        shutdown: Shutdown,
    ) -> Result<Self, StartError> {
        let error = |source| StartError {
            listen: listen.to_string(),
            source,
        };
        let (socket, bound) = match listen {
            ExtAuthzListen::Tcp(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(error)?;
                let at = listener.local_addr().unwrap_or(*addr);
                (Socket::Tcp(listener), BoundAt::Tcp(at))
            }
            ExtAuthzListen::Unix(path) => {
                remove_stale_socket(path).map_err(error)?;
                let listener = UnixListener::bind(path).map_err(error)?;
                (
                    Socket::Unix(listener, path.clone()),
                    BoundAt::Unix(path.clone()),
                )
            }
        };
        let service = AuthorizationServer::new(Handler(checker.clone()));
        let task = tokio::spawn(serve(socket, service, checker, limits, shutdown));
        Ok(Self { bound, task })
    }
}

/// A socket file left by a sidecar that did not exit cleanly is replaced; anything else at
/// the path (a regular file, a folder) is an error, never deleted.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a socket; not replacing it",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

async fn serve(
    socket: Socket,
    service: AuthorizationServer<Handler>,
    checker: Checker,
    limits: Limits,
    mut shutdown: Shutdown,
) {
    // limits.max_connections, as every listener: more wait in the accept backlog (Envoy
    // opens one or a few per worker thread).
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = shutdown.wait() => break,
        };
        let Ok(slot) = slot else {
            break;
        };
        let accepted = tokio::select! {
            accepted = accept(&socket) => accepted,
            () = shutdown.wait() => break,
        };
        // Reap finished connections so the set does not grow with the process's life.
        while connections.try_join_next().is_some() {}
        let io = match accepted {
            Ok(io) => io,
            Err(error) => {
                tracing::warn!(%error, "ext_authz accept failed");
                // EMFILE and the like: give the process a moment instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let guard = checker.metrics().connection(Direction::ExtAuthz);
        let (service, shutdown) = (service.clone(), shutdown.clone());
        connections.spawn(async move {
            match io {
                Accepted::Tcp(io) => connection(io, service, limits, shutdown).await,
                Accepted::Unix(io) => connection(io, service, limits, shutdown).await,
            }
            drop((guard, slot));
        });
    }
    if let Err(error) = socket_cleanup(socket) {
        tracing::warn!(%error, "ext_authz socket file not removed");
    }
    while connections.join_next().await.is_some() {}
}

/// Closes the listener; a Unix socket's file goes with it.
fn socket_cleanup(socket: Socket) -> io::Result<()> {
    match socket {
        Socket::Tcp(_) => Ok(()),
        Socket::Unix(listener, path) => {
            drop(listener);
            std::fs::remove_file(path)
        }
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(socket: &Socket) -> io::Result<Accepted> {
    match socket {
        Socket::Tcp(listener) => {
            let (stream, _) = listener.accept().await?;
            // Checks are small request/response pairs: do not let Nagle hold them back.
            let _ = stream.set_nodelay(true);
            Ok(Accepted::Tcp(stream))
        }
        Socket::Unix(listener, _) => Ok(Accepted::Unix(listener.accept().await?.0)),
    }
}

/// One HTTP/2 connection from Envoy, closed gracefully when `shutdown` fires.
async fn connection<IO>(
    io: IO,
    service: AuthorizationServer<Handler>,
    limits: Limits,
    mut shutdown: Shutdown,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: http::Request<Incoming>| {
        let mut service = service.clone();
        async move { Ok::<_, Infallible>(service.call(request).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.h2_keep_alive));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = shutdown.wait() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.drain, conn).await;
}

//! The accept loop shared by both listeners (mini-redis' shape): it takes a bound listener and
//! a [`Shutdown`], spawns one task per connection, and on shutdown stops accepting, then waits
//! for open connections to finish their in-flight requests (PRODUCT.md §6: "SIGTERM: stop
//! accepting, drain in-flight requests, exit").

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};

use super::respond::Body;
use crate::shutdown::Shutdown;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts on `listener` until `shutdown` fires, handing each connection to `connection`
/// with a [`Watcher`] that the connection must use for its HTTP serving; then drains for at
/// most `drain`.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    mut shutdown: Shutdown,
    drain: Duration,
    connection: F,
) where
    F: Fn(TcpStream, SocketAddr, Watcher) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    // Small request/response exchanges: never wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, remote, graceful.watcher()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = shutdown.wait() => break,
        }
    }
    drop(listener);
    tracing::debug!(connections = graceful.count(), "draining");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?drain, "drain timed out; closing the remaining connections");
    }
}

/// Serves HTTP on one accepted connection until it closes or the drain ends it: HTTP/2 or
/// HTTP/1.1 as negotiated by ALPN, and without ALPN (plain listener, or a TLS client that
/// offered none) by sniffing the HTTP/2 preface.
pub async fn http<I, S>(io: I, alpn: Option<&[u8]>, service: S, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Body>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = match alpn {
        Some(b"h2") => builder.http2_only(),
        Some(b"http/1.1") => builder.http1_only(),
        _ => builder,
    };
    let connection = builder.serve_connection(io, service).into_owned();
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "connection closed with an error");
    }
}

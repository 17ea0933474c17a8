//! The HTTP serving of one accepted connection (docs/security.md bounds): HTTP/1.1 or HTTP/2,
//! request heads limited in size (431) and in time (slowloris), idle connections closed,
//! HTTP/2 streams capped and rapid resets bounded. Shutdown, idleness and a cut (its peer was
//! revoked, docs/runbook.md) close it gracefully — HTTP/2 GOAWAY, HTTP/1.1 after the in-flight
//! response — a cut within [`CUT_GRACE`]. Its reads are charged to its task's budget by the
//! byte (`super::fair`), so a peer flooding cheap frames yields the event loop to the other
//! connections every 64 KiB. The accept loop that hands connections here is [`super::serve`].

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::fair::Fair;
use super::idle::Activity;
use super::respond::Body;
use super::serve::Slot;
use crate::config::Limits;

/// HTTP/2 resets a client may cause before the connection is closed (CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;

/// How long a cut connection's in-flight requests may take before it is dropped: a revoked
/// peer's connection is closed within 1 s of the publish (docs/runbook.md).
pub const CUT_GRACE: Duration = Duration::from_millis(500);

/// Serves HTTP on one accepted connection until it closes: HTTP/2 or HTTP/1.1 as negotiated
/// by ALPN, and without ALPN (plain listener, or a TLS client that offered none) by sniffing
/// the HTTP/2 preface. Shutdown and idleness end it gracefully (in-flight requests finish);
/// so does `cut` resolving, but in-flight requests get at most [`CUT_GRACE`].
pub async fn http<I, S>(
    io: I,
    alpn: Option<&[u8]>,
    service: S,
    slot: Slot,
    limits: &Limits,
    cut: impl Future<Output = ()> + Send,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Body>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = builder(limits, alpn);
    let activity = Activity::new();
    let io = activity.track(TokioIo::new(Fair::new(io)));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::pin!(cut);
    // Armed by the cut only; until then it never fires.
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let mut shutdown = slot.shutdown().clone();
    let (mut closing, mut cutting) = (false, false);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection closed with an error");
                }
                break;
            }
            () = shutdown.wait(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = activity.idle_for(limits.idle), if !closing => {
                tracing::debug!(idle = ?limits.idle, "closing an idle connection");
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            // Also while draining: the drain may wait far longer than a cut may.
            () = &mut cut, if !cutting => {
                tracing::debug!("peer revoked; closing the connection");
                if !closing {
                    connection.as_mut().graceful_shutdown();
                }
                grace.as_mut().reset(Instant::now() + CUT_GRACE);
                (closing, cutting) = (true, true);
            }
            () = &mut grace, if cutting => {
                tracing::debug!(grace = ?CUT_GRACE, "cut connection still busy; dropping it");
                break;
            }
        }
    }
    drop(slot);
}

/// hyper's connection builder with our limits, for the protocol ALPN chose.
fn builder(limits: &Limits, alpn: Option<&[u8]>) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .keep_alive_interval(Some(limits.h2_keep_alive))
        .keep_alive_timeout(limits.h2_keep_alive);
    match alpn {
        Some(b"h2") => builder.http2_only(),
        Some(b"http/1.1") => builder.http1_only(),
        _ => builder,
    }
}

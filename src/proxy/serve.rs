//! The accept loop shared by both listeners (mini-redis' shape), which hands each connection
//! to the event loop holding the fewest of that listener's connections ([`crate::workers`]),
//! and the HTTP serving of one connection, with the bounds of PRODUCT.md §4: at most `max_connections` open per listener
//! (further clients wait in the accept backlog), request heads limited in size (431) and in
//! time (slowloris), idle connections closed, HTTP/2 streams capped and rapid resets bounded.
//! On shutdown a listener stops accepting, asks every connection to finish its in-flight
//! requests and close, and waits for them (PRODUCT.md §6: "SIGTERM: stop accepting, drain").

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::context::Context;
use super::respond::Body;
use crate::config::Limits;
use crate::shutdown::Shutdown;
use crate::telemetry::decision_log::Direction;
use crate::telemetry::metrics::ConnectionGuard;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// HTTP/2 resets a client may cause before the connection is closed (CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;

/// A data-plane listener (inbound or outbound): what [`run`] needs to serve it.
pub trait Listener: Send + Sync + 'static {
    /// Which side of the sidecar it is (metrics, decision log).
    const DIRECTION: Direction;

    /// The sidecar's shared state.
    fn context(&self) -> &Arc<Context>;

    /// Serves one accepted connection until it closes.
    fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        remote: SocketAddr,
        slot: Slot,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// One listener's state on each event loop ([`crate::workers`]): where its connections are
/// served, and how many of them each loop holds.
pub struct Lanes<L> {
    lanes: Vec<Lane<L>>,
}

struct Lane<L> {
    /// `None`: the loop that accepts (loop 0).
    runtime: Option<Handle>,
    state: Arc<L>,
    /// Its open connections (`segward_loop_connections_active`).
    open: Gauge,
}

impl<L: Listener> Lanes<L> {
    /// `states` in loop order, as [`crate::workers::Workers::loops`] lists the loops.
    pub fn new(states: impl IntoIterator<Item = (Option<Handle>, Arc<L>)>) -> Self {
        let lanes = states
            .into_iter()
            .enumerate()
            .map(|(index, (runtime, state))| Lane {
                open: state
                    .context()
                    .metrics
                    .loop_connections(L::DIRECTION, index),
                runtime,
                state,
            })
            .collect();
        Self { lanes }
    }
}

impl<L> Lanes<L> {
    /// The lane with the fewest open connections; among equals, the first from `turn` on
    /// (so that short connections rotate over idle loops).
    fn pick(&self, turn: usize) -> Option<&Lane<L>> {
        let n = self.lanes.len();
        (0..n)
            .map(|i| &self.lanes[(turn + i) % n])
            .min_by_key(|lane| lane.open.get())
    }
}

/// Accepts connections on `listener` until `shutdown`, hands each to the least-loaded lane
/// with its [`Slot`], then waits up to `limits.drain` for open connections to finish.
pub async fn run<L: Listener>(lanes: Lanes<L>, listener: TcpListener, mut shutdown: Shutdown) {
    let Some(first) = lanes.lanes.first() else {
        return;
    };
    let cx = first.state.context().clone();
    let slots = Arc::new(Semaphore::new(cx.limits.max_connections));
    let mut turn = 0_usize;
    loop {
        // At the limit, stop accepting until a connection closes.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.wait() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Small request/response exchanges: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        turn = turn.wrapping_add(1);
        let Some(lane) = lanes.pick(turn) else {
            break;
        };
        let slot = Slot {
            _permit: permit,
            _open: cx.metrics.connection(L::DIRECTION),
            _lane: ConnectionGuard::open(lane.open.clone()),
            shutdown: shutdown.clone(),
        };
        let state = lane.state.clone();
        match &lane.runtime {
            None => {
                tokio::spawn(state.connection(stream, remote, slot));
            }
            Some(runtime) => hand_over(runtime, state, stream, remote, slot),
        }
    }
    drop(listener);
    // Every open connection holds a permit: all permits back means all drained.
    let all = u32::try_from(cx.limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(cx.limits.drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(drain = ?cx.limits.drain, "drain timed out; closing the remaining connections");
    }
}

/// Serves `stream` on another loop: the socket leaves this loop's reactor and joins that
/// one's there.
fn hand_over<L: Listener>(
    runtime: &Handle,
    state: Arc<L>,
    stream: TcpStream,
    remote: SocketAddr,
    slot: Slot,
) {
    let failed = move |error: io::Error| {
        tracing::warn!(%remote, %error, "handing a connection to its event loop failed");
    };
    match stream.into_std() {
        Ok(stream) => {
            runtime.spawn(async move {
                match TcpStream::from_std(stream) {
                    Ok(tcp) => state.connection(tcp, remote, slot).await,
                    Err(error) => failed(error),
                }
            });
        }
        Err(error) => failed(error),
    }
}

/// One accepted connection's place under the listener's limit; held until it closes.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _open: ConnectionGuard,
    _lane: ConnectionGuard,
    shutdown: Shutdown,
}

/// Serves HTTP on one accepted connection until it closes: HTTP/2 or HTTP/1.1 as negotiated
/// by ALPN, and without ALPN (plain listener, or a TLS client that offered none) by sniffing
/// the HTTP/2 preface. Shutdown and idleness end it gracefully (in-flight requests finish).
pub async fn http<I, S>(io: I, alpn: Option<&[u8]>, service: S, slot: Slot, limits: &Limits)
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
    let builder = builder(limits, alpn);
    let activity = Activity::new();
    let io = Tracked {
        io,
        activity: activity.clone(),
    };
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut shutdown = slot.shutdown.clone();
    let mut closing = false;
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

/// When a connection last moved a byte.
#[derive(Debug, Clone)]
struct Activity {
    epoch: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = self.epoch.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// An I/O object that records its activity.
struct Tracked<I> {
    io: I,
    activity: Activity,
}

impl<I> Tracked<I> {
    fn note<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Ok(_)) = &poll {
            self.activity.touch();
        }
        poll
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        self.note(poll)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(open: &[i64]) -> Lanes<()> {
        let lanes = open
            .iter()
            .map(|&n| {
                let gauge = Gauge::default();
                gauge.set(n);
                Lane {
                    runtime: None,
                    state: Arc::new(()),
                    open: gauge,
                }
            })
            .collect();
        Lanes { lanes }
    }

    fn picked(lanes: &Lanes<()>, turn: usize) -> usize {
        let lane = lanes.pick(turn).unwrap();
        lanes
            .lanes
            .iter()
            .position(|l| std::ptr::eq(l, lane))
            .unwrap()
    }

    #[test]
    fn the_loop_with_fewest_connections_gets_the_next_one() {
        let busy = lanes(&[2, 0, 1]);
        for turn in 0..6 {
            assert_eq!(picked(&busy, turn), 1);
        }
    }

    #[test]
    fn equally_loaded_loops_take_turns() {
        let idle = lanes(&[0, 0, 0]);
        let order: Vec<_> = (0..6).map(|turn| picked(&idle, turn)).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        assert!(lanes(&[]).pick(3).is_none());
    }
}

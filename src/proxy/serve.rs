//! The accept loop shared by every listener (mini-redis' shape): at most `max_connections`
//! open per listener (further clients wait in the accept backlog), each accepted connection
//! handed to the event loop holding the fewest of that listener's connections
//! ([`crate::workers`]) with its [`Slot`]. What a connection carries is the listener's
//! business ([`super::connection`] serves HTTP, [`super::tunnel`] carries TCP). On shutdown a listener stops accepting and
//! waits for its connections to drain (docs/operations.md: "SIGTERM: stop accepting, drain").

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::context::Context;
use crate::config::Limits;
use crate::shutdown::Shutdown;
use crate::telemetry::decision_log::Direction;
use crate::telemetry::metrics::ConnectionGuard;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
    while let Some((permit, stream, remote)) = accept(&listener, &slots, &mut shutdown).await {
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
        lane.serve(stream, remote, slot);
    }
    drop(listener);
    drain(&slots, &cx.limits).await;
}

/// The next accepted connection with its place under the limit (at the limit, nothing is
/// accepted until a connection closes); `None` once `shutdown` fires.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut Shutdown,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.ok()?,
            () = shutdown.wait() => return None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => return None,
        };
        match accepted {
            Ok((stream, remote)) => return Some((permit, stream, remote)),
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Waits up to `limits.drain` for the open connections to finish: each holds a permit, so
/// all permits back means all drained.
async fn drain(slots: &Semaphore, limits: &Limits) {
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drain = limits.drain;
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(?drain, "drain timed out; closing the remaining connections");
    }
}

impl<L: Listener> Lane<L> {
    /// Serves an accepted connection on this lane's event loop.
    fn serve(&self, stream: TcpStream, remote: SocketAddr, slot: Slot) {
        let state = self.state.clone();
        match &self.runtime {
            None => {
                tokio::spawn(state.connection(stream, remote, slot));
            }
            Some(runtime) => hand_over(runtime, state, stream, remote, slot),
        }
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

impl Slot {
    /// The listener's drain signal: a connection finishes its in-flight work and closes.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
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

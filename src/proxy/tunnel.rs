//! One TCP connection's life on either side (docs/l4.md), after its identities are
//! known: decide it once on the policy snapshot of now (no method, no path), and only if it
//! is let through dial the far side — the workload or the destination — and copy bytes both
//! ways, carrying half-close and respecting backpressure, until both sides are done, it idles
//! past `limits.idle_timeout`, a published policy decides it again and denies it, or the
//! drain ends. One decision-log line at open, one at close (bytes, duration, close reason).
//! The listeners that reach here are [`super::tcp`]'s. The sidecar's own side of a connection
//! is the own SPIFFE ID of the snapshot each decision is made on: after a rotation to another
//! ID (docs/spire.md) the publish decides every open connection again as the new ID.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::context::Context;
use super::idle::Activity;
use super::serve::Slot;
use crate::config::Mode;
use crate::detect::Target;
use crate::identity::SpiffeId;
use crate::live::{PolicyChanges, Snapshot};
use crate::policy::{Decision, Reason, Verdict};
use crate::telemetry::decision_log::{self, ConnectionRecord, Direction};

/// Each direction's copy buffer: large enough for a long stream to move in big writes.
const BUFFER: usize = 64 * 1024;

/// Why a tunnel closed, as the decision log and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Both sides finished (each half-closed, then the other).
    Finished,
    /// A side failed (reset, broken pipe, TLS error).
    Broken,
    /// No byte moved for `limits.idle_timeout`.
    Idle,
    /// A published policy decided it again and denied it.
    PolicyRevoked,
    /// The sidecar is stopping and the drain timeout passed.
    Shutdown,
    /// The workload or destination could not be reached (refused, or connect timeout).
    UpstreamConnect,
    /// The destination's mTLS handshake failed (it did not prove its SPIFFE ID, …).
    UpstreamTls,
}

impl Close {
    /// The bounded word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Broken => "broken",
            Self::Idle => "idle-timeout",
            Self::PolicyRevoked => "policy-revoked",
            Self::Shutdown => "shutdown",
            Self::UpstreamConnect => "upstream-connect",
            Self::UpstreamTls => "upstream-tls",
        }
    }
}

/// A decision about the connection, owned so that it outlives the snapshot that made it.
struct Decided {
    decision: &'static str,
    reason: &'static str,
    rule: Option<String>,
    version: String,
    /// The own ID the decision was made as.
    own: SpiffeId,
}

impl Decided {
    fn of(verdict: &Verdict<'_>, policy: &Snapshot) -> Self {
        Self {
            decision: verdict.decision.as_str(),
            reason: verdict.reason.as_str(),
            rule: verdict.rule.map(str::to_owned),
            version: policy.version().to_owned(),
            own: policy.own_id().clone(),
        }
    }

    fn rule_label(&self) -> &str {
        self.rule.as_deref().unwrap_or(self.reason)
    }
}

/// The parties of one TCP connection and where it is recorded.
pub struct Parties<'a> {
    /// The sidecar's shared state.
    pub cx: &'a Context,
    /// Inbound (peer → workload: the peer is the source, this sidecar the destination) or
    /// outbound (app → destination: this sidecar is the source, the peer the destination).
    pub direction: Direction,
    /// The other side: the authenticated client (inbound) or the destination (outbound).
    /// This sidecar's side is the own ID of the snapshot each decision is made on.
    pub peer: &'a SpiffeId,
}

impl Parties<'_> {
    /// (source, destination) with `own` as this sidecar's side.
    fn ids<'s>(&'s self, own: &'s SpiffeId) -> (&'s SpiffeId, &'s SpiffeId) {
        match self.direction {
            // A tunnel is never an ext_authz check; that side's peer is a source, as inbound.
            Direction::Inbound | Direction::ExtAuthz => (self.peer, own),
            Direction::Outbound => (own, self.peer),
        }
    }
}

/// Serves one connection whose parties are known: decide, then (if let through) `dial` and
/// copy. `changes` was taken before the handshake, so a publish during it is seen; `client`
/// is the accepted side, `dial` is not started unless the connection is allowed.
pub async fn run<C, U>(
    parties: Parties<'_>,
    changes: PolicyChanges,
    client: C,
    dial: impl Future<Output = Result<U, Close>>,
    slot: Slot,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let id = parties.cx.ids.fresh();
    let record = Recorder {
        parties: &parties,
        id: id.to_str().unwrap_or("-"),
        started,
        latest: Mutex::new(None),
    };
    // 1. Decide on the snapshot of now; nothing is dialed before.
    let Some(opened) = record.open() else {
        // Dropping `client` closes it; the far side never saw a byte, nor a connection.
        return;
    };

    // 2. Dial the far side.
    let upstream = match dial.await {
        Ok(upstream) => upstream,
        Err(close) => {
            let metrics = &parties.cx.metrics;
            metrics.upstream_error(parties.direction, close.as_str());
            record.close(&opened, close, (0, 0));
            return;
        }
    };

    // 3. Copy until done, idle, denied by a new policy, or drained.
    let (close, decided, bytes) = carry(&record, changes, client, upstream, opened, &slot).await;

    // 4. Count and log the close.
    record.finish(close, decided, bytes);
    drop(slot);
}

/// Copies bytes both ways until both sides finish, no byte moves for `limits.idle`, a
/// published policy denies the connection, or the drain ends: why it closed, the decision
/// it closed under (the denying one if a publish cut it), and the client's bytes (in, out).
async fn carry<C, U>(
    record: &Recorder<'_>,
    changes: PolicyChanges,
    client: C,
    mut upstream: U,
    opened: Decided,
    slot: &Slot,
) -> (Close, Decided, (u64, u64))
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut client = Metered::new(client, activity.clone());
    let limits = record.parties.cx.limits;
    let mut shutdown = slot.shutdown().clone();
    let drained = async move {
        shutdown.wait().await;
        tokio::time::sleep(limits.drain).await;
    };
    let (close, decided) = tokio::select! {
        copied = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER) => {
            let close = if copied.is_ok() { Close::Finished } else { Close::Broken };
            (close, opened)
        }
        () = activity.idle_for(limits.idle) => (Close::Idle, opened),
        denied = redecide(record.parties, changes, record, opened.decision) => (Close::PolicyRevoked, denied),
        () = drained => (Close::Shutdown, opened),
    };
    (close, decided, (client.read, client.written))
}

/// The connection decided on `policy`; audit mode lets a deny through as `would-deny`. A
/// source contained after a probe is refused before any rule (docs/probes.md).
fn decide<'p>(parties: &Parties<'_>, policy: &'p Snapshot) -> Verdict<'p> {
    let (source, destination) = parties.ids(policy.own_id());
    let verdict = if parties.cx.probes.is_contained(source.as_str()) {
        Verdict::probe_contained()
    } else {
        policy.decide_connection(source, destination)
    };
    match parties.cx.mode {
        Mode::Enforce => verdict,
        Mode::Audit => verdict.audited(),
    }
}

/// Resolves with the new decision once a published policy denies the connection: every
/// publish (reload, expiry, containment) decides it again, one decision per publish. In audit
/// mode nothing is denied; a publish that turns the connection into `would-deny` (or back)
/// is recorded as a `redecide` line and counted, as an audited request would be.
async fn redecide(
    parties: &Parties<'_>,
    mut changes: PolicyChanges,
    record: &Recorder<'_>,
    mut last: &'static str,
) -> Decided {
    while changes.changed().await {
        let policy = parties.cx.live.policy();
        let verdict = decide(parties, &policy);
        if !verdict.lets_through() {
            return Decided::of(&verdict, &policy);
        }
        let decision = verdict.decision.as_str();
        if decision != last {
            let decided = Decided::of(&verdict, &policy);
            record.redecided(&decided);
            record.keep(decided);
            last = decision;
        }
    }
    std::future::pending().await
}

/// Writes a connection's decision-log lines and counts its decision.
struct Recorder<'a> {
    parties: &'a Parties<'a>,
    id: &'a str,
    started: Instant,
    /// The decision of the last publish that changed it without closing the connection.
    latest: Mutex<Option<Decided>>,
}

impl Recorder<'_> {
    /// Decides the connection on the policy snapshot of now, counts it and writes its `open`
    /// line; the decision if it lets the connection through.
    fn open(&self) -> Option<Decided> {
        let p = self.parties;
        let policy = p.cx.live.policy();
        let verdict = decide(p, &policy);
        let decided = Decided::of(&verdict, &policy);
        p.cx.metrics
            .tcp_decision(p.direction, decided.decision, decided.rule_label());
        // docs/probes.md: a denied connection is a denied target (the destination alone).
        let probes = &p.cx.probes;
        // The policy's deny, also under audit (`would-deny`, not a `dry_run` rule's).
        let denied = verdict.decision != Decision::Allow
            && !matches!(verdict.reason, Reason::DryRunDeny | Reason::ProbeContained);
        if denied && probes.enabled() {
            let (source, destination) = p.ids(policy.own_id());
            let target = Target {
                destination: destination.as_str(),
                method: "",
                path: "",
            };
            let tripwire = policy.tripwire_connection(source, destination);
            probes.denied(p.direction, source.as_str(), &target, tripwire);
        }
        self.write(&decided, "open", None, None, None);
        verdict.lets_through().then_some(decided)
    }

    /// A publish changed the decision of a connection it let through (audit mode:
    /// `allow` ↔ `would-deny`).
    fn redecided(&self, decided: &Decided) {
        let p = self.parties;
        p.cx.metrics
            .tcp_decision(p.direction, decided.decision, decided.rule_label());
        self.write(decided, "redecide", None, None, None);
    }

    /// Remembers `decided` as the one the close line reports.
    fn keep(&self, decided: Decided) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(decided);
    }

    /// Counts the end of a connection that was carried and writes its `close` line. Audit
    /// mode: the line carries the decision last made (perhaps `would-deny`); a connection a
    /// publish cut carries the denying decision, counted as a cut.
    fn finish(&self, close: Close, decided: Decided, bytes: (u64, u64)) {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let decided = match latest {
            Some(latest) if close != Close::PolicyRevoked => latest,
            _ => decided,
        };
        let (metrics, direction) = (&self.parties.cx.metrics, self.parties.direction);
        if close == Close::PolicyRevoked {
            metrics.connection_cut(direction, "policy-revoked");
            metrics.tcp_decision(direction, decided.decision, decided.rule_label());
        }
        metrics.tcp_bytes(direction, bytes.0, bytes.1);
        self.close(&decided, close, bytes);
    }

    /// Writes the `close` line of `decided`.
    fn close(&self, decided: &Decided, close: Close, bytes: (u64, u64)) {
        let elapsed = self.started.elapsed();
        self.write(decided, "close", Some(bytes), Some(close), Some(elapsed));
        tracing::debug!(
            direction = self.parties.direction.as_str(),
            reason = close.as_str(),
            bytes_in = bytes.0,
            bytes_out = bytes.1,
            "tcp connection closed"
        );
    }

    fn write(
        &self,
        decided: &Decided,
        event: &'static str,
        bytes: Option<(u64, u64)>,
        close: Option<Close>,
        duration: Option<Duration>,
    ) {
        let p = self.parties;
        let (source, destination) = p.ids(&decided.own);
        decision_log::write_connection(&ConnectionRecord {
            connection_id: self.id,
            direction: p.direction,
            event,
            source_id: source.as_str(),
            destination_id: destination.as_str(),
            decision: decided.decision,
            rule: decided.rule.as_deref(),
            reason: decided.reason,
            policy_version: &decided.version,
            bytes,
            close_reason: close.map(Close::as_str),
            duration,
        });
    }
}

/// The client side of a tunnel: counts the bytes read from it (`bytes_in`) and written to it
/// (`bytes_out`), and records activity for the idle timeout.
struct Metered<I> {
    io: I,
    activity: Activity,
    read: u64,
    written: u64,
}

impl<I> Metered<I> {
    fn new(io: I, activity: Activity) -> Self {
        Self {
            io,
            activity,
            read: 0,
            written: 0,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Metered<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.read += n as u64;
            this.activity.touch();
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Metered<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.written += n as u64;
            this.activity.touch();
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

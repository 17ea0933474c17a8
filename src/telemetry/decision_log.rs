//! The decision log (docs/operations.md): one JSON line per request with time, request id,
//! direction, source and destination IDs, method, path, decision, rule, reason, policy version,
//! status and duration. Handlers call [`write`], which emits a `tracing` event on [`TARGET`];
//! [`DecisionLayer`] turns those events into flat JSON lines on stderr. Without the layer (tests,
//! library use) the event is disabled at its call site and costs next to nothing.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// The `tracing` target of decision events; the process log leaves it to [`DecisionLayer`].
pub const TARGET: &str = "segward::decision";

/// Which side of the sidecar decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// mTLS in from a peer, to the local workload (ingress rules).
    Inbound,
    /// Plain in from the local app, mTLS out to a destination (egress rules).
    Outbound,
    /// Asked by Envoy's `ext_authz` filter (docs/envoy.md): the peer Envoy authenticated,
    /// reaching this sidecar's own identity (ingress rules).
    ExtAuthz,
}

impl Direction {
    /// The log's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::ExtAuthz => "ext_authz",
        }
    }
}

/// One request's line. IDs are absent when unknown (an unknown outbound destination).
#[derive(Debug, Clone)]
pub struct DecisionRecord<'a> {
    /// Also sent to the caller as `x-request-id`.
    pub request_id: &'a str,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Inbound: the peer's address (`IP:port`) as this sidecar's socket saw it.
    pub peer_addr: Option<&'a str>,
    /// The calling identity.
    pub source_id: Option<&'a str>,
    /// The identity being reached.
    pub destination_id: Option<&'a str>,
    /// The method as sent.
    pub method: &'a str,
    /// The normalized path (the raw one when it was refused); never the query.
    pub path: &'a str,
    /// `allow`, `deny` or `would-deny`.
    pub decision: &'static str,
    /// The deciding rule, when a rule decided.
    pub rule: Option<&'a str>,
    /// Which step decided (`allow-rule`, `default-deny`, `revoked`, …) or why the request was
    /// refused before a decision (`encoded-slash`, `unknown-destination`, …).
    pub reason: &'a str,
    /// Why an allowed request still failed (`upstream-connect`, `upstream-timeout`, …).
    pub error: Option<&'a str>,
    /// The version of the policy snapshot that decided; absent if none was consulted.
    pub policy_version: Option<&'a str>,
    /// The status sent to the caller.
    pub status: u16,
    /// From the request's arrival to its response headers.
    pub duration: Duration,
    /// The line passed the allowed-request sampler (`decision_log:` keeps a fraction or a
    /// per-second cap of them): requests like it may be missing from the log, so counts
    /// built on it are lower bounds (docs/operations.md#decision-log). Written only when true.
    pub sampled: bool,
}

/// Emits `record` as one decision event.
pub fn write(record: &DecisionRecord<'_>) {
    tracing::info!(
        target: TARGET,
        request_id = record.request_id,
        direction = record.direction.as_str(),
        peer_addr = record.peer_addr,
        source_id = record.source_id,
        destination_id = record.destination_id,
        method = record.method,
        path = record.path,
        decision = record.decision,
        rule = record.rule,
        reason = record.reason,
        error = record.error,
        policy_version = record.policy_version,
        status = record.status,
        // Microseconds; the layer writes them as milliseconds with three decimals.
        duration_ms = u64::try_from(record.duration.as_micros()).unwrap_or(u64::MAX),
        sampled = record.sampled.then_some(true),
    );
}

/// One TCP connection's line (docs/l4.md): written at open with the decision, and, for a
/// connection let through, again at close with its byte counts, duration and close reason.
/// Method and path are empty: a connection has neither.
#[derive(Debug, Clone)]
pub struct ConnectionRecord<'a> {
    /// The connection's id (as a request id names a request).
    pub connection_id: &'a str,
    /// Inbound or outbound.
    pub direction: Direction,
    /// `open` or `close`.
    pub event: &'static str,
    /// The calling identity.
    pub source_id: &'a str,
    /// The identity being reached.
    pub destination_id: &'a str,
    /// `allow`, `deny` or `would-deny`: at close, the last decision made (a re-decision that
    /// closed it, or the one at open).
    pub decision: &'static str,
    /// The deciding rule, when a rule decided.
    pub rule: Option<&'a str>,
    /// Which step decided (`allow-rule`, `default-deny`, `revoked`, …).
    pub reason: &'a str,
    /// The version of the policy snapshot that made that decision.
    pub policy_version: &'a str,
    /// At close: bytes from the client towards the workload or destination, and back.
    pub bytes: Option<(u64, u64)>,
    /// At close: why (`finished`, `policy-revoked`, `idle-timeout`, `upstream-connect`, …).
    pub close_reason: Option<&'a str>,
    /// At close: since the connection was accepted.
    pub duration: Option<Duration>,
}

/// Emits `record` as one decision event.
pub fn write_connection(record: &ConnectionRecord<'_>) {
    let duration = record
        .duration
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    tracing::info!(
        target: TARGET,
        request_id = record.connection_id,
        direction = record.direction.as_str(),
        protocol = "tcp",
        event = record.event,
        source_id = record.source_id,
        destination_id = record.destination_id,
        method = "",
        path = "",
        decision = record.decision,
        rule = record.rule,
        reason = record.reason,
        policy_version = record.policy_version,
        bytes_in = record.bytes.map(|b| b.0),
        bytes_out = record.bytes.map(|b| b.1),
        close_reason = record.close_reason,
        duration_ms = duration,
    );
}

/// A probe detected by the sidecar (docs/probes.md): one line, reason `probe-detected`.
#[derive(Debug, Clone)]
pub struct ProbeRecord<'a> {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The probing identity.
    pub source_id: &'a str,
    /// `alert` or `contain` (the decision field of the line).
    pub action: &'static str,
    /// `distinct-denied` or `tripwire`.
    pub trigger: &'static str,
    /// The tripwire rule, when one triggered.
    pub rule: Option<&'a str>,
    /// The distinct denied targets seen, `; `-separated (`METHOD destination path`).
    pub targets: &'a str,
    /// How many.
    pub targets_seen: u64,
    /// The detection window in seconds.
    pub window_s: u64,
    /// How long the containment lasts, in seconds (`contain` only).
    pub contain_for_s: Option<u64>,
}

/// Emits `record` as one decision event (`event: probe`).
pub fn write_probe(record: &ProbeRecord<'_>) {
    tracing::info!(
        target: TARGET,
        direction = record.direction.as_str(),
        event = "probe",
        source_id = record.source_id,
        decision = record.action,
        rule = record.rule,
        reason = "probe-detected",
        trigger = record.trigger,
        targets = record.targets,
        targets_seen = record.targets_seen,
        window_s = record.window_s,
        contain_for_s = record.contain_for_s,
    );
}

/// Which lines get written: every `deny` and `would-deny`; of the `allow`s, an evenly spread
/// `allowed_sample_rate` fraction, at most `allowed_per_second` a second (ISSUE 6: "sampling or
/// rate limiting for allowed requests configurable and denies always logged").
#[derive(Debug)]
pub struct Sampler {
    rate: f64,
    per_second: Option<u64>,
    allowed_seen: AtomicU64,
    epoch: Instant,
    /// `second << 32 | lines written in that second`.
    window: AtomicU64,
}

impl Sampler {
    /// A sampler logging `rate` (0 to 1) of allowed requests, at most `per_second` a second.
    pub fn new(rate: f64, per_second: Option<u64>) -> Self {
        Self {
            rate: rate.clamp(0.0, 1.0),
            per_second,
            allowed_seen: AtomicU64::new(0),
            epoch: Instant::now(),
            window: AtomicU64::new(0),
        }
    }

    /// Whether lines of `decision` may be left out, so that a written one stands for more:
    /// `allow` lines when a rate below 1 or a per-second cap is set; never denies.
    pub fn samples(&self, decision: &str) -> bool {
        decision == "allow" && (self.rate < 1.0 || self.per_second.is_some())
    }

    /// Whether the line of a request decided `decision` (`allow`, `deny`, `would-deny`) is
    /// written.
    pub fn keep(&self, decision: &str) -> bool {
        if decision != "allow" {
            return true;
        }
        self.sampled() && self.under_cap()
    }

    /// Deterministic sampling: the n-th allowed request is kept when ⌊n·rate⌋ steps up.
    fn sampled(&self) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        let n = self.allowed_seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.rate).floor() > (n * self.rate).floor()
    }

    fn under_cap(&self) -> bool {
        let Some(cap) = self.per_second else {
            return true;
        };
        let second = self.epoch.elapsed().as_secs();
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window_second, count) = (current >> 32, current & 0xFFFF_FFFF);
            let next = if window_second == second {
                if count >= cap {
                    return false;
                }
                current + 1
            } else {
                (second << 32) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

/// A `tracing` layer writing each decision event as one JSON object per line:
/// `{"time":"<RFC 3339 UTC>","request_id":…,…}`; absent fields are left out.
#[derive(Debug)]
pub struct DecisionLayer<W> {
    make_writer: W,
}

impl<W> DecisionLayer<W> {
    /// Writes lines to `make_writer` (e.g. `std::io::stderr`), one `write_all` per line.
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

impl<S, W> Layer<S> for DecisionLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut line = Vec::with_capacity(512);
        line.extend_from_slice(b"{\"time\":\"");
        timestamp(&mut line, SystemTime::now());
        line.push(b'"');
        event.record(&mut JsonFields(&mut line));
        line.extend_from_slice(b"}\n");
        // A log sink that refuses a line must not take the request down with it.
        let _ = self.make_writer.make_writer().write_all(&line);
    }
}

/// Appends an RFC 3339 UTC timestamp with microseconds. The date and time up to the second
/// are formatted once per second per thread; only the fraction is written per line.
fn timestamp(line: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, prefix)| {
        if *cached != second {
            prefix.clear();
            let whole = OffsetDateTime::from(UNIX_EPOCH + Duration::from_secs(second));
            // Formatting into a Vec cannot fail; a failure would only shorten the stamp.
            let _ = whole
                .format_into(prefix, &Rfc3339)
                .map(|_| prefix.truncate(prefix.len().saturating_sub(1)));
            *cached = second;
        }
        line.extend_from_slice(prefix);
    });
    let _ = write!(line, ".{:06}Z", since_epoch.subsec_micros());
}

/// Appends `,"name":value` for each field of a decision event.
struct JsonFields<'a>(&'a mut Vec<u8>);

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(field.name().as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn string(&mut self, value: &str) {
        // Most values (SPIFFE IDs, rule names, normalized paths) need no escaping: copy them.
        if !value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            self.0.push(b'"');
            self.0.extend_from_slice(value.as_bytes());
            self.0.push(b'"');
            return;
        }
        // serde_json escapes quotes, backslashes and control characters; a Vec never fails.
        let _ = serde_json::to_writer(&mut *self.0, value);
    }

    /// `value` in decimal, without the formatting machinery.
    fn integer(&mut self, mut value: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.0.extend_from_slice(&digits[at..]);
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.string(value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        if field.name() == "duration_ms" {
            // Sent in microseconds: integer formatting, no float on the request path.
            self.integer(value / 1000);
            let fraction = value % 1000;
            self.0.extend_from_slice(&[
                b'.',
                b'0' + (fraction / 100) as u8,
                b'0' + (fraction / 10 % 10) as u8,
                b'0' + (fraction % 10) as u8,
            ]);
        } else {
            self.integer(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.0, "{value:.3}");
        } else {
            self.0.extend_from_slice(b"null");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // Decision events carry no message; anything else is written as its Debug text.
        if field.name() == "message" {
            return;
        }
        self.key(field);
        self.string(&format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests;

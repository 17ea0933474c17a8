//! Prometheus metrics (docs/operations.md), registered once in an explicit registry and served as
//! text by the admin endpoint. Label sets are bounded: directions, decisions, rule names
//! (or a fixed reason such as `default-deny`), handshake failure reasons, error kinds —
//! never a raw SPIFFE ID or path.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use super::decision_log::Direction;

/// `direction`, `decision`, `rule` of one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// `allow`, `deny` or `would-deny`.
    pub decision: &'static str,
    /// The deciding rule, or the reason no rule decided (`default-deny`, `revoked`,
    /// `unknown-destination`, `encoded-slash`, …).
    pub rule: String,
    /// `http` (one count per request) or `tcp` (one per connection decided).
    pub protocol: &'static str,
}

/// The bytes a TCP tunnel carried on one side of the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BytesLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// `in` (from the client towards the workload or destination) or `out` (back).
    pub flow: &'static str,
}

/// One label: the direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
}

/// An event loop's open connections on one listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LoopLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The loop's index, `0` to `limits.worker_threads - 1` (label `loop`).
    pub r#loop: String,
}

/// One label: a bounded reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    /// e.g. `no-client-cert`, `unknown-trust-domain`, `expired`.
    pub reason: &'static str,
}

/// Why open connections were closed by segward, by direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CutLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// `revoked` (a published policy revoked the peer).
    pub reason: &'static str,
}

/// A probe detected (docs/probes.md): on which side and what the sidecar did; no IDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// `alert` or `contain`.
    pub action: &'static str,
}

/// What was reloaded and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `policy` or `tls`.
    pub what: &'static str,
    /// `ok` or `rejected`.
    pub result: &'static str,
}

/// Why a reload of one part was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectionLabels {
    /// `policy` or `tls`.
    pub what: &'static str,
    /// `invalid-policy`, `empty-policy-file`, `tls-unreadable`, `invalid-tls`, … (the
    /// reload error's reason).
    pub reason: &'static str,
}

/// The policy version in force.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct VersionLabel {
    /// `sha256:…`.
    pub version: String,
}

/// Upstream failures by direction and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// `upstream-connect`, `upstream-tls`, `upstream-broken`, `upstream-timeout`.
    pub kind: &'static str,
}

type DurationFamily = Family<DirectionLabel, Histogram, fn() -> Histogram>;

/// Every metric segward exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    traffic: Traffic,
    reloads: Reloads,
    connections: Connections,
    /// `probes_detected` (docs/probes.md).
    probes: Family<ProbeLabels, Counter>,
}

/// What the listeners count per request and per connection.
#[derive(Debug)]
struct Traffic {
    requests: Family<RequestLabels, Counter>,
    /// The duration histogram of each direction (inbound, outbound, ext_authz), resolved once so that a
    /// request does not look it up.
    durations: [Histogram; 3],
    /// The open-connection gauge of each direction, resolved once likewise.
    open: [Gauge; 3],
    handshake_failures: Family<ReasonLabel, Counter>,
}

/// What reloads did, and the state in force (set at scrape time).
#[derive(Debug)]
struct Reloads {
    reloads: Family<ReloadLabels, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    policy_info: Family<VersionLabel, Gauge>,
    svid_expiry: Gauge,
    policy_next_expiry: Gauge,
}

/// What happens to connections past the decision: upstream failures, event-loop load,
/// cuts, pool evictions, tunnel bytes.
#[derive(Debug)]
struct Connections {
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    per_loop: Family<LoopLabels, Gauge>,
    cut: Family<CutLabels, Counter>,
    pools_evicted: Family<ReasonLabel, Counter>,
    tcp_bytes: Family<BytesLabels, Counter>,
}

/// Request durations: 0.25 ms to ~8 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Registers `metric` under `name` and hands it back for recording.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Index of `direction` in the per-direction arrays.
fn slot(direction: Direction) -> usize {
    match direction {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
        Direction::ExtAuthz => 2,
    }
}

impl Traffic {
    /// Registers requests, durations, open connections, refused handshakes, in this order.
    fn register(r: &mut Registry) -> Self {
        let requests = register(
            r,
            "requests",
            "Requests (HTTP) and connections (TCP) decided, by direction, decision, deciding \
             rule and protocol",
            Family::default(),
        );
        let duration: DurationFamily = register(
            r,
            "request_duration_seconds",
            "Time from a request's arrival to its response headers",
            Family::new_with_constructor(duration_histogram),
        );
        let connections: Family<DirectionLabel, Gauge> = register(
            r,
            "connections_active",
            "Open client connections per listener",
            Family::default(),
        );
        let handshake_failures = register(
            r,
            "tls_handshake_failures",
            "Inbound TLS handshakes refused, by reason",
            Family::default(),
        );
        let per_direction = |d: Direction| DirectionLabel {
            direction: d.as_str(),
        };
        let both = [Direction::Inbound, Direction::Outbound, Direction::ExtAuthz];
        Self {
            requests,
            durations: both.map(|d| duration.get_or_create(&per_direction(d)).clone()),
            open: both.map(|d| connections.get_or_create(&per_direction(d)).clone()),
            handshake_failures,
        }
    }
}

impl Reloads {
    /// Registers reloads, rejections, the policy version and expiries, in this order.
    fn register(r: &mut Registry) -> Self {
        let reloads = register(
            r,
            "reloads",
            "Reloads that changed something, by what and result",
            Family::default(),
        );
        let rejections = register(
            r,
            "reload_rejections",
            "Reloads rejected (the last good state stayed), by what and reason",
            Family::default(),
        );
        let policy_info = register(
            r,
            "policy_info",
            "The policy version in force (value 1)",
            Family::default(),
        );
        let svid_expiry = register(
            r,
            "svid_expiry_seconds",
            "Seconds until the sidecar's own certificate expires",
            Gauge::default(),
        );
        let policy_next_expiry = register(
            r,
            "policy_next_expiry_seconds",
            "Seconds until the next rule expires or containment lifts in the policy in force \
             (-1: none scheduled)",
            Gauge::default(),
        );
        Self {
            reloads,
            rejections,
            policy_info,
            svid_expiry,
            policy_next_expiry,
        }
    }
}

impl Connections {
    /// Registers upstream errors, per-loop connections, cuts, evictions, tunnel bytes, in this order.
    fn register(r: &mut Registry) -> Self {
        let upstream_errors = register(
            r,
            "upstream_errors",
            "Allowed requests the upstream failed, by direction and kind",
            Family::default(),
        );
        let per_loop = register(
            r,
            "loop_connections_active",
            "Open client connections per listener and event loop (limits.worker_threads)",
            Family::default(),
        );
        let cut = register(
            r,
            "connections_cut",
            "Open client connections segward closed, by direction and reason",
            Family::default(),
        );
        let pools_evicted = register(
            r,
            "upstream_pools_evicted",
            "Destination connection pools dropped (their connections closed), by reason",
            Family::default(),
        );
        let tcp_bytes = register(
            r,
            "tcp_bytes",
            "Bytes carried by TCP tunnels, by direction and flow (in: client to server)",
            Family::default(),
        );
        Self {
            upstream_errors,
            per_loop,
            cut,
            pools_evicted,
            tcp_bytes,
        }
    }
}

impl Metrics {
    /// All metrics at zero, registered under the `segward_` prefix (in this order in the
    /// exposition).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("segward");
        let traffic = Traffic::register(&mut registry);
        let reloads = Reloads::register(&mut registry);
        let connections = Connections::register(&mut registry);
        let probes = register(
            &mut registry,
            "probes_detected",
            "Probes detected (distinct denied targets or a tripwire), by direction and action",
            Family::default(),
        );
        Self {
            registry,
            traffic,
            reloads,
            connections,
            probes,
        }
    }

    /// Counts one request on `direction`: its decision, the deciding rule (or the fixed reason
    /// no rule decided), and its duration.
    pub fn request(
        &self,
        direction: Direction,
        decision: &'static str,
        rule: &str,
        duration: Duration,
    ) {
        let labels = RequestLabels {
            direction: direction.as_str(),
            decision,
            rule: rule.to_owned(),
            protocol: "http",
        };
        self.traffic.requests.get_or_create(&labels).inc();
        self.traffic.durations[slot(direction)].observe(duration.as_secs_f64());
    }

    /// Counts one TCP connection decided on `direction` (at open, or a re-decision that
    /// closed it).
    pub fn tcp_decision(&self, direction: Direction, decision: &'static str, rule: &str) {
        let labels = RequestLabels {
            direction: direction.as_str(),
            decision,
            rule: rule.to_owned(),
            protocol: "tcp",
        };
        self.traffic.requests.get_or_create(&labels).inc();
    }

    /// Adds a closed TCP tunnel's bytes: `bytes_in` from its client, `bytes_out` back.
    pub fn tcp_bytes(&self, direction: Direction, bytes_in: u64, bytes_out: u64) {
        for (flow, n) in [("in", bytes_in), ("out", bytes_out)] {
            let labels = BytesLabels {
                direction: direction.as_str(),
                flow,
            };
            self.connections.tcp_bytes.get_or_create(&labels).inc_by(n);
        }
    }

    /// Counts an upstream failure of an allowed request.
    pub fn upstream_error(&self, direction: Direction, kind: &'static str) {
        let labels = UpstreamErrorLabels {
            direction: direction.as_str(),
            kind,
        };
        self.connections
            .upstream_errors
            .get_or_create(&labels)
            .inc();
    }

    /// Counts a refused inbound handshake.
    pub fn handshake_failure(&self, reason: &'static str) {
        self.traffic
            .handshake_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a reload of `what` (`policy` or `tls`) that was applied (`rejected` is
    /// `None`) or rejected for the bounded reason `rejected`.
    pub fn reload(&self, what: &'static str, rejected: Option<&'static str>) {
        let result = if rejected.is_some() { "rejected" } else { "ok" };
        self.reloads
            .reloads
            .get_or_create(&ReloadLabels { what, result })
            .inc();
        if let Some(reason) = rejected {
            self.reloads
                .rejections
                .get_or_create(&RejectionLabels { what, reason })
                .inc();
        }
    }

    /// Counts one open client connection closed on `direction` for `reason` (`revoked`).
    pub fn connection_cut(&self, direction: Direction, reason: &'static str) {
        let labels = CutLabels {
            direction: direction.as_str(),
            reason,
        };
        self.connections.cut.get_or_create(&labels).inc();
    }

    /// Counts one probe detected on `direction` and what was done (`alert`, `contain`).
    pub fn probe_detected(&self, direction: Direction, action: &'static str) {
        let labels = ProbeLabels {
            direction: direction.as_str(),
            action,
        };
        self.probes.get_or_create(&labels).inc();
    }

    /// Counts one destination pool dropped for `reason` (`revoked`, `identity-changed`).
    pub fn pool_evicted(&self, reason: &'static str) {
        self.connections
            .pools_evicted
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// One more open connection on `direction`'s listener, until the guard is dropped.
    pub fn connection(&self, direction: Direction) -> ConnectionGuard {
        ConnectionGuard::open(self.traffic.open[slot(direction)].clone())
    }

    /// The open-connection gauge of event loop `index` on `direction`'s listener, resolved
    /// once when the listener starts; the listener balances connections by it.
    pub fn loop_connections(&self, direction: Direction, index: usize) -> Gauge {
        self.connections
            .per_loop
            .get_or_create(&LoopLabels {
                direction: direction.as_str(),
                r#loop: index.to_string(),
            })
            .clone()
    }

    /// The Prometheus text exposition, after setting the gauges read at scrape time.
    /// `policy_next_expiry_in_secs` is -1 when no rule expires and no containment lifts.
    pub fn encode(
        &self,
        policy_version: &str,
        svid_expires_in_secs: i64,
        policy_next_expiry_in_secs: i64,
    ) -> String {
        self.reloads.policy_info.clear();
        self.reloads
            .policy_info
            .get_or_create(&VersionLabel {
                version: policy_version.to_owned(),
            })
            .set(1);
        self.reloads.svid_expiry.set(svid_expires_in_secs);
        self.reloads
            .policy_next_expiry
            .set(policy_next_expiry_in_secs);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements the active-connection gauge when the connection ends.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl ConnectionGuard {
    /// Counts one more open connection on `gauge` until the guard is dropped.
    pub fn open(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

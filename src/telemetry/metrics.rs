//! Prometheus metrics (PRODUCT.md §6), registered once in an explicit registry and served as
//! text by the admin endpoint. Label sets are bounded: directions, decisions, rule names
//! (or a fixed reason such as `default-deny`), handshake failure reasons, error kinds —
//! never a raw SPIFFE ID or path.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
}

/// One label: the direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
}

/// One label: a bounded reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    /// e.g. `no-client-cert`, `unknown-trust-domain`, `expired`.
    pub reason: &'static str,
}

/// What was reloaded and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `policy` or `tls`.
    pub what: &'static str,
    /// `ok` or `rejected`.
    pub result: &'static str,
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
    requests: Family<RequestLabels, Counter>,
    duration: DurationFamily,
    connections: Family<DirectionLabel, Gauge>,
    handshake_failures: Family<ReasonLabel, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    policy_info: Family<VersionLabel, Gauge>,
    svid_expiry: Gauge,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
}

/// Request durations: 0.25 ms to ~8 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Metrics {
    /// All metrics at zero, registered under the `segward_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("segward");
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            connections: Family::default(),
            handshake_failures: Family::default(),
            reloads: Family::default(),
            policy_info: Family::default(),
            svid_expiry: Gauge::default(),
            upstream_errors: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests decided, by direction, decision and deciding rule",
            metrics.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response headers",
            metrics.duration.clone(),
        );
        registry.register(
            "connections_active",
            "Open client connections per listener",
            metrics.connections.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Inbound TLS handshakes refused, by reason",
            metrics.handshake_failures.clone(),
        );
        registry.register(
            "reloads",
            "Reloads that changed something, by what and result",
            metrics.reloads.clone(),
        );
        registry.register(
            "policy_info",
            "The policy version in force (value 1)",
            metrics.policy_info.clone(),
        );
        registry.register(
            "svid_expiry_seconds",
            "Seconds until the sidecar's own certificate expires",
            metrics.svid_expiry.clone(),
        );
        registry.register(
            "upstream_errors",
            "Allowed requests the upstream failed, by direction and kind",
            metrics.upstream_errors.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts one decided (or refused) request and its duration.
    pub fn request(&self, labels: &RequestLabels, duration: Duration) {
        self.requests.get_or_create(labels).inc();
        let direction = DirectionLabel {
            direction: labels.direction,
        };
        self.duration
            .get_or_create(&direction)
            .observe(duration.as_secs_f64());
    }

    /// Counts an upstream failure of an allowed request.
    pub fn upstream_error(&self, direction: Direction, kind: &'static str) {
        let labels = UpstreamErrorLabels {
            direction: direction.as_str(),
            kind,
        };
        self.upstream_errors.get_or_create(&labels).inc();
    }

    /// Counts a refused inbound handshake.
    pub fn handshake_failure(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a reload of `what` (`policy` or `tls`) that was applied or rejected.
    pub fn reload(&self, what: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "rejected" };
        self.reloads
            .get_or_create(&ReloadLabels { what, result })
            .inc();
    }

    /// One more open connection on `direction`'s listener, until the guard is dropped.
    pub fn connection(&self, direction: Direction) -> ConnectionGuard {
        let gauge = self
            .connections
            .get_or_create(&DirectionLabel {
                direction: direction.as_str(),
            })
            .clone();
        gauge.inc();
        ConnectionGuard(gauge)
    }

    /// The Prometheus text exposition, after setting the gauges read at scrape time.
    pub fn encode(&self, policy_version: &str, svid_expires_in_secs: i64) -> String {
        self.policy_info.clear();
        self.policy_info
            .get_or_create(&VersionLabel {
                version: policy_version.to_owned(),
            })
            .set(1);
        self.svid_expiry.set(svid_expires_in_secs);
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

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

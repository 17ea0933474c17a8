//! [`Context`]: what the listeners of one sidecar share — the live state (whose policy
//! snapshot carries the sidecar's own SPIFFE ID: it can change, docs/spire.md), mode, limits,
//! metrics, the decision-log sampler and the request-id generator.

use std::sync::Arc;

use super::request_id::RequestIds;
use crate::config::{Limits, Mode};
use crate::detect::Probes;
use crate::live::Live;
use crate::telemetry::decision_log::Sampler;
use crate::telemetry::metrics::Metrics;

/// Shared by both listeners of one sidecar; read-only after start.
#[derive(Debug)]
pub struct Context {
    /// Policy and TLS material in force.
    pub live: Arc<Live>,
    /// Enforce or audit.
    pub mode: Mode,
    /// Connection, header and timeout limits.
    pub limits: Limits,
    /// Where requests, connections and failures are counted.
    pub metrics: Arc<Metrics>,
    /// Which decision lines get written.
    pub sampler: Sampler,
    /// Makes request ids.
    pub ids: RequestIds,
    /// Probe detection and the identities it contained (docs/probes.md).
    pub probes: Arc<Probes>,
}

//! `Live`: the state the data plane reads and only a (re)load writes (PRODUCT.md §5).
//! The policy sits in an `ArcSwap`: a request takes one snapshot at its start, so it sees
//! exactly one policy version, and a swap applies to the next request — also on kept-alive
//! connections. TLS material is in [`LiveTls`], read once per handshake. What the reloads did
//! is the reloader's own record (`reload::ReloadStatus`), not part of this state.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::policy::CompiledPolicy;
use crate::tls::LiveTls;

/// The current policy and TLS material, shared by every listener of one sidecar.
#[derive(Debug)]
pub struct Live {
    policy: ArcSwap<CompiledPolicy>,
    tls: LiveTls,
}

impl Live {
    /// Live state starting with `policy` (compiled, its `tests:` passed) and `tls`.
    pub fn new(policy: CompiledPolicy, tls: LiveTls) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
            tls,
        }
    }

    /// The policy snapshot for one request: take it once, at the top of the handler.
    pub fn policy(&self) -> Arc<CompiledPolicy> {
        self.policy.load_full()
    }

    /// Makes `policy` the one the next request sees; returns the one it replaces (drop it off
    /// the request path: a large policy takes milliseconds to free).
    pub fn publish_policy(&self, policy: CompiledPolicy) -> Arc<CompiledPolicy> {
        self.policy.swap(Arc::new(policy))
    }

    /// The TLS material the listeners' configs read per handshake.
    pub fn tls(&self) -> &LiveTls {
        &self.tls
    }
}

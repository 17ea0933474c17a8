//! `Live`: the state the data plane reads on every request and only a (re)load writes
//! (PRODUCT.md §5). The policy sits in an `ArcSwap`: a request takes one snapshot at its start,
//! so it sees exactly one policy version, and a swap applies to the next request — also on
//! kept-alive connections.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::policy::CompiledPolicy;

/// The current policy, shared by every listener of one sidecar.
#[derive(Debug)]
pub struct Live {
    policy: ArcSwap<CompiledPolicy>,
}

impl Live {
    /// Live state starting with `policy` (already compiled and its `tests:` passed).
    pub fn new(policy: CompiledPolicy) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
        }
    }

    /// The policy snapshot for one request: take it once, at the top of the handler.
    pub fn policy(&self) -> Arc<CompiledPolicy> {
        self.policy.load_full()
    }

    /// Makes `policy` the one the next request sees; returns the one it replaces.
    pub fn publish_policy(&self, policy: CompiledPolicy) -> Arc<CompiledPolicy> {
        self.policy.swap(Arc::new(policy))
    }
}

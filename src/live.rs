//! `Live`: the state the data plane reads and only a (re)load writes (docs/operations.md).
//! The policy sits in an `ArcSwap`: a request takes one snapshot at its start, so it sees
//! exactly one policy version, and a swap applies to the next request — also on kept-alive
//! connections. TLS material is in [`LiveTls`], read once per handshake. What the reloads did
//! is the reloader's own record (`reload::ReloadStatus`), not part of this state.
//! Every publish also wakes the [`PolicyChanges`] of open connections, which re-classify
//! their peer once and close if it is now revoked (docs/runbook.md).

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::policy::CompiledPolicy;
use crate::tls::LiveTls;

/// The current policy and TLS material, shared by every listener of one sidecar.
#[derive(Debug)]
pub struct Live {
    policy: ArcSwap<CompiledPolicy>,
    /// Bumped after each policy publish: how open connections learn of a new policy.
    published: watch::Sender<u64>,
    tls: LiveTls,
}

/// Wakes its holder after each policy publish; one per open connection (or pool keeper).
#[derive(Debug)]
pub struct PolicyChanges(watch::Receiver<u64>);

impl PolicyChanges {
    /// Waits until a policy is published after the last wake (publishes in between count
    /// as one); `false` once the live state is gone, so no publish will ever come.
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

impl Live {
    /// Live state starting with `policy` (compiled, its `tests:` passed) and `tls`.
    pub fn new(policy: CompiledPolicy, tls: LiveTls) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
            published: watch::Sender::new(0),
            tls,
        }
    }

    /// The policy snapshot for one request: take it once, at the top of the handler.
    pub fn policy(&self) -> Arc<CompiledPolicy> {
        self.policy.load_full()
    }

    /// Makes `policy` the one the next request sees, then wakes every [`PolicyChanges`] (after
    /// the swap, so each sees the new policy); returns the one it replaces (drop it off the
    /// request path: a large policy takes milliseconds to free).
    pub fn publish_policy(&self, policy: CompiledPolicy) -> Arc<CompiledPolicy> {
        let old = self.policy.swap(Arc::new(policy));
        self.published.send_modify(|n| *n = n.wrapping_add(1));
        old
    }

    /// Wakes every [`PolicyChanges`] without a new policy, so open connections decide their
    /// peer again now: a probe containment (docs/probes.md) cuts them as a publish would.
    pub fn wake_connections(&self) {
        self.published.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes after every later policy publish (not for the policy in force now).
    pub fn policy_changes(&self) -> PolicyChanges {
        PolicyChanges(self.published.subscribe())
    }

    /// The TLS material the listeners' configs read per handshake.
    pub fn tls(&self) -> &LiveTls {
        &self.tls
    }
}

//! `Live`: the state the data plane reads and only a (re)load writes (docs/operations.md).
//! The policy sits in an `ArcSwap`: a request takes one snapshot at its start, so it sees
//! exactly one policy version, and a swap applies to the next request — also on kept-alive
//! connections. The snapshot is a [`Snapshot`]: the slice together with the own SPIFFE ID it
//! was cut for, so a request decided on one slice always uses that slice's ID — a rotation
//! to another ID (docs/spire.md) swaps both at once. TLS material is in [`LiveTls`], read
//! once per handshake. What the reloads did is the reloader's own record
//! (`reload::ReloadStatus`), not part of this state.
//! Every publish also wakes the [`PolicyChanges`] of open connections, which re-classify
//! their peer once and close if it is now revoked (docs/runbook.md).

use std::ops::Deref;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::identity::SpiffeId;
use crate::policy::CompiledPolicy;
use crate::tls::{LiveTls, TlsMaterial};

/// The policy in force: the slice compiled for one own SPIFFE ID, and that ID. Derefs to the
/// policy, so a request reads both from the one snapshot it takes.
#[derive(Debug)]
pub struct Snapshot {
    policy: CompiledPolicy,
    own_id: SpiffeId,
}

impl Snapshot {
    /// `policy`, the slice compiled for `own_id`.
    pub fn new(policy: CompiledPolicy, own_id: SpiffeId) -> Self {
        Self { policy, own_id }
    }

    /// The sidecar's own SPIFFE ID this slice was cut for: the destination of inbound
    /// decisions, the source of outbound ones, `By=` of XFCC.
    pub fn own_id(&self) -> &SpiffeId {
        &self.own_id
    }

    /// The compiled slice.
    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
    }
}

impl Deref for Snapshot {
    type Target = CompiledPolicy;

    fn deref(&self) -> &CompiledPolicy {
        &self.policy
    }
}

/// The current policy and TLS material, shared by every listener of one sidecar.
#[derive(Debug)]
pub struct Live {
    policy: ArcSwap<Snapshot>,
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
    pub fn new(policy: Snapshot, tls: LiveTls) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
            published: watch::Sender::new(0),
            tls,
        }
    }

    /// The policy snapshot for one request: take it once, at the top of the handler.
    pub fn policy(&self) -> Arc<Snapshot> {
        self.policy.load_full()
    }

    /// Makes `policy` the one the next request sees, then wakes every [`PolicyChanges`] (after
    /// the swap, so each sees the new policy); returns the one it replaces (drop it off the
    /// request path: a large policy takes milliseconds to free).
    pub fn publish_policy(&self, policy: Snapshot) -> Arc<Snapshot> {
        let old = self.policy.swap(Arc::new(policy));
        self.published.send_modify(|n| *n = n.wrapping_add(1));
        old
    }

    /// A new own ID (docs/spire.md "Rotation to another SPIFFE ID"): its slice and the SVID
    /// naming it, both built and checked before this call, so nothing can fail half-way.
    /// The slice with its ID goes first, then the TLS material: a request is always decided
    /// with one slice and that slice's ID, and a handshake in between presents the old SVID —
    /// as every connection opened before the rotation does — never the new SVID with the old
    /// slice. Open connections are woken as for any publish. Returns the replaced policy.
    pub fn publish_identity(&self, policy: Snapshot, tls: TlsMaterial) -> Arc<Snapshot> {
        let old = self.policy.swap(Arc::new(policy));
        self.tls.install(tls);
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

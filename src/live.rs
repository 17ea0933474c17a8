//! `Live`: the state the data plane reads and only a (re)load writes (docs/operations.md).
//! The policy sits in an `ArcSwap`: a request takes one snapshot at its start, so it sees
//! exactly one policy version, and a swap applies to the next request — also on kept-alive
//! connections. The snapshot is a [`Snapshot`]: the slice together with the own SPIFFE ID it
//! was cut for, so a request decided on one slice always uses that slice's ID — a rotation
//! to another ID (docs/spire.md) swaps both at once. TLS material is in [`LiveTls`], read
//! once per handshake. What the reloads did is the reloader's own record
//! (`reload::ReloadStatus`), not part of this state.
//! An `expires:`/`until:` successor is staged seconds ahead and handed out from its
//! instant on, before the expiry schedule publishes it (docs/runbook.md#exceptions).
//! Every publish also wakes the [`PolicyChanges`] of open connections, which re-classify
//! their peer once and close if it is now revoked (docs/runbook.md).

use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
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
    /// The successor due at an `expires:`/`until:` instant, staged by the expiry schedule
    /// once built (seconds ahead): from that instant on, [`Live::policy`] hands it out even
    /// if the schedule's publish runs late (a loaded box, a reload holding the lock), so an
    /// exception ends at its instant, not when a timer fires.
    due: ArcSwapOption<Due>,
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

/// A successor and the instant it takes over from `base`.
#[derive(Debug)]
struct Due {
    at: SystemTime,
    /// The snapshot it succeeds: if another was published meanwhile, this one never applies.
    base: Arc<Snapshot>,
    next: Arc<Snapshot>,
}

impl Live {
    /// Live state starting with `policy` (compiled, its `tests:` passed) and `tls`.
    pub fn new(policy: Snapshot, tls: LiveTls) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
            due: ArcSwapOption::empty(),
            published: watch::Sender::new(0),
            tls,
        }
    }

    /// The policy snapshot for one request: take it once, at the top of the handler. While
    /// no successor is staged this is the published snapshot and one more atomic load; once
    /// a staged successor's instant has come (read from the clock only while one is staged,
    /// the seconds before an expiry), the successor.
    pub fn policy(&self) -> Arc<Snapshot> {
        let published = self.policy.load_full();
        if let Some(due) = &*self.due.load()
            && Arc::ptr_eq(&due.base, &published)
            && SystemTime::now() >= due.at
        {
            return due.next.clone();
        }
        published
    }

    /// The snapshot published last, ignoring a staged successor: what reloads compare with.
    pub fn published_policy(&self) -> Arc<Snapshot> {
        self.policy.load_full()
    }

    /// Stages `next` to take over from `base` at `at` (the expiry schedule, once it has built
    /// the successor): requests from `at` on get it even before [`Live::publish_arc`] runs.
    /// Ignored once another snapshot than `base` is published.
    pub fn stage_successor(&self, base: Arc<Snapshot>, at: SystemTime, next: Arc<Snapshot>) {
        self.due.store(Some(Arc::new(Due { at, base, next })));
    }

    /// Makes `policy` the one the next request sees, then wakes every [`PolicyChanges`] (after
    /// the swap, so each sees the new policy); returns the one it replaces (drop it off the
    /// request path: a large policy takes milliseconds to free).
    pub fn publish_policy(&self, policy: Snapshot) -> Arc<Snapshot> {
        self.publish_arc(Arc::new(policy))
    }

    /// [`Live::publish_policy`] of a snapshot already shared (a staged successor). Any staged
    /// successor is dropped: it was built on what this replaces.
    pub fn publish_arc(&self, policy: Arc<Snapshot>) -> Arc<Snapshot> {
        let old = self.policy.swap(policy);
        self.due.store(None);
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
        self.due.store(None);
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::certs::Ca;
    use crate::identity::TrustDomain;
    use crate::policy::{PolicySource, compile};
    use crate::tls::Credentials;

    const OWN: &str = "spiffe://example.org/ns/prod/sa/api";

    fn snapshot(rule: &str) -> Snapshot {
        let text = format!(
            "segments:\n  api: {{ identities: [\"{OWN}\"] }}\nrules:\n  - {{ name: {rule}, from: [api], to: [api] }}\n"
        );
        let source = PolicySource::from_texts([("policy.yaml", text.as_str())]).unwrap();
        Snapshot::new(compile(&source).unwrap(), SpiffeId::parse(OWN).unwrap())
    }

    fn live() -> Live {
        let td = TrustDomain::parse("example.org").unwrap();
        let ca = Ca::new(&td).unwrap();
        let own = SpiffeId::parse(OWN).unwrap();
        let svid = ca
            .issue(&own, Duration::from_secs(3600), &["localhost".to_owned()])
            .unwrap();
        let bundles = [(td, ca.cert_pem())];
        let credentials =
            Credentials::from_pem(&svid.chain_pem, &svid.key_pem, &bundles, SystemTime::now())
                .unwrap();
        Live::new(snapshot("base"), LiveTls::new(credentials).unwrap())
    }

    fn rule_of(live: &Live) -> String {
        name(&live.policy())
    }

    fn rule_of_published(live: &Live) -> String {
        name(&live.published_policy())
    }

    fn name(snapshot: &Snapshot) -> String {
        snapshot
            .policy()
            .rules()
            .first()
            .map(|r| r.name.clone())
            .unwrap()
    }

    #[test]
    fn a_staged_successor_is_handed_out_from_its_instant_on_before_it_is_published() {
        let live = live();
        let base = live.published_policy();
        let next = Arc::new(snapshot("next"));
        let later = SystemTime::now() + Duration::from_secs(3600);
        live.stage_successor(base.clone(), later, next.clone());
        assert_eq!(rule_of(&live), "base", "before its instant");
        let past = SystemTime::now() - Duration::from_millis(1);
        live.stage_successor(base, past, next.clone());
        assert_eq!(
            rule_of(&live),
            "next",
            "from its instant, not yet published"
        );
        assert_eq!(
            rule_of_published(&live),
            "base",
            "reloads still compare with the base"
        );
        live.publish_arc(next);
        assert_eq!(rule_of(&live), "next");
    }

    #[test]
    fn a_staged_successor_never_applies_after_another_publish() {
        let live = live();
        let base = live.published_policy();
        let past = SystemTime::now() - Duration::from_millis(1);
        live.stage_successor(base.clone(), past, Arc::new(snapshot("stale")));
        live.publish_policy(snapshot("reloaded"));
        assert_eq!(rule_of(&live), "reloaded");
        // Staged on a base no longer in force (a reload won the race): ignored.
        live.stage_successor(base, past, Arc::new(snapshot("stale")));
        assert_eq!(rule_of(&live), "reloaded");
    }
}

//! Time-boxed exceptions and self-lifting containment take effect on their own
//! (docs/runbook.md): the policy in force knows its next change ([`CompiledPolicy::next_change`]: a rule's
//! `expires:`, a revocation's `until:`); this schedule, one of the reloader's loops, builds the successor state from the same
//! policy texts shortly before that instant, off the runtime, and publishes it **at** the
//! instant — no file change, no reload, no clock comparison per request. A reload that
//! publishes in between replaces the base: the successor built from the old texts is dropped
//! and the schedule starts over from the new policy.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;

use super::Reloader;
use super::build::build_successor;
use super::error::ReloadError;
use crate::identity::SpiffeId;
use crate::live::Snapshot;
use crate::policy::CompiledPolicy;
use crate::shutdown::Shutdown;

/// How long before the instant the successor is built (parse + compile of a 50k-rule policy
/// takes about a second on 2 cores).
pub const LEAD: Duration = Duration::from_secs(5);
/// After a failed successor build (not expected: the same texts compiled before), retry after.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the schedule until `shutdown`.
pub(super) fn spawn(reloader: Arc<Reloader>, mut shutdown: Shutdown) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let base = reloader.live().published_policy();
            let Some(at) = base.next_change() else {
                tokio::select! {
                    () = reloader.policy_published().notified() => continue,
                    () = shutdown.wait() => break,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(until(at).saturating_sub(LEAD)) => {}
                () = reloader.policy_published().notified() => continue,
                () = shutdown.wait() => break,
            }
            let next = match build(&reloader, base.own_id(), at).await {
                Ok(next) => Arc::new(Snapshot::new(next, base.own_id().clone())),
                Err(error) => {
                    tracing::error!(%error, "cannot build the policy state due at its expiry; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            // Requests take the successor from the instant on, whenever this task runs.
            reloader
                .live()
                .stage_successor(base.clone(), instant(at), next.clone());
            tokio::select! {
                () = tokio::time::sleep(until(at)) => {}
                () = reloader.policy_published().notified() => continue,
                () = shutdown.wait() => break,
            }
            reloader.publish_successor(&base, next).await;
        }
    })
}

/// Unix second `at` as a time (the epoch for a time before it).
fn instant(at: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0))
}

/// Time left until unix second `at` (zero once it has passed).
fn until(at: i64) -> Duration {
    instant(at)
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// The successor of the policy in force (the slice for the sidecar's own identity),
/// compiled as of `at` from the texts it was built from.
async fn build(
    reloader: &Reloader,
    own: &SpiffeId,
    at: i64,
) -> Result<CompiledPolicy, ReloadError> {
    build_successor(reloader.texts(), own.clone(), at).await
}

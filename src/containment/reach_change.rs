//! The blast radius a containment removes or a release restores: `policy reach --from
//! <scope>` under the policy before and after, for each scope, diffed.

use super::ContainError;
use crate::policy::analysis::{Diff, diff};
use crate::policy::{self, CompiledPolicy, Edge, Reach};

/// The reach of some scopes under two policies: what changed, and the classes now revoked.
#[derive(Debug, Clone)]
pub struct ReachChange {
    /// From the reach before to the reach after.
    pub diff: Diff,
    /// Classes the scopes cover that the new policy revokes.
    pub revoked_after: Vec<String>,
    /// Classes the scopes cover that the old policy already revoked.
    pub revoked_before: Vec<String>,
}

impl ReachChange {
    /// `policy reach --from <scope>` under `before` and `after`, for each scope, diffed.
    ///
    /// # Errors
    /// [`ContainError::Reach`]: a scope is not a selector, or the reach walk gave up.
    pub fn of(
        before: &CompiledPolicy,
        after: &CompiledPolicy,
        scopes: &[String],
    ) -> Result<Self, ContainError> {
        let mut old = reach_from(before, scopes)?;
        let mut new = reach_from(after, scopes)?;
        let revoked = |r: &mut Reach| std::mem::take(&mut r.revoked_sources);
        Ok(Self {
            revoked_before: revoked(&mut old),
            revoked_after: revoked(&mut new),
            diff: diff(&old, &new),
        })
    }
}

/// The union of `reach --from S` for every scope `S` (edges deduplicated).
fn reach_from(policy: &CompiledPolicy, scopes: &[String]) -> Result<Reach, ContainError> {
    let mut all: Option<Reach> = None;
    for scope in scopes {
        let reach = policy::reach_texts(policy, scope, "*")?;
        match &mut all {
            None => all = Some(reach),
            Some(r) => {
                let fresh: Vec<Edge> = reach
                    .edges
                    .into_iter()
                    .filter(|e| !r.edges.contains(e))
                    .collect();
                r.edges.extend(fresh);
                r.revoked_sources.extend(reach.revoked_sources);
                r.revoked_sources.sort_unstable();
                r.revoked_sources.dedup();
            }
        }
    }
    all.ok_or(ContainError::NoScopes)
}

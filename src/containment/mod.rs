//! Incident containment (docs/runbook.md) as a library operation: cut a leaked identity,
//! segment or label scope off fleet-wide by writing one containment file into the policy
//! folder the sidecars watch, and lift it again. Nothing is written or removed unless the
//! resulting policy compiles, `tests:` included; both say the blast radius they remove or
//! restore (`policy reach --from <scope>` before vs. after). `segward policy contain|release`
//! and `segward demo` call this and only display the result (the CLI a thin front, as in
//! mini-redis).
//!
//! - [`Plan::new`] → [`Plan::write`]: contain. [`release`]: lift.
//! - [`mod@file`]: the file itself (id, name, YAML, scopes read back). [`ContainError`]: why not.

mod error;
pub mod file;
mod plan;
mod reach_change;
mod release;
mod until;

use std::path::Path;

use time::OffsetDateTime;

use crate::policy::{self, CompiledPolicy, PolicyErrors, PolicySource};

pub use error::ContainError;
pub use file::{Containment, ContainmentId, Scope, rfc3339};
pub use plan::{Asked, Order, Plan, Written};
pub use reach_change::ReachChange;
pub use release::{Released, release};
pub use until::parse_until;

/// Now, in UTC, at whole seconds (the precision of `since`).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// The policy files of `dir`, which must be a folder (the sidecars watch a folder).
fn policy_texts(dir: &Path) -> Result<Vec<(String, String)>, ContainError> {
    if !dir.is_dir() {
        return Err(ContainError::NotAFolder(dir.display().to_string()));
    }
    PolicySource::read(dir).map_err(ContainError::PolicyInvalid)
}

fn compile(texts: &[(String, String)]) -> Result<CompiledPolicy, PolicyErrors> {
    let source = PolicySource::from_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))?;
    policy::compile(&source)
}

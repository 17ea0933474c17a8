//! Builds a part of the state from the bytes a (re)load read, off the runtime: the policy
//! (parsed and validated whole, then the slice for the sidecar's own identity compiled with
//! the `tests:` it sees: docs/fleet.md "Slices") and the credentials (certificate, key and
//! bundles checked). Nothing here publishes.

use std::time::SystemTime;

use super::PolicyTexts;
use super::error::{Part, ReloadError};
use super::files::{TlsFiles, blocking};
use crate::identity::SpiffeId;
use crate::policy::{CompiledPolicy, Fleet, PolicyErrors, PolicySource, Scope, unix_now};
use crate::tls::Credentials;

/// Whether a bundle file that is gone is an error (start-up: a typo must not start a sidecar
/// that trusts less than its config says) or the removal of that trust domain (reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// The first load.
    Start,
    /// Every later one.
    Reload,
}

/// A policy read and checked whole, waiting for the identity it is sliced for.
pub(super) struct CheckedPolicy {
    source: PolicySource,
    fleet: Fleet,
}

/// Parses and validates the whole policy off the runtime (start-up checks it before it waits
/// for its identity, so a broken policy fails closed at once).
pub(super) async fn check_policy(texts: PolicyTexts) -> Result<CheckedPolicy, ReloadError> {
    // An empty file is a write in progress (truncate, then write), never a policy: taking
    // it would deny every request until the rest arrives. The next event brings it.
    if let Some((name, _)) = texts.iter().find(|(_, text)| text.trim().is_empty()) {
        return Err(ReloadError::EmptyPolicyFile { file: name.clone() });
    }
    blocking(Part::Policy, move || {
        check(&texts, unix_now()).map_err(ReloadError::InvalidPolicy)
    })
    .await
}

/// The texts parsed and the whole validated as of `now`.
fn check(texts: &PolicyTexts, now: i64) -> Result<CheckedPolicy, PolicyErrors> {
    let texts = texts.iter().map(|(n, t)| (n.as_str(), t.as_str()));
    let source = PolicySource::from_texts(texts)?;
    let fleet = Fleet::check(&source, now)?;
    Ok(CheckedPolicy { source, fleet })
}

/// Compiles the slice of a checked policy for `own` (docs/fleet.md "Slices"), its visible
/// `tests:` included, as of now, off the runtime.
pub(super) async fn slice_policy(
    checked: CheckedPolicy,
    own: SpiffeId,
) -> Result<CompiledPolicy, ReloadError> {
    blocking(Part::Policy, move || {
        let CheckedPolicy { source, fleet } = checked;
        fleet
            .at(unix_now())
            .into_compiled(source, &Scope::identity(own))
            .map_err(ReloadError::InvalidPolicy)
    })
    .await
}

/// Parses and validates the policy texts, then compiles the slice for `own`.
pub(super) async fn build_policy(
    texts: PolicyTexts,
    own: SpiffeId,
) -> Result<CompiledPolicy, ReloadError> {
    slice_policy(check_policy(texts).await?, own).await
}

/// The successor of the slice for `own` due at `at` (`expiry.rs`): the same texts, checked
/// and sliced as of `at`, without `tests:`.
pub(super) async fn build_successor(
    texts: PolicyTexts,
    own: SpiffeId,
    at: i64,
) -> Result<CompiledPolicy, ReloadError> {
    blocking(Part::Policy, move || {
        check(&texts, at)
            .and_then(|CheckedPolicy { source, fleet }| {
                fleet.into_successor(source, &Scope::identity(own))
            })
            .map_err(ReloadError::InvalidPolicy)
    })
    .await
}

/// Checks certificate, key and bundles off the runtime. A bundle file that is gone means, on
/// reload, that its trust domain is no longer trusted: dropping trust fails closed, so it
/// applies at once (keeping it would trust a removed CA).
pub(super) async fn build_credentials(
    files: TlsFiles,
    stage: Stage,
) -> Result<Credentials, ReloadError> {
    blocking(Part::Tls, move || {
        let mut bundles = Vec::with_capacity(files.bundles.len());
        for (trust_domain, file, bytes) in &files.bundles {
            match bytes {
                Ok(bytes) => bundles.push((trust_domain, file.as_path(), bytes.as_slice())),
                Err(_) if stage == Stage::Reload => tracing::warn!(
                    %trust_domain,
                    file = %file.display(),
                    "bundle file gone; trust domain no longer accepted"
                ),
                Err(gone) => return Err(ReloadError::TlsUnreadable(gone.clone())),
            }
        }
        let (cert, key) = (&files.cert, &files.key);
        Credentials::from_files(
            (&cert.0, &cert.1),
            (&key.0, &key.1),
            &bundles,
            SystemTime::now(),
        )
        .map_err(ReloadError::InvalidTls)
    })
    .await
}

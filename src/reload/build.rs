//! Builds a part of the state from the bytes a (re)load read, off the runtime: the policy
//! (validated whole as it is read, and the slice for the sidecar's own identity compiled with
//! the `tests:` it sees: docs/fleet.md "Slices") and the credentials (certificate, key and
//! bundles checked). Nothing here publishes.

use std::time::SystemTime;

use super::PolicyTexts;
use super::error::{Part, ReloadError};
use super::files::{TlsFiles, blocking, building};
use crate::identity::SpiffeId;
use crate::policy::{CompiledPolicy, Fleet, Scope, unix_now};
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

/// A policy checked whole, waiting for the identity it is sliced for: its texts (the slice
/// reads them again, so the whole's rules are not held while the sidecar waits).
pub(super) struct CheckedPolicy {
    texts: PolicyTexts,
}

/// Checks the whole policy off the runtime (start-up checks it before it waits for its
/// identity, so a broken policy fails closed at once).
pub(super) async fn check_policy(texts: PolicyTexts) -> Result<CheckedPolicy, ReloadError> {
    refuse_empty(&texts)?;
    building(move || {
        Fleet::check_texts(&texts, unix_now()).map_err(ReloadError::InvalidPolicy)?;
        Ok(CheckedPolicy { texts })
    })
    .await
}

/// An empty file is a write in progress (truncate, then write), never a policy: taking it
/// would deny every request until the rest arrives. The next event brings it.
fn refuse_empty(texts: &PolicyTexts) -> Result<(), ReloadError> {
    match texts.iter().find(|(_, text)| text.trim().is_empty()) {
        Some((name, _)) => Err(ReloadError::EmptyPolicyFile { file: name.clone() }),
        None => Ok(()),
    }
}

/// Compiles the slice of a checked policy for `own` (docs/fleet.md "Slices"), its visible
/// `tests:` included, as of now, off the runtime.
pub(super) async fn slice_policy(
    checked: CheckedPolicy,
    own: SpiffeId,
) -> Result<CompiledPolicy, ReloadError> {
    build(checked.texts, own, None).await
}

/// Checks the policy texts whole and compiles the slice for `own`, in one pass over the
/// texts that never holds the whole's rules together (`Fleet::compile_texts`;
/// docs/performance.md, "Fleet-scale policy").
pub(super) async fn build_policy(
    texts: PolicyTexts,
    own: SpiffeId,
) -> Result<CompiledPolicy, ReloadError> {
    refuse_empty(&texts)?;
    build(texts, own, None).await
}

/// The successor of the slice for `own` due at `at` (`expiry.rs`): the same texts, checked
/// and sliced as of `at`, without `tests:`.
pub(super) async fn build_successor(
    texts: PolicyTexts,
    own: SpiffeId,
    at: i64,
) -> Result<CompiledPolicy, ReloadError> {
    build(texts, own, Some(at)).await
}

/// The slice for `own` as of now (with its `tests:`), or the successor due at `at`: the
/// whole checked and the slice cut, then the slice compiled, on the policy thread.
async fn build(
    texts: PolicyTexts,
    own: SpiffeId,
    at: Option<i64>,
) -> Result<CompiledPolicy, ReloadError> {
    let cut = building(move || {
        let scope = Scope::identity(own);
        Fleet::cut_texts(&texts, &scope, at.unwrap_or_else(unix_now))
            .map_err(ReloadError::InvalidPolicy)
    })
    .await?;
    building(move || {
        match at {
            None => cut.compile(),
            Some(_) => cut.successor(),
        }
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

//! Builds a part of the state from the bytes a (re)load read, off the runtime: the policy
//! (parsed, validated with its `tests:`, compiled) and the credentials (certificate, key and
//! bundles checked). Nothing here publishes.

use std::time::SystemTime;

use super::PolicyTexts;
use super::error::{Part, ReloadError};
use super::files::{TlsFiles, blocking};
use crate::policy::{CompiledPolicy, PolicySource, compile};
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

/// Parses, validates (its `tests:` included) and compiles the policy texts off the runtime.
pub(super) async fn build_policy(texts: PolicyTexts) -> Result<CompiledPolicy, ReloadError> {
    // An empty file is a write in progress (truncate, then write), never a policy: taking
    // it would deny every request until the rest arrives. The next event brings it.
    if let Some((name, _)) = texts.iter().find(|(_, text)| text.trim().is_empty()) {
        return Err(ReloadError::EmptyPolicyFile { file: name.clone() });
    }
    blocking(Part::Policy, move || {
        let texts = texts
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str()));
        PolicySource::from_texts(texts)
            .and_then(|source| compile(&source))
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

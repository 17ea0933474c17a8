//! `policy_verify:` (docs/configuration.md, docs/fleet.md#signed-policy): the public keys a
//! policy must be signed by one of. The key files are read here, once: a sidecar's trusted
//! keys are fixed for its life, and a bad key stops it before anything is loaded, naming
//! its key path in the config.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, resolve_path};
use crate::signing::{PolicyKeys, VerifyKey};

/// `policy_verify:` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyVerify {
    /// Ed25519 public keys (SPKI PEM), each file relative to the config's folder.
    pub keys: Vec<PathBuf>,
}

/// Resolves and reads each key of `raw`.
///
/// # Errors
/// [`ConfigError::NoVerifyKeys`] for an empty list; [`ConfigError::EmptyPath`] and
/// [`ConfigError::BadVerifyKey`] naming `policy_verify.keys[i]`.
pub(super) fn resolve_policy_verify(
    raw: Option<RawPolicyVerify>,
    base_dir: &Path,
    file: &str,
) -> Result<Option<PolicyKeys>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.keys.is_empty() {
        return Err(ConfigError::NoVerifyKeys {
            file: file.to_owned(),
        });
    }
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (i, path) in raw.keys.iter().enumerate() {
        let key = format!("policy_verify.keys[{i}]");
        let path = resolve_path(path, base_dir, &key, file)?;
        let verify_key =
            VerifyKey::from_file(&path).map_err(|problem| ConfigError::BadVerifyKey {
                file: file.to_owned(),
                key,
                path: path.display().to_string(),
                problem,
            })?;
        keys.push(verify_key);
    }
    Ok(Some(PolicyKeys::new(keys)))
}

//! Signed policy (docs/fleet.md#signed-policy): a detached Ed25519 signature over the
//! [canonical digest](digest) of a policy's files, written beside them by `segward policy
//! sign` and checked, when the sidecar config sets `policy_verify`, against the very bytes a
//! (re)load compiles. A folder whose signature is missing, invalid or by none of the keys is
//! refused like a broken policy.
//!
//! [`digest`], [`keys`] and [`signature`] are pure (std and ring); the file system is touched
//! only here: where a policy's signature file is, reading it, writing it.

pub mod digest;
pub mod keys;
pub mod signature;

use std::io::Read as _;
use std::path::{Path, PathBuf};

pub use digest::{BadFileName, PolicyDigest};
pub use keys::{Fingerprint, KeyError, KeyPairPem, SigningKey, VerifyKey, generate};
pub use signature::SignatureFile;

use crate::atomic_file::AtomicWrite;
use signature::MAX_SIGNATURE_BYTES;

/// The signature file of a policy folder.
pub const FOLDER_SIGNATURE: &str = "policy.sig";

/// Why a policy is refused under `policy_verify` (or `policy check --verify-key`). Each
/// names the policy file or folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature file beside the policy.
    #[error("{policy}: policy signature missing: no {file} (sign with `segward policy sign`)")]
    Missing {
        /// The policy file or folder.
        policy: String,
        /// The signature file expected.
        file: String,
    },
    /// The signature file exists but cannot be read or parsed.
    #[error("{policy}: policy signature {file}: {problem}")]
    Malformed {
        /// The policy file or folder.
        policy: String,
        /// The signature file.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The signature names a key that is not one of the keys trusted.
    #[error("{policy}: signed by key {key}, which is none of the {trusted} key(s) trusted")]
    UnknownKey {
        /// The policy file or folder.
        policy: String,
        /// The key the signature names.
        key: Fingerprint,
        /// How many keys are trusted.
        trusted: usize,
    },
    /// The files are not the ones signed: changed, added, removed or renamed since.
    #[error(
        "{policy}: the policy files are not the ones signed (digest {actual}, signed {signed}): \
         a file was changed, added, removed or renamed after signing"
    )]
    NotSigned {
        /// The policy file or folder.
        policy: String,
        /// The digest of the files read.
        actual: PolicyDigest,
        /// The digest the signature file says was signed.
        signed: PolicyDigest,
    },
    /// The signature does not verify with the key it names.
    #[error("{policy}: the signature by key {key} does not verify")]
    BadSignature {
        /// The policy file or folder.
        policy: String,
        /// The key the signature names.
        key: Fingerprint,
    },
    /// A policy file's name cannot be covered by a signature.
    #[error("{policy}: {name}")]
    BadFileName {
        /// The policy file or folder.
        policy: String,
        /// The name and why.
        name: BadFileName,
    },
}

/// Why `segward policy sign` wrote no signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// A policy file's name cannot be covered by a signature.
    #[error("{0}")]
    BadFileName(SignatureError),
    /// The signature file cannot be written.
    #[error("{file}: cannot write: {message}")]
    Write {
        /// The signature file.
        file: String,
        /// The operating system's words.
        message: String,
    },
}

/// The public keys a policy must be signed by one of (`policy_verify.keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyKeys {
    keys: Vec<VerifyKey>,
}

impl PolicyKeys {
    /// Trusts each of `keys`.
    pub fn new(keys: Vec<VerifyKey>) -> Self {
        Self { keys }
    }

    /// The keys trusted.
    pub fn keys(&self) -> &[VerifyKey] {
        &self.keys
    }

    /// Checks the signature of the policy at `policy` over `files` — each `(name as read,
    /// bytes)`, the bytes about to be compiled; only the signature file is read here.
    /// Returns the key that signed.
    ///
    /// # Errors
    /// Every [`SignatureError`].
    pub fn verify<'a>(
        &self,
        policy: &Path,
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Fingerprint, SignatureError> {
        let named = policy.display().to_string();
        let signature = read_signature(policy)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.fingerprint() == signature.key)
            .ok_or(SignatureError::UnknownKey {
                policy: named.clone(),
                key: signature.key,
                trusted: self.keys.len(),
            })?;
        let actual = digest_of(policy, files)?;
        if actual != signature.digest {
            return Err(SignatureError::NotSigned {
                policy: named,
                actual,
                signed: signature.digest,
            });
        }
        if !key.verifies(&actual, &signature.signature) {
            return Err(SignatureError::BadSignature {
                policy: named,
                key: signature.key,
            });
        }
        Ok(signature.key)
    }
}

/// The signature file of the policy at `policy`: `policy.sig` inside a folder, `FILE.sig`
/// beside a single file.
pub fn signature_path(policy: &Path) -> PathBuf {
    if policy.is_dir() {
        return policy.join(FOLDER_SIGNATURE);
    }
    let mut name = policy.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// The canonical digest of `files` (each `(name as read, bytes)`): the names without their
/// folder.
///
/// # Errors
/// [`SignatureError::BadFileName`].
pub fn digest_of<'a>(
    policy: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<PolicyDigest, SignatureError> {
    let named = files
        .into_iter()
        .map(|(name, bytes)| (base_name(name), bytes));
    PolicyDigest::of(named).map_err(|name| SignatureError::BadFileName {
        policy: policy.display().to_string(),
        name,
    })
}

/// Signs `files` (as [`digest_of`] takes them) of the policy at `policy` with `key` and
/// writes the signature file, atomically. Returns the file written and what it holds.
///
/// # Errors
/// [`SignError`].
pub fn sign<'a>(
    policy: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    key: &SigningKey,
) -> Result<(PathBuf, SignatureFile), SignError> {
    let digest = digest_of(policy, files).map_err(SignError::BadFileName)?;
    let signature = SignatureFile {
        key: key.public().fingerprint(),
        digest,
        signature: key.sign(&digest),
    };
    let file = signature_path(policy);
    AtomicWrite::new()
        .write(&file, signature.to_string())
        .map_err(|e| SignError::Write {
            file: file.display().to_string(),
            message: e.to_string(),
        })?;
    Ok((file, signature))
}

/// A file's own name: what the loader read as `folder/name` is signed as `name`.
fn base_name(name: &str) -> &str {
    Path::new(name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(name)
}

/// The signature file of `policy`, read (at most [`MAX_SIGNATURE_BYTES`]) and parsed.
fn read_signature(policy: &Path) -> Result<SignatureFile, SignatureError> {
    let file = signature_path(policy);
    let malformed = |problem: String| SignatureError::Malformed {
        policy: policy.display().to_string(),
        file: file.display().to_string(),
        problem,
    };
    let handle = match std::fs::File::open(&file) {
        Ok(handle) => handle,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignatureError::Missing {
                policy: policy.display().to_string(),
                file: file.display().to_string(),
            });
        }
        Err(e) => return Err(malformed(format!("cannot read: {e}"))),
    };
    let mut text = String::new();
    handle
        .take(MAX_SIGNATURE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| malformed(format!("cannot read: {e}")))?;
    SignatureFile::parse(&text).map_err(malformed)
}

#[cfg(test)]
mod tests;

//! Signed policy (docs/fleet.md#signed-policy): a detached Ed25519 signature over the
//! [canonical digest](digest) of a policy's files, written beside them by `segward policy
//! sign` and checked, when the sidecar config sets `policy_verify`, against the very bytes a
//! (re)load compiles. A folder whose signature is missing, invalid or by none of the keys is
//! refused like a broken policy.
//!
//! [`digest`], [`keys`] and [`signature`] are pure (std and ring); the file system is touched
//! only here: where a policy's signature file is, reading it, writing it.

pub mod digest;
mod files;
pub mod keys;
pub mod signature;

use std::path::Path;

pub use digest::{BadFileName, PolicyDigest};
pub use files::{KeyFiles, digest_of, sign, signature_path, write_key_pair};
pub use keys::{Fingerprint, KeyError, KeyPairPem, SigningKey, VerifyKey, generate};
pub use signature::SignatureFile;

use files::read_signature;

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

/// Why a signature or key file was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A policy file's name cannot be covered by a signature.
    #[error("{0}")]
    BadFileName(SignatureError),
    /// `certs signing-key` never replaces a private key unless told to.
    #[error(
        "{0} exists; pass --force to replace it (sidecars trusting its public key will refuse policy signed by the new one)"
    )]
    KeyExists(String),
    /// A key could not be made.
    #[error("{0}")]
    Generate(KeyError),
    /// The file cannot be written.
    #[error("{file}: cannot write: {message}")]
    Write {
        /// The file.
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

#[cfg(test)]
mod tests;

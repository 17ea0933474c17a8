//! The file side of signed policy (docs/fleet.md#signed-policy): where a policy's signature
//! file is, reading and writing it, and writing a new key pair.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::signature::MAX_SIGNATURE_BYTES;
use super::{
    FOLDER_SIGNATURE, Fingerprint, PolicyDigest, SignatureError, SignatureFile, SigningKey,
    WriteError, generate,
};
use crate::atomic_file::AtomicWrite;

/// The private key's file name in `certs signing-key --out DIR`.
pub const PRIVATE_KEY_FILE: &str = "signing.key";
/// The public key's file name in `certs signing-key --out DIR`.
pub const PUBLIC_KEY_FILE: &str = "signing.pub";

/// The files `certs signing-key` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// `signing.key`: PKCS#8 PEM, mode 0600.
    pub private: PathBuf,
    /// `signing.pub`: SPKI PEM.
    pub public: PathBuf,
    /// The public key's name.
    pub fingerprint: Fingerprint,
}

/// `certs signing-key`: a new Ed25519 pair in `out` (created if missing): `signing.key`
/// (0600) and `signing.pub`. Refuses to replace a `signing.key` unless `force`.
///
/// # Errors
/// [`WriteError::KeyExists`], [`WriteError::Generate`], [`WriteError::Write`].
pub fn write_key_pair(out: &Path, force: bool) -> Result<KeyFiles, WriteError> {
    let private = out.join(PRIVATE_KEY_FILE);
    let public = out.join(PUBLIC_KEY_FILE);
    // symlink_metadata: a dangling symlink named signing.key also counts as a key in the way.
    if !force && fs::symlink_metadata(&private).is_ok() {
        return Err(WriteError::KeyExists(private.display().to_string()));
    }
    let pair = generate().map_err(WriteError::Generate)?;
    fs::create_dir_all(out).map_err(|e| write_error(out, &e))?;
    AtomicWrite::new()
        .mode(0o600)
        .write(&private, &pair.private_pem)
        .map_err(|e| write_error(&private, &e))?;
    AtomicWrite::new()
        .mode(0o644)
        .write(&public, &pair.public_pem)
        .map_err(|e| write_error(&public, &e))?;
    Ok(KeyFiles {
        private,
        public,
        fingerprint: pair.fingerprint,
    })
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
/// [`WriteError::BadFileName`], [`WriteError::Write`].
pub fn sign<'a>(
    policy: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    key: &SigningKey,
) -> Result<(PathBuf, SignatureFile), WriteError> {
    let digest = digest_of(policy, files).map_err(WriteError::BadFileName)?;
    let signature = SignatureFile {
        key: key.public().fingerprint(),
        digest,
        signature: key.sign(&digest),
    };
    let file = signature_path(policy);
    AtomicWrite::new()
        .write(&file, signature.to_string())
        .map_err(|e| write_error(&file, &e))?;
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
pub(super) fn read_signature(policy: &Path) -> Result<SignatureFile, SignatureError> {
    let file = signature_path(policy);
    let malformed = |problem: String| SignatureError::Malformed {
        policy: policy.display().to_string(),
        file: file.display().to_string(),
        problem,
    };
    let handle = match fs::File::open(&file) {
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

fn write_error(file: &Path, error: &std::io::Error) -> WriteError {
    WriteError::Write {
        file: file.display().to_string(),
        message: error.to_string(),
    }
}

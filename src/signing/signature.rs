//! The signature file (docs/fleet.md#signed-policy): four `key: value` lines, readable by an
//! operator and by YAML tools, never taken for a policy file (its name does not end in
//! `.yaml` or `.yml`).
//!
//! ```text
//! format: segward-policy-signature v1
//! key: sha256:<fingerprint of the signing key>
//! digest: sha256:<the canonical digest signed>
//! signature: <the 64-byte Ed25519 signature, 128 hex digits>
//! ```
//!
//! `digest` is there for people and for the error message: a verifier always computes the
//! digest from the bytes it is about to compile and checks the signature over that.

use std::fmt;

use super::digest::{PolicyDigest, hex, hex_decode};
use super::keys::Fingerprint;

/// The value of the `format` line.
pub const SIGNATURE_FORMAT: &str = "segward-policy-signature v1";

/// A signature file is never longer than this (a real one is about 330 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 4096;

/// One detached policy signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFile {
    /// The key that signed.
    pub key: Fingerprint,
    /// The canonical digest that was signed.
    pub digest: PolicyDigest,
    /// Ed25519 over the digest's 32 bytes.
    pub signature: [u8; 64],
}

impl fmt::Display for SignatureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "format: {SIGNATURE_FORMAT}")?;
        writeln!(f, "key: {}", self.key)?;
        writeln!(f, "digest: {}", self.digest)?;
        writeln!(f, "signature: {}", hex(&self.signature))
    }
}

impl SignatureFile {
    /// Parses the four lines, in order, each exactly once.
    ///
    /// # Errors
    /// What is wrong, in words, naming the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_SIGNATURE_BYTES {
            return Err(format!("over {MAX_SIGNATURE_BYTES} bytes"));
        }
        let mut lines = text.lines();
        let mut field = |name: &str| {
            let line = lines.next().ok_or(format!("no `{name}:` line"))?;
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(": "))
                .map(str::trim_end)
                .ok_or(format!("expected `{name}: …`, found `{line}`"))
        };
        let format = field("format")?;
        if format != SIGNATURE_FORMAT {
            return Err(format!(
                "format `{format}` is not `{SIGNATURE_FORMAT}` (a newer segward signed it?)"
            ));
        }
        let key = field("key")?;
        let key = Fingerprint::parse(key).ok_or(format!("key `{key}` is not sha256:<64 hex>"))?;
        let digest = field("digest")?;
        let digest = PolicyDigest::parse(digest)
            .ok_or(format!("digest `{digest}` is not sha256:<64 hex>"))?;
        let signature = field("signature")?;
        let signature =
            hex_decode::<64>(signature).ok_or("signature is not 128 hex digits".to_owned())?;
        if lines.any(|line| !line.trim().is_empty()) {
            return Err("text after the `signature:` line".to_owned());
        }
        Ok(Self {
            key,
            digest,
            signature,
        })
    }
}

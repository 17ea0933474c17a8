//! The canonical digest of a policy (docs/fleet.md#signed-policy): what a policy signature
//! covers. It depends only on the policy files' names and bytes — never on the folder they
//! sit in, the order they were read in or the time — so a folder signed in CI verifies where
//! a sidecar mounts it.
//!
//! Version 1 is the SHA-256 of this text (UTF-8), one line per policy file sorted by the
//! bytes of its name, in `sha256sum`'s own format:
//!
//! ```text
//! segward-policy-digest v1
//! <SHA-256 of the file's bytes, 64 lower-case hex digits>  <file name>
//! ...
//! ```
//!
//! The first line separates this use of SHA-256 from any other and names the format's
//! version; a name is the file's own name without its folder. A name holding a line break is
//! refused, so no two sets of files share one text.

use std::fmt;

use ring::digest::{SHA256, digest};

/// The first line of the canonical text: purpose and format version.
pub const DIGEST_HEADER: &str = "segward-policy-digest v1\n";

/// The canonical digest of a policy's files (SHA-256 of [`canonical_text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyDigest([u8; 32]);

/// A file name the canonical text cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file name {0:?} holds a line break, which a policy signature cannot cover")]
pub struct BadFileName(pub String);

impl PolicyDigest {
    /// The digest of `files`, each `(file name, bytes)`, in any order.
    ///
    /// # Errors
    /// [`BadFileName`] for a name holding a line break.
    pub fn of<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, BadFileName> {
        let text = canonical_text(files)?;
        Ok(Self(sha256(text.as_bytes())))
    }

    /// The 32 bytes: what a policy signature signs.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses `sha256:<64 hex digits>`, the form [`fmt::Display`] writes.
    pub fn parse(text: &str) -> Option<Self> {
        let hex_digits = text.strip_prefix("sha256:")?;
        hex_decode::<32>(hex_digits).map(Self)
    }
}

impl fmt::Display for PolicyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex(&self.0))
    }
}

/// The text [`PolicyDigest`] hashes: [`DIGEST_HEADER`], then `<sha256 hex>  <name>` per file
/// in the byte order of the names.
///
/// # Errors
/// [`BadFileName`] for a name holding a line break.
pub fn canonical_text<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<String, BadFileName> {
    let mut named = Vec::new();
    for (name, bytes) in files {
        if name.contains(['\n', '\r']) {
            return Err(BadFileName(name.to_owned()));
        }
        named.push((name, sha256(bytes)));
    }
    named.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut text = String::from(DIGEST_HEADER);
    for (name, hash) in named {
        text.push_str(&hex(&hash));
        text.push_str("  ");
        text.push_str(name);
        text.push('\n');
    }
    Ok(text)
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Lower-case hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// `N` bytes from exactly `2N` hex digits (either case); `None` otherwise.
pub(crate) fn hex_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

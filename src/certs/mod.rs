//! The PKI behind `segward certs init|issue|inspect` (docs/cli.md): an ECDSA P-256 CA and
//! X509-SVID leaves minted with rcgen, in memory ([`Ca`], for tests and the demo) or as files.
//! Uses only `identity`; used by the CLI, the demo and tests. Never prints key material.
//! Here: the error type, file names and limits, and the PEM reading the submodules share.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use x509_parser::pem::Pem;

mod ca;
mod files;
mod inspect;

pub use ca::{Ca, IssuedSvid, svid_params};
pub use files::{CaFiles, SvidFiles, init, issue, parse_ttl};
pub use inspect::{Inspection, inspect};

/// The CA certificate written by `init`.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key written by `init` (PKCS#8 PEM, mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// The trust bundle (CA certificates) written by `init` and `issue`.
pub const BUNDLE_FILE: &str = "bundle.pem";
/// The SVID chain written by `issue`: the leaf, then the CA certificate.
pub const SVID_CERT_FILE: &str = "svid.pem";
/// The SVID private key written by `issue` (PKCS#8 PEM, mode 0600).
pub const SVID_KEY_FILE: &str = "svid.key";
/// How far in the past every certificate starts, so that peers with slow clocks accept it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// Lifetime of a CA made by [`Ca::new`].
pub const CA_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// The longest TTL [`parse_ttl`] accepts: 3650 days.
pub const MAX_TTL: Duration = crate::duration::TTL.max;

/// Why a certs command failed; file problems name the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertsError {
    /// A file or directory could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        message: String,
    },
    /// `init` found a CA key: replacing it silently would orphan every SVID it issued.
    #[error(
        "{}: a CA key already exists; pass --force to replace it (SVIDs it issued stop verifying)",
        .0.display()
    )]
    KeyExists(PathBuf),
    /// A file does not hold what it should (PEM certificate, private key, CA certificate).
    #[error("{}: {problem}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// "A leaf's ID must have a non-empty path" (docs/security.md).
    #[error("cannot issue an SVID for `{0}`: a leaf's ID must have a non-empty path")]
    RootId(String),
    /// "A CA of one trust domain cannot vouch for another" (docs/security.md): `issue` refuses an
    /// ID outside the trust domain named by the CA certificate's `spiffe://<td>` URI SAN.
    #[error(
        "cannot issue an SVID in trust domain `{id}` with a CA of trust domain `{ca}`: a CA of \
         one trust domain cannot vouch for another; use a CA made with --trust-domain {id}"
    )]
    TrustDomainMismatch {
        /// The trust domain of the CA certificate's SPIFFE URI SAN.
        ca: String,
        /// The trust domain of the SPIFFE ID asked for.
        id: String,
    },
    /// A DNS SAN must be a DNS name: dot-separated labels of `[A-Za-z0-9-]`, 1–63 characters,
    /// not starting or ending with `-`, at most 253 characters, optionally `*.` first.
    #[error(
        "invalid DNS name `{0}`: use dot-separated labels of letters, digits and `-` (1-63 \
         characters, not starting or ending with `-`), at most 253 characters in all, \
         optionally starting with `*.`"
    )]
    BadDnsName(String),
    /// A TTL is not a positive whole number of s, m, h or d, at most 3650d.
    #[error("invalid TTL `{input}`: {problem}")]
    BadTtl {
        /// What the user typed.
        input: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// rcgen refused to build or sign a certificate.
    #[error("cannot generate the certificate: {0}")]
    Generate(rcgen::Error),
}

impl CertsError {
    /// Short, bounded label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::KeyExists(_) => "key-exists",
            Self::BadFile { .. } => "bad-file",
            Self::RootId(_) => "root-id",
            Self::TrustDomainMismatch { .. } => "trust-domain-mismatch",
            Self::BadDnsName(_) => "bad-dns-name",
            Self::BadTtl { .. } => "bad-ttl",
            Self::Generate(_) => "generate",
        }
    }
}

impl From<rcgen::Error> for CertsError {
    fn from(error: rcgen::Error) -> Self {
        Self::Generate(error)
    }
}

/// The DER of every CERTIFICATE block in `text`; at least one.
fn certificates(path: &Path, text: &[u8]) -> Result<Vec<Vec<u8>>, CertsError> {
    let mut ders = Vec::new();
    for pem in Pem::iter_from_buffer(text) {
        let pem = pem.map_err(|e| bad_file(path, format!("bad PEM: {e}")))?;
        if pem.label == "CERTIFICATE" {
            ders.push(pem.contents);
        }
    }
    if ders.is_empty() {
        return Err(bad_file(path, "no PEM CERTIFICATE block".into()));
    }
    Ok(ders)
}

/// The `CERTIFICATE` blocks of a PEM text, each ending in a newline; nothing else.
fn certificate_blocks(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let (mut blocks, mut rest) = (String::new(), text);
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        blocks.push_str(&rest[start..start + len + END.len()]);
        blocks.push('\n');
        rest = &rest[start + len + END.len()..];
    }
    blocks
}

fn read_text(path: &Path) -> Result<String, CertsError> {
    fs::read_to_string(path).map_err(|e| io_error(path, &e))
}

fn io_error(path: &Path, error: &io::Error) -> CertsError {
    CertsError::Io {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

fn bad_file(path: &Path, problem: String) -> CertsError {
    CertsError::BadFile {
        path: path.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests;

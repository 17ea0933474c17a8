//! [`VerifiedChains`]: certificate chains that passed the full check (X509-SVID rules, trust
//! domain, webpki path validation) under one [`super::TlsMaterial`], so that the next
//! handshake presenting the very same chain skips path validation — a P-256 signature
//! check and the chain walk, a quarter of the inbound's CPU per handshake.
//!
//! What a hit still requires, every time:
//! - the exact bytes: the key is the whole chain as presented (leaf and intermediates), and a
//!   lookup compares it byte for byte — never a digest alone;
//! - the time: `now` must lie inside the validity window of every certificate presented
//!   (leaf and intermediates); outside it the chain is checked in full again, which yields
//!   the precise error (`expired`, `not-yet-valid`);
//! - the material: the cache belongs to one material generation; a reload that changes a
//!   bundle or our own SVID builds a new, empty one, so a removed trust domain or a re-keyed
//!   CA can never be satisfied from the cache.
//!
//! The handshake signature (TLS 1.3 CertificateVerify) is never cached: it proves that the
//! peer holds the key, over this handshake's transcript. Failures are never cached either.
//! The cache is bounded ([`MAX_CHAINS`]); when full it is emptied and refilled by the chains
//! in use.

use std::collections::HashMap;
use std::sync::Mutex;

use rustls::pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::{SpiffeId, Svid};

/// At most this many chains per material and direction. A sidecar talks to a handful of peer
/// identities; each distinct SVID (rotated hourly by SPIRE) is one entry of ~1–2 KiB.
pub const MAX_CHAINS: usize = 256;

/// Chains verified under one material; see the module docs for what a hit requires.
#[derive(Debug, Default)]
pub struct VerifiedChains {
    chains: Mutex<HashMap<Box<[u8]>, Verified>>,
}

/// What a full verification established about a chain.
#[derive(Debug, Clone)]
struct Verified {
    id: SpiffeId,
    /// Latest notBefore of the certificates presented, unix seconds.
    not_before: i64,
    /// Earliest notAfter of the certificates presented, unix seconds.
    not_after: i64,
}

impl VerifiedChains {
    /// The SPIFFE ID of `leaf` + `intermediates` if exactly this chain passed the full check
    /// under this material and every certificate of it is valid at `now`.
    pub fn get(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Option<SpiffeId> {
        let key = key(leaf, intermediates);
        let now = seconds(now);
        let chains = self.chains.lock().ok()?;
        let verified = chains.get(&key)?;
        (verified.not_before..=verified.not_after)
            .contains(&now)
            .then(|| verified.id.clone())
    }

    /// Records that `leaf` + `intermediates` passed the full check, `svid` being the leaf's
    /// X509-SVID. A chain whose intermediates cannot be read for their validity window is
    /// not recorded (it is simply checked in full every time).
    pub fn insert(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        svid: &Svid,
    ) {
        let Some((not_before, not_after)) = window(svid, intermediates) else {
            return;
        };
        let verified = Verified {
            id: svid.id.clone(),
            not_before,
            not_after,
        };
        let Ok(mut chains) = self.chains.lock() else {
            return;
        };
        if chains.len() >= MAX_CHAINS {
            chains.clear();
        }
        chains.insert(key(leaf, intermediates), verified);
    }

    /// How many chains are remembered (for tests and the curious).
    pub fn len(&self) -> usize {
        self.chains.lock().map(|chains| chains.len()).unwrap_or(0)
    }

    /// Whether no chain is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The chain as one byte string: each certificate preceded by its length, so that no two
/// different chains share a key.
fn key(leaf: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Box<[u8]> {
    let total = std::iter::once(leaf)
        .chain(intermediates)
        .map(|cert| cert.len() + 8)
        .sum();
    let mut key = Vec::with_capacity(total);
    for cert in std::iter::once(leaf).chain(intermediates) {
        key.extend_from_slice(&(cert.len() as u64).to_be_bytes());
        key.extend_from_slice(cert);
    }
    key.into_boxed_slice()
}

/// The window in which every certificate presented is valid; `None` if an intermediate does
/// not parse.
fn window(svid: &Svid, intermediates: &[CertificateDer<'_>]) -> Option<(i64, i64)> {
    let mut not_before = svid.not_before;
    let mut not_after = svid.not_after;
    for der in intermediates {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let validity = cert.validity();
        not_before = not_before.max(validity.not_before.timestamp());
        not_after = not_after.min(validity.not_after.timestamp());
    }
    Some((not_before, not_after))
}

fn seconds(now: UnixTime) -> i64 {
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

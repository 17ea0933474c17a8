//! [`VerifiedChains`]: certificate chains that passed the full check (X509-SVID rules, trust
//! domain, webpki path validation) under one [`super::TlsMaterial`], so that the next
//! handshake presenting the very same chain skips path validation — a P-256 signature
//! check and the chain walk, a quarter of the inbound's CPU per handshake.
//!
//! What a hit still requires, every time:
//! - the exact bytes: the leaf is the key and the intermediates presented with it are
//!   compared byte for byte — never a digest alone (a lookup copies nothing);
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
    /// Keyed by the leaf's DER; the intermediates it was presented with are in the entry.
    chains: Mutex<HashMap<Box<[u8]>, Verified>>,
}

/// What a full verification established about a chain.
#[derive(Debug, Clone)]
struct Verified {
    /// The intermediates presented with the leaf, exactly.
    intermediates: Vec<Box<[u8]>>,
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
        let now = seconds(now);
        let chains = self.chains.lock().ok()?;
        let verified = chains.get(leaf.as_ref())?;
        let same_chain = verified.intermediates.len() == intermediates.len()
            && verified
                .intermediates
                .iter()
                .zip(intermediates)
                .all(|(kept, presented)| **kept == **presented);
        (same_chain && (verified.not_before..=verified.not_after).contains(&now))
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
            intermediates: intermediates
                .iter()
                .map(|der| Box::from(der.as_ref()))
                .collect(),
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
        chains.insert(Box::from(leaf.as_ref()), verified);
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

//! SPIFFE-aware certificate verification (docs/security.md): [`SpiffeClientVerifier`] over one
//! set of bundles, and the peer checks it shares with the outbound `SpiffeServerVerifier`
//! (`current.rs`, which reads the bundles in force at each handshake). Both follow one order:
//! 1. the leaf must pass the X509-SVID rules ([`Svid::from_der`]) for the peer's role, and
//!    every intermediate presented the signing-certificate rules (CA:true, keyCertSign:
//!    [`check_signers`]; webpki does not check keyCertSign);
//! 2. the trust domain of the peer's own SPIFFE ID picks the bundle — "a CA of one trust
//!    domain cannot vouch for another", so an unknown trust domain fails;
//! 3. only then webpki path validation runs, against that bundle alone;
//! 4. outbound only: the peer's ID must equal the destination's `spiffe_id`. It replaces the
//!    DNS name check, which never runs.
//!
//! Steps 1–3 are skipped for a chain that passed them under the same material, byte for
//! byte, while all its certificates are within their validity ([`VerifiedChains`]); step 4
//! and the handshake signature run every time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};

use super::TlsError;
use super::chains::VerifiedChains;
use crate::identity::{Role, SpiffeId, Svid, check_signers};

/// Verifies inbound peers' client certificates: X509-SVID rules, then the webpki client
/// verifier (clientAuth EKU) of the peer's own trust domain. A certificate is mandatory.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    by_trust_domain: BTreeMap<String, Arc<dyn ClientCertVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    verified: VerifiedChains,
}

impl SpiffeClientVerifier {
    /// Builds one webpki client verifier per trust domain of `bundles`, once.
    ///
    /// # Errors
    /// [`TlsError::Config`] if rustls refuses a bundle (for instance an empty one).
    pub fn new(
        bundles: &BTreeMap<String, Arc<RootCertStore>>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let by_trust_domain = bundles
            .iter()
            .map(|(trust_domain, roots)| {
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map(|verifier| (trust_domain.clone(), verifier))
                    .map_err(|e| TlsError::Config {
                        problem: format!("bundle of {trust_domain}: {e}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            by_trust_domain,
            algorithms: provider.signature_verification_algorithms,
            verified: VerifiedChains::default(),
        })
    }

    /// The client chains this verifier has fully checked.
    pub fn verified_chains(&self) -> &VerifiedChains {
        &self.verified
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if self.verified.get(end_entity, intermediates, now).is_some() {
            return Ok(ClientCertVerified::assertion());
        }
        let svid = peer_svid(end_entity, Role::Client, now)?;
        peer_signers(intermediates)?;
        let webpki = self
            .by_trust_domain
            .get(svid.id.trust_domain())
            .ok_or_else(|| unknown_trust_domain(&svid.id))?;
        webpki.verify_client_cert(end_entity, intermediates, now)?;
        self.verified.insert(end_entity, intermediates, &svid);
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The peer's leaf as an X509-SVID for `role` at the handshake's `now`.
pub(super) fn peer_svid(
    leaf: &CertificateDer<'_>,
    role: Role,
    now: UnixTime,
) -> Result<Svid, Error> {
    let now = UNIX_EPOCH + Duration::from_secs(now.as_secs());
    Svid::from_der(leaf, role, now).map_err(|e| reject(TlsError::PeerSvid(e)))
}

/// Every intermediate the peer presented must be a signing certificate (CA:true and
/// keyCertSign): webpki checks CA:true on the path it builds, but not keyCertSign.
pub(super) fn peer_signers(intermediates: &[CertificateDer<'_>]) -> Result<(), Error> {
    check_signers(intermediates)
        .map_err(|(position, error)| reject(TlsError::PeerSigner { position, error }))
}

pub(super) fn unknown_trust_domain(id: &SpiffeId) -> Error {
    reject(TlsError::UnknownTrustDomain {
        trust_domain: id.trust_domain().to_owned(),
    })
}

/// A certificate failure carrying our [`TlsError`], so that its `reason()` can be read back
/// from the handshake error (see [`TlsError::from_handshake`]).
pub(super) fn reject(error: TlsError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

impl TlsError {
    /// Our [`TlsError`] inside a rustls handshake error, if a SPIFFE verifier produced it
    /// (webpki's own failures, such as an unknown issuer, stay plain rustls errors).
    pub fn from_handshake(error: &Error) -> Option<&TlsError> {
        match error {
            Error::InvalidCertificate(CertificateError::Other(OtherError(other))) => {
                other.downcast_ref::<TlsError>()
            }
            _ => None,
        }
    }
}

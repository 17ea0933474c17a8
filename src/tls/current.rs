//! What reads the material in force at each handshake ([`LiveTls::current`]): the resolver
//! presenting our current SVID chain, the client-certificate verifier delegating to the
//! current bundles' [`SpiffeClientVerifier`], and [`SpiffeServerVerifier`] for outbound
//! servers. The configs of [`super::server_config`] and [`super::client_config`] hold these,
//! never material, so a reload applies to the next handshake. The checks themselves, in their
//! one order, are `verify.rs`'s.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::TlsError;
use super::material::LiveTls;
use super::verify::{peer_signers, peer_svid, reject, unknown_trust_domain};
use crate::identity::{Role, SpiffeId};

/// Presents the current SVID chain, as server (inbound) and as client (outbound).
#[derive(Debug)]
pub(super) struct CurrentCert(pub(super) LiveTls);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().credentials().certified_key())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().credentials().certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Checks inbound peers with the current bundles' [`SpiffeClientVerifier`].
#[derive(Debug)]
pub(super) struct CurrentClientVerifier(pub(super) LiveTls);

impl ClientCertVerifier for CurrentClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // SPIFFE peers pick their SVID by identity, not by CA names.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let material = self.0.current();
        material
            .client_verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let material = self.0.current();
        material
            .client_verifier()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let material = self.0.current();
        material
            .client_verifier()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .current()
            .client_verifier()
            .supported_verify_schemes()
    }
}

/// Verifies an outbound server: X509-SVID rules, webpki path validation (serverAuth EKU)
/// against the current bundle of the server's own trust domain, then its ID against
/// `expected`.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    expected: SpiffeId,
    tls: LiveTls,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// A verifier that accepts only a server proving `expected`, vouched for by the bundle of
    /// `expected`'s trust domain in `tls`' material at the time of the handshake.
    pub fn new(expected: SpiffeId, tls: LiveTls, provider: &Arc<CryptoProvider>) -> Self {
        Self {
            expected,
            tls,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        // The expected SPIFFE ID replaces the name check: DNS names are never consulted.
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let material = self.tls.current();
        let verified = material.server_chains();
        let id = match verified.get(end_entity, intermediates, now) {
            Some(id) => id,
            None => {
                let svid = peer_svid(end_entity, Role::Server, now)?;
                peer_signers(intermediates)?;
                let roots = material
                    .credentials()
                    .bundles()
                    .get(svid.id.trust_domain())
                    .ok_or_else(|| unknown_trust_domain(&svid.id))?;
                let parsed = ParsedCertificate::try_from(end_entity)?;
                verify_server_cert_signed_by_trust_anchor(
                    &parsed,
                    roots,
                    intermediates,
                    now,
                    self.algorithms.all,
                )?;
                verified.insert(end_entity, intermediates, &svid);
                svid.id
            }
        };
        if id != self.expected {
            return Err(reject(TlsError::WrongPeerId {
                expected: self.expected.to_string(),
                actual: id.to_string(),
            }));
        }
        Ok(ServerCertVerified::assertion())
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

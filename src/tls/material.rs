//! [`LiveTls`]: the TLS material in force — our SVID chain and key, and the verifiers of each
//! trust domain's bundle, all built from one [`Credentials`] — swapped as a whole on reload
//! (PRODUCT.md §5). The configs of [`super::server_config`] and [`super::client_config`] hold
//! no material themselves: their resolvers and verifiers read the current one at each
//! handshake, so a rotated SVID or a changed bundle applies to the next handshake while open
//! connections carry on.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::chains::VerifiedChains;
use super::{Credentials, SpiffeClientVerifier, TlsError, crypto_provider};

/// One consistent set of TLS material: credentials and the client verifier of their bundles.
#[derive(Debug)]
pub struct TlsMaterial {
    credentials: Credentials,
    client_verifier: SpiffeClientVerifier,
    server_chains: VerifiedChains,
}

impl TlsMaterial {
    /// The credentials this material was built from.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The verifier of inbound peers' client certificates under this material.
    pub fn client_verifier(&self) -> &SpiffeClientVerifier {
        &self.client_verifier
    }

    /// Outbound servers' chains fully checked under this material (any destination: the
    /// expected ID is compared on every handshake, cached or not).
    pub fn server_chains(&self) -> &VerifiedChains {
        &self.server_chains
    }
}

/// The current [`TlsMaterial`], shared by every TLS config of one sidecar; cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveTls(Arc<ArcSwap<TlsMaterial>>);

impl LiveTls {
    /// Live material starting from `credentials`.
    ///
    /// # Errors
    /// [`TlsError::Config`] if rustls refuses a bundle.
    pub fn new(credentials: Credentials) -> Result<Self, TlsError> {
        Ok(Self(Arc::new(ArcSwap::from_pointee(build(credentials)?))))
    }

    /// The material for one handshake (or one look): take it, use it, drop it.
    pub fn current(&self) -> Guard<Arc<TlsMaterial>> {
        self.0.load()
    }

    /// Makes `credentials` (already checked by their constructor) the material of the next
    /// handshakes. On error the current material stays.
    ///
    /// # Errors
    /// [`TlsError::Config`] if rustls refuses a bundle.
    pub fn publish(&self, credentials: Credentials) -> Result<(), TlsError> {
        self.0.store(Arc::new(build(credentials)?));
        Ok(())
    }
}

fn build(credentials: Credentials) -> Result<TlsMaterial, TlsError> {
    let client_verifier = SpiffeClientVerifier::new(credentials.bundles(), &crypto_provider())?;
    Ok(TlsMaterial {
        credentials,
        client_verifier,
        server_chains: VerifiedChains::default(),
    })
}

/// Presents the current SVID chain, as server (inbound) and as client (outbound).
#[derive(Debug)]
pub(super) struct CurrentCert(pub(super) LiveTls);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().credentials.certified_key())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().credentials.certified_key())
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
            .client_verifier
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
            .client_verifier
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
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().client_verifier.supported_verify_schemes()
    }
}

//! [`LiveTls`]: the TLS material in force — our SVID chain and key, and the verifiers of each
//! trust domain's bundle, all built from one [`Credentials`] — swapped as a whole on reload
//! (docs/operations.md). The configs of [`super::server_config`] and [`super::client_config`] hold
//! no material themselves: their resolvers and verifiers (`current.rs`) read the current one
//! at each handshake, so a rotated SVID or a changed bundle applies to the next handshake while open
//! connections carry on.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::chains::VerifiedChains;
use super::verify::SpiffeClientVerifier;
use super::{Credentials, TlsError, crypto_provider};

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

    /// Makes `material` (from [`TlsMaterial::new`]) the material of the next handshakes;
    /// cannot fail, so a caller publishing it with something else builds both first.
    pub fn install(&self, material: TlsMaterial) {
        self.0.store(Arc::new(material));
    }
}

impl TlsMaterial {
    /// The material of `credentials` (already checked by their constructor), not yet in
    /// force: see [`LiveTls::install`].
    ///
    /// # Errors
    /// [`TlsError::Config`] if rustls refuses a bundle.
    pub fn new(credentials: Credentials) -> Result<Self, TlsError> {
        build(credentials)
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

//! rustls glue (docs/security.md): our own PEM [`Credentials`], SPIFFE-aware verifiers that pick
//! the bundle of the trust domain named in the peer's ID, and the server and client configs.
//!
//! The configs read their certificate and bundles from [`LiveTls`] at each handshake, so a
//! reload applies to the next handshake. One crypto provider (ring) serves every config and
//! verifier: see [`crypto_provider`].
//! Never call rustls' `builder()`, which picks a process-level provider implicitly.

mod chains;
mod config;
mod credentials;
mod current;
mod error;
mod material;
mod verify;

use std::sync::{Arc, OnceLock};

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;

pub use chains::{MAX_CHAINS, VerifiedChains};
pub use config::{TlsOptions, client_config, server_config, tcp_client_config, tcp_server_config};
pub use credentials::{Bundle, Credentials, read_file};
pub use current::SpiffeServerVerifier;
pub use error::{TlsError, handshake_failure_reason};
pub use material::{LiveTls, TlsMaterial};
pub use verify::SpiffeClientVerifier;

/// The one crypto provider (ring) shared by every config and verifier of the process.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = rustls::crypto::ring::default_provider();
            // AES-128-GCM-SHA256 first: every key exchange and signature here is a 128-bit
            // security level curve (X25519, P-256), so AES-256 and a SHA-384 key schedule add
            // cost per handshake and per record, not strength (Go's TLS server makes the
            // same choice). Servers apply this order over the client's.
            provider
                .cipher_suites
                .sort_by_key(|suite| suite.suite() != CipherSuite::TLS13_AES_128_GCM_SHA256);
            Arc::new(provider)
        })
        .clone()
}

#[cfg(test)]
mod tests;

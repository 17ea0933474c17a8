//! The rustls configs of the data plane: [`server_config`] for inbound mTLS and
//! [`client_config`] for outbound mTLS. Both use our SPIFFE verifiers and the one provider.

use std::sync::Arc;

use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

use super::current::{CurrentCert, CurrentClientVerifier};
use super::{LiveTls, SpiffeServerVerifier, TlsError, crypto_provider};
use crate::identity::SpiffeId;

/// ALPN protocols offered and accepted, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Knobs of the TLS configs. "TLS 1.3 by default (1.2 may be enabled in config)".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Also allow TLS 1.2. Off by default.
    pub tls12: bool,
}

/// The inbound server config: a client certificate is required and checked by the current
/// bundles' [`super::SpiffeClientVerifier`]; we present our current SVID chain. Both are read
/// from `tls` at each handshake.
///
/// # Errors
/// [`TlsError::Config`] if rustls refuses the versions.
pub fn server_config(tls: &LiveTls, options: TlsOptions) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions(options))
        .map_err(config_error)?
        .with_client_cert_verifier(Arc::new(CurrentClientVerifier(tls.clone())))
        .with_cert_resolver(Arc::new(CurrentCert(tls.clone())));
    config.alpn_protocols = alpn();
    // Our cipher suite order, not the client's (see `crypto_provider`).
    config.ignore_client_order = true;
    // No session resumption: a resumed session skips client-certificate verification, so a
    // peer holding a session would outlive a removed bundle or a rotated CA. Every
    // connection is a full handshake against the bundles in force.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The outbound client config for one destination: the server must prove `expected`
/// ([`SpiffeServerVerifier`]); we present our current SVID chain as the client certificate.
/// Both are read from `tls` at each handshake.
///
/// # Errors
/// [`TlsError::Config`] if rustls refuses the versions.
pub fn client_config(
    tls: &LiveTls,
    expected: &SpiffeId,
    options: TlsOptions,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = crypto_provider();
    let verifier = SpiffeServerVerifier::new(expected.clone(), tls.clone(), &provider);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(options))
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(CurrentCert(tls.clone())));
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// [`server_config`] for a TCP listener: the same verifier and certificate, no ALPN (the
/// bytes inside are not HTTP; a client offering ALPN still connects).
///
/// # Errors
/// As [`server_config`].
pub fn tcp_server_config(
    tls: &LiveTls,
    options: TlsOptions,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = Arc::unwrap_or_clone(server_config(tls, options)?);
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// [`client_config`] for a TCP destination: the server must prove `expected`; no ALPN.
///
/// # Errors
/// As [`client_config`].
pub fn tcp_client_config(
    tls: &LiveTls,
    expected: &SpiffeId,
    options: TlsOptions,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = Arc::unwrap_or_clone(client_config(tls, expected, options)?);
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

fn versions(options: TlsOptions) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static TLS13_AND_12: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    if options.tls12 {
        &TLS13_AND_12
    } else {
        &TLS13_ONLY
    }
}

fn alpn() -> Vec<Vec<u8>> {
    ALPN.iter().map(|protocol| protocol.to_vec()).collect()
}

fn config_error(error: rustls::Error) -> TlsError {
    TlsError::Config {
        problem: error.to_string(),
    }
}

//! [`TlsError`]: what can be wrong with our own TLS material, or with a peer's certificate
//! beyond what webpki reports.

use crate::identity::SvidError;

/// Why TLS material was refused at load time, or a peer's certificate during a handshake.
/// Load-time variants name the file at fault (or `<label>` for in-memory PEM).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read: fail closed, nothing starts without its material.
    #[error("{file}: cannot read: {problem}")]
    Io {
        /// The file that could not be read.
        file: String,
        /// The operating system's message.
        problem: String,
    },
    /// The text is not well-formed PEM.
    #[error("{file}: not valid PEM: {problem}")]
    BadPem {
        /// The file at fault.
        file: String,
        /// What the PEM parser reported.
        problem: String,
    },
    /// "Certificate, key and bundles loaded from PEM": the certificate file holds no
    /// `CERTIFICATE` block.
    #[error("{file}: no PEM CERTIFICATE block; expected the SVID leaf, then its chain")]
    NoCertificate {
        /// The certificate file.
        file: String,
    },
    /// The key file holds no PKCS#8, PKCS#1 or SEC1 private key block.
    #[error("{file}: no PEM private key block")]
    NoPrivateKey {
        /// The key file.
        file: String,
    },
    /// The private key is of a type or curve the crypto provider cannot sign with.
    #[error("{file}: unsupported private key: {problem}")]
    UnsupportedKey {
        /// The key file.
        file: String,
        /// What rustls reported.
        problem: String,
    },
    /// Our own leaf must be an X509-SVID usable both as a client and as a server certificate.
    #[error("{file}: the first certificate is not a usable X509-SVID: {error}")]
    InvalidSvid {
        /// The certificate file.
        file: String,
        /// The leaf rule it broke.
        error: SvidError,
    },
    /// The private key does not belong to the leaf certificate.
    #[error("{key}: this private key does not belong to the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// A bundle must hold at least one CA certificate, or its trust domain trusts nothing.
    #[error("{file}: bundle for trust domain {trust_domain} holds no PEM CERTIFICATE block")]
    EmptyBundle {
        /// The bundle file.
        file: String,
        /// The trust domain it was configured for.
        trust_domain: String,
    },
    /// A bundle certificate cannot serve as a webpki trust anchor.
    #[error("{file}: bundle certificate is not a usable trust anchor: {problem}")]
    BadTrustAnchor {
        /// The bundle file.
        file: String,
        /// What rustls reported.
        problem: String,
    },
    /// One bundle per trust domain: two would leave it unclear which one vouches.
    #[error("trust domain {trust_domain} has more than one bundle")]
    DuplicateBundle {
        /// The trust domain named twice.
        trust_domain: String,
    },
    /// Fail closed: with no bundle no peer could ever be verified.
    #[error("no trust bundle configured; at least one trust domain's bundle is needed")]
    NoBundles,
    /// A SPIFFE Workload API response that cannot be our identity: no SVID, DER that does
    /// not parse, an `spiffe_id` that is not the leaf's, an empty or misnamed bundle.
    #[error("SPIFFE Workload API response refused: {problem}")]
    BadSvidResponse {
        /// What is wrong with it.
        problem: String,
    },
    /// Our own chain, certificate `position` (2 is the first after the leaf), is not a
    /// signing certificate: X509-SVID §4.1/§4.3 want CA:true and keyCertSign.
    #[error(
        "{file}: certificate {position} of the chain is not a valid signing certificate: {error}"
    )]
    OwnSigner {
        /// The certificate file (or Workload API label).
        file: String,
        /// 1-based position in the file; the leaf is 1.
        position: usize,
        /// The signing-certificate rule it broke.
        error: SvidError,
    },
    /// Our own chain must verify against our own trust domain's bundle, as every peer in it
    /// will check it: an SVID from another CA, a missing intermediate or a stale bundle
    /// would otherwise start and fail every handshake.
    #[error(
        "{file}: our own chain does not verify against the bundle of our trust domain \
         {trust_domain}: {problem}; peers would refuse every handshake"
    )]
    OwnChainUntrusted {
        /// The certificate file (or Workload API label).
        file: String,
        /// Our trust domain.
        trust_domain: String,
        /// What webpki reported.
        problem: String,
    },
    /// No bundle for our own trust domain: neither our chain nor any peer of our own trust
    /// domain could be verified.
    #[error(
        "{file}: no trust bundle for our own trust domain {trust_domain}; configure one \
         (trust_bundles.{trust_domain}) so our chain can be checked"
    )]
    OwnTrustDomainUnbundled {
        /// The certificate file (or Workload API label).
        file: String,
        /// Our trust domain.
        trust_domain: String,
    },
    /// A peer's chain holds an intermediate that is not a signing certificate (CA:true and
    /// keyCertSign, X509-SVID §4.1/§4.3); webpki alone would accept one without keyCertSign.
    #[error("peer chain certificate {position} is not a valid signing certificate: {error}")]
    PeerSigner {
        /// 1-based position in the presented chain; the leaf is 1.
        position: usize,
        /// The signing-certificate rule it broke.
        error: SvidError,
    },
    /// rustls refused to build a config or verifier (a bug or an unusable provider).
    #[error("cannot build the TLS configuration: {problem}")]
    Config {
        /// What rustls reported.
        problem: String,
    },
    /// "Leaf must be an X509-SVID": the peer's leaf broke one of its rules.
    #[error("peer certificate is not a valid X509-SVID: {0}")]
    PeerSvid(SvidError),
    /// "The chain must verify against the bundle of the trust domain named in the peer's own
    /// SPIFFE ID" — and there is no bundle for that trust domain.
    #[error("peer's trust domain {trust_domain} has no bundle")]
    UnknownTrustDomain {
        /// The trust domain of the peer's SPIFFE ID.
        trust_domain: String,
    },
    /// "Outbound … requires its SPIFFE ID to equal the destination's `spiffe_id`."
    #[error("server proved {actual}, but the destination is {expected}")]
    WrongPeerId {
        /// The destination's configured SPIFFE ID.
        expected: String,
        /// The ID the server's certificate carries.
        actual: String,
    },
}

impl TlsError {
    /// Short, bounded label for metrics (`tls_handshake_failures{reason}`) and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::BadPem { .. } => "bad-pem",
            Self::NoCertificate { .. } => "no-certificate",
            Self::NoPrivateKey { .. } => "no-private-key",
            Self::UnsupportedKey { .. } => "unsupported-key",
            Self::InvalidSvid { .. } => "invalid-svid",
            Self::KeyMismatch { .. } => "key-mismatch",
            Self::EmptyBundle { .. } => "empty-bundle",
            Self::BadTrustAnchor { .. } => "bad-trust-anchor",
            Self::DuplicateBundle { .. } => "duplicate-bundle",
            Self::NoBundles => "no-bundles",
            Self::BadSvidResponse { .. } => "bad-svid-response",
            Self::OwnSigner { .. } => "own-chain-signer",
            Self::OwnChainUntrusted { .. } => "own-chain-untrusted",
            Self::OwnTrustDomainUnbundled { .. } => "own-trust-domain-unbundled",
            Self::PeerSigner { error, .. } => error.reason(),
            Self::Config { .. } => "config",
            Self::PeerSvid(error) => error.reason(),
            Self::UnknownTrustDomain { .. } => "unknown-trust-domain",
            Self::WrongPeerId { .. } => "wrong-peer-id",
        }
    }
}

/// The bounded reason an inbound handshake failed, for `tls_handshake_failures{reason}`:
/// our verifier's own reason when it refused (`unknown-trust-domain`, `expired`,
/// `multiple-uri-sans`, …), else a coarse class of the rustls error.
pub fn handshake_failure_reason(error: &rustls::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    if let Some(ours) = TlsError::from_handshake(error) {
        return ours.reason();
    }
    match error {
        Error::NoCertificatesPresented => "no-client-cert",
        Error::InvalidCertificate(CertificateError::Expired | CertificateError::NotValidYet) => {
            "expired"
        }
        Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "bad-chain",
        Error::InvalidCertificate(_) => "bad-certificate",
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => "incompatible",
        Error::AlertReceived(_) => "alert-received",
        _ => "protocol",
    }
}

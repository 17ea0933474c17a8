//! X509-SVID leaf rules (docs/security.md, SPIFFE X509-SVID spec §2–5): [`Svid::from_der`] turns
//! a peer's end-entity certificate into its SPIFFE ID, or names the one rule it broke.
//! PURE: std, thiserror and x509-parser only. Chain verification against a bundle is not
//! here; it belongs to the TLS verifier, which calls this once per handshake.

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, KeyUsage, ParsedExtension, X509Extension};
use x509_parser::oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS;
use x509_parser::prelude::FromDer;

use super::{SpiffeId, SpiffeIdError};

/// The part the leaf's holder plays in the connection; it decides which EKU the leaf needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An inbound peer presenting a client certificate: an EKU, if present, must allow
    /// clientAuth.
    Client,
    /// An outbound server: an EKU, if present, must allow serverAuth.
    Server,
}

/// An X509-SVID leaf that passed every leaf rule: whom it names and when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svid {
    /// The SPIFFE ID of the leaf's single URI SAN; its path is never empty.
    pub id: SpiffeId,
    /// Start of the validity window (notBefore), unix seconds.
    pub not_before: i64,
    /// End of the validity window (notAfter), unix seconds.
    pub not_after: i64,
}

/// The X509-SVID leaf rule a certificate broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    /// The bytes are not one DER X.509 certificate, or an extension the rules read does not
    /// parse. The message is short and never holds certificate content.
    #[error("certificate does not parse: {0}")]
    Malformed(String),
    /// "A certificate MUST NOT include more than one instance of a particular extension"
    /// (RFC 5280 §4.2); two SAN extensions could hide a second SPIFFE ID.
    #[error("certificate has more than one subjectAltName extension")]
    DuplicateSan,
    /// "An X.509 SVID MUST contain exactly one URI SAN" — this one has none.
    #[error("certificate has no URI SAN; an X509-SVID carries exactly one, its SPIFFE ID")]
    NoUriSan,
    /// "Validators encountering an SVID containing more than one URI SAN MUST reject the
    /// SVID" — URI SANs of any scheme count.
    #[error("certificate has more than one URI SAN; an X509-SVID carries exactly one")]
    MultipleUriSans,
    /// "The validator MUST also ensure that the scheme of the SPIFFE ID is set to `spiffe`"
    /// — and every other SPIFFE-ID rule of docs/security.md.
    #[error("URI SAN is not a valid SPIFFE ID: {0}")]
    InvalidSpiffeId(SpiffeIdError),
    /// "A leaf's ID must have a non-empty path" (X509-SVID §3.1: "Leaf certificate SPIFFE
    /// IDs MUST have a non-root path component").
    #[error("SPIFFE ID has an empty path; a leaf's ID must name a workload, not a trust domain")]
    RootId,
    /// "Leaf certificates MUST set the `cA` field to `false`."
    #[error("certificate is a CA (basicConstraints CA:true); a leaf must be CA:false")]
    IsCa,
    /// "The key usage extension MUST be set on all SVIDs."
    #[error("certificate has no keyUsage extension; a leaf needs one with digitalSignature")]
    MissingKeyUsage,
    /// "Leaf SVIDs MUST set `digitalSignature`."
    #[error("certificate keyUsage lacks digitalSignature")]
    MissingDigitalSignature,
    /// "Leaf SVIDs MUST NOT set `keyCertSign` or `cRLSign`" — here keyCertSign.
    #[error("certificate keyUsage sets keyCertSign, which only signing certificates may set")]
    KeyCertSign,
    /// "Leaf SVIDs MUST NOT set `keyCertSign` or `cRLSign`" — here cRLSign.
    #[error("certificate keyUsage sets cRLSign, which only signing certificates may set")]
    CrlSign,
    /// "If EKU is present it must allow clientAuth (inbound peers)"; anyExtendedKeyUsage
    /// allows it.
    #[error("certificate extendedKeyUsage does not allow clientAuth, needed by an inbound peer")]
    MissingClientAuth,
    /// "If EKU is present it must allow serverAuth (outbound servers)"; anyExtendedKeyUsage
    /// allows it.
    #[error("certificate extendedKeyUsage does not allow serverAuth, needed by a server")]
    MissingServerAuth,
    /// Validity window: the current time is before notBefore.
    #[error("certificate is not valid yet (notBefore is in the future)")]
    NotYetValid,
    /// Validity window: the current time is after notAfter.
    #[error("certificate has expired (notAfter is in the past)")]
    Expired,
    /// A signing certificate of the chain (an intermediate): "Signing certificates MUST set
    /// the `cA` field to `true`" (X509-SVID §4.1).
    #[error(
        "a signing certificate of the chain is not a CA (basicConstraints CA:true is required)"
    )]
    SignerNotCa,
    /// A signing certificate of the chain: "Signing certificates MUST set `keyCertSign`"
    /// (X509-SVID §4.3); a keyUsage extension without it, or none at all, breaks that.
    #[error("a signing certificate of the chain lacks keyUsage keyCertSign")]
    SignerWithoutKeyCertSign,
}

impl SvidError {
    /// Short, bounded label for metrics and decision logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::DuplicateSan => "duplicate-san",
            Self::NoUriSan => "no-uri-san",
            Self::MultipleUriSans => "multiple-uri-sans",
            Self::InvalidSpiffeId(_) => "invalid-spiffe-id",
            Self::RootId => "root-id",
            Self::IsCa => "is-ca",
            Self::MissingKeyUsage => "missing-key-usage",
            Self::MissingDigitalSignature => "missing-digital-signature",
            Self::KeyCertSign => "key-cert-sign",
            Self::CrlSign => "crl-sign",
            Self::MissingClientAuth => "missing-client-auth",
            Self::MissingServerAuth => "missing-server-auth",
            Self::NotYetValid => "not-yet-valid",
            Self::Expired => "expired",
            Self::SignerNotCa => "signer-not-ca",
            Self::SignerWithoutKeyCertSign => "signer-without-key-cert-sign",
        }
    }
}

impl Svid {
    /// Parses `der` once and checks the X509-SVID leaf rules of docs/security.md in this order:
    /// SAN, CA, keyUsage, EKU for `role`, then the validity window at `now`.
    ///
    /// # Errors
    /// The first rule the certificate breaks, as a [`SvidError`] variant.
    pub fn from_der(der: &[u8], role: Role, now: SystemTime) -> Result<Svid, SvidError> {
        let cert = parse(der)?;
        let id = spiffe_id(&cert)?;
        check_not_ca(&cert)?;
        check_key_usage(&cert)?;
        check_extended_key_usage(&cert, role)?;
        let (not_before, not_after) = check_validity(&cert, now)?;
        Ok(Svid {
            id,
            not_before,
            not_after,
        })
    }
}

/// The X509-SVID rules for a signing certificate, one that issued the leaf or another signing
/// certificate of its chain (docs/security.md "signing certificates must be CAs"; X509-SVID
/// §4.1 and §4.3): it parses, basicConstraints says CA:true, keyUsage sets keyCertSign.
/// webpki's path validation requires CA:true of intermediates but not keyCertSign, so the
/// verifiers and `certs inspect` call this on every intermediate before it.
///
/// # Errors
/// [`SvidError::Malformed`], [`SvidError::SignerNotCa`] or
/// [`SvidError::SignerWithoutKeyCertSign`].
pub fn check_signing_certificate(der: &[u8]) -> Result<(), SvidError> {
    let cert = parse(der)?;
    match check_not_ca(&cert) {
        Err(SvidError::IsCa) => {}
        Ok(()) => return Err(SvidError::SignerNotCa),
        Err(malformed) => return Err(malformed),
    }
    if !key_usage(&cert, SvidError::SignerWithoutKeyCertSign)?.key_cert_sign() {
        return Err(SvidError::SignerWithoutKeyCertSign);
    }
    Ok(())
}

/// [`check_signing_certificate`] on every certificate after the leaf, in order: the one check
/// of a chain's signers that the verifiers, our own chain and `certs inspect` share.
///
/// A self-signed certificate in the chain (the root, which `certs issue` and many CAs append)
/// is a trust anchor, not a signing certificate of the chain: RFC 5280 §6.1 takes the anchor
/// as input (its name and key), and go-spiffe and webpki accept a root without keyUsage. It is
/// exempt only when its signature verifies under its own key — a certificate that merely
/// names itself as issuer is checked like any intermediate. That signature is checked only
/// for a certificate that fails the signer rules, so an honest chain pays nothing for it.
///
/// # Errors
/// The first signer that fails: its 1-based position in the chain (the leaf is 1, so the
/// first signer is 2) and the rule it breaks.
pub fn check_signers<D: AsRef<[u8]>>(signers: &[D]) -> Result<(), (usize, SvidError)> {
    signers.iter().enumerate().try_for_each(|(index, der)| {
        match check_signing_certificate(der.as_ref()) {
            Err(_) if is_self_signed(der.as_ref()) => Ok(()),
            checked => checked.map_err(|error| (index + 2, error)),
        }
    })
}

/// Whether `der` is a trust anchor's certificate: it names itself as issuer and its
/// signature verifies under its own public key.
fn is_self_signed(der: &[u8]) -> bool {
    parse(der).is_ok_and(|cert| {
        cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
    })
}

/// `time` as whole seconds since the Unix epoch (negative before it), saturating.
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Parses exactly one DER certificate; trailing bytes are an error.
fn parse(der: &[u8]) -> Result<X509Certificate<'_>, SvidError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SvidError::Malformed(
            "trailing bytes after the certificate".into(),
        )),
        Err(x509_parser::nom::Err::Incomplete(_)) => {
            Err(SvidError::Malformed("truncated certificate".into()))
        }
        Err(x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e)) => {
            Err(SvidError::Malformed(e.to_string()))
        }
    }
}

/// The SAN rules: exactly one URI SAN, a valid SPIFFE ID with a non-empty path.
fn spiffe_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let san = match cert.subject_alternative_name() {
        Ok(san) => san.ok_or(SvidError::NoUriSan)?.value,
        Err(X509Error::DuplicateExtensions) => return Err(SvidError::DuplicateSan),
        Err(e) => return Err(extension_error("subjectAltName", &e)),
    };
    // An undecodable entry could be a URI SAN we would otherwise fail to count.
    if san
        .general_names
        .iter()
        .any(|name| matches!(name, GeneralName::Invalid(..)))
    {
        return Err(SvidError::Malformed(
            "subjectAltName holds an undecodable name".into(),
        ));
    }
    let mut uris = san.general_names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let uri = uris.next().ok_or(SvidError::NoUriSan)?;
    if uris.next().is_some() {
        return Err(SvidError::MultipleUriSans);
    }
    let id = SpiffeId::parse(uri).map_err(SvidError::InvalidSpiffeId)?;
    if id.path().is_empty() {
        return Err(SvidError::RootId);
    }
    Ok(id)
}

/// basicConstraints, when present, must say CA:false.
fn check_not_ca(cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    // Read the extension ourselves: `X509Certificate::basic_constraints` reports a
    // basicConstraints that fails to parse as absent, which would read as CA:false.
    let ext = cert
        .get_extension_unique(&OID_X509_EXT_BASIC_CONSTRAINTS)
        .map_err(|e| extension_error("basicConstraints", &e))?;
    match ext.map(X509Extension::parsed_extension) {
        Some(ParsedExtension::BasicConstraints(bc)) if bc.ca => Err(SvidError::IsCa),
        None | Some(ParsedExtension::BasicConstraints(_)) => Ok(()),
        Some(_) => Err(extension_error(
            "basicConstraints",
            &X509Error::InvalidExtensions,
        )),
    }
}

/// keyUsage must be present, with digitalSignature and without keyCertSign or cRLSign.
fn check_key_usage(cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    let usage = key_usage(cert, SvidError::MissingKeyUsage)?;
    if !usage.digital_signature() {
        return Err(SvidError::MissingDigitalSignature);
    }
    if usage.key_cert_sign() {
        return Err(SvidError::KeyCertSign);
    }
    if usage.crl_sign() {
        return Err(SvidError::CrlSign);
    }
    Ok(())
}

/// The keyUsage extension; `missing` when there is none.
fn key_usage<'c>(
    cert: &'c X509Certificate<'_>,
    missing: SvidError,
) -> Result<&'c KeyUsage, SvidError> {
    Ok(cert
        .key_usage()
        .map_err(|e| extension_error("keyUsage", &e))?
        .ok_or(missing)?
        .value)
}

/// An EKU, when present, must allow the purpose of `role` (anyExtendedKeyUsage allows all).
fn check_extended_key_usage(cert: &X509Certificate<'_>, role: Role) -> Result<(), SvidError> {
    let Some(eku) = cert
        .extended_key_usage()
        .map_err(|e| extension_error("extendedKeyUsage", &e))?
    else {
        return Ok(());
    };
    let eku = eku.value;
    match role {
        Role::Client if !(eku.any || eku.client_auth) => Err(SvidError::MissingClientAuth),
        Role::Server if !(eku.any || eku.server_auth) => Err(SvidError::MissingServerAuth),
        _ => Ok(()),
    }
}

/// notBefore <= now <= notAfter; returns the window in unix seconds.
fn check_validity(cert: &X509Certificate<'_>, now: SystemTime) -> Result<(i64, i64), SvidError> {
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let now = unix_seconds(now);
    if now < not_before {
        return Err(SvidError::NotYetValid);
    }
    if now > not_after {
        return Err(SvidError::Expired);
    }
    Ok((not_before, not_after))
}

/// An extension the rules need is duplicated or does not parse.
fn extension_error(name: &str, error: &X509Error) -> SvidError {
    match error {
        X509Error::DuplicateExtensions => {
            SvidError::Malformed(format!("duplicate {name} extension"))
        }
        _ => SvidError::Malformed(format!("{name} extension does not parse")),
    }
}

#[cfg(test)]
mod tests;

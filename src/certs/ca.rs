//! The signing CA ([`Ca`]): made fresh or loaded from `ca.pem` + `ca.key`, and the X509-SVID
//! leaf parameters it signs ([`svid_params`], docs/security.md). No file writing here.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use super::{
    CA_CERT_FILE, CA_KEY_FILE, CA_LIFETIME, CLOCK_SKEW, CertsError, bad_file, certificate_blocks,
    certificates, read_text,
};
use crate::identity::{SpiffeId, TrustDomain};

/// A signing CA held in memory: its certificate and the key that signs SVIDs.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
    trust_domains: Vec<String>,
}

/// One minted leaf: its certificate, its private key and its chain, as PEM and DER.
#[derive(Clone)]
pub struct IssuedSvid {
    /// The leaf certificate alone, PEM.
    pub cert_pem: String,
    /// The leaf's private key, PKCS#8 PEM. Secret: never log it.
    pub key_pem: String,
    /// The leaf, then the CA certificate(s), PEM: what `svid.pem` holds.
    pub chain_pem: String,
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
}

impl Ca {
    /// A new self-signed CA for `trust_domain`: CA:true, keyCertSign + cRLSign +
    /// digitalSignature, URI SAN `spiffe://<td>`, valid for [`CA_LIFETIME`].
    ///
    /// # Errors
    /// [`CertsError::Generate`] if rcgen fails.
    pub fn new(trust_domain: &TrustDomain) -> Result<Ca, CertsError> {
        Self::root(trust_domain, |_| {})
    }

    /// A self-signed root CA for `trust_domain` as [`Ca::new`] makes it, altered by `alter`
    /// before signing (tests: roots as other CAs make them, e.g. without keyUsage).
    ///
    /// # Errors
    /// As [`Ca::new`].
    pub fn root(
        trust_domain: &TrustDomain,
        alter: impl FnOnce(&mut CertificateParams),
    ) -> Result<Ca, CertsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let common_name = format!("segward CA {trust_domain}");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = vec![uri_san(&trust_domain.id())?];
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = window(CA_LIFETIME)?;
        alter(&mut params);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            trust_domains: vec![trust_domain.to_string()],
        })
    }

    /// An intermediate signing CA issued by this one, as SPIRE with an upstream authority
    /// deploys it: CA:true, keyCertSign + cRLSign, URI SAN `spiffe://<td>` of this CA's first
    /// trust domain, valid as long as [`CA_LIFETIME`]; `alter` may change the parameters
    /// first (tests mint CA:false or keyCertSign-less "intermediates" on purpose). Leaves it
    /// signs carry it as their chain (`chain_pem` = leaf, intermediate); the bundle stays
    /// this CA's certificate.
    ///
    /// # Errors
    /// [`CertsError::Generate`] if rcgen fails.
    pub fn intermediate(
        &self,
        alter: impl FnOnce(&mut CertificateParams),
    ) -> Result<Ca, CertsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let trust_domain = self.trust_domains.first().cloned().unwrap_or_default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("segward intermediate CA {trust_domain}"),
        );
        if let Ok(td) = TrustDomain::parse(&trust_domain) {
            params.subject_alt_names = vec![uri_san(&td.id())?];
        }
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.not_before, params.not_after) = window(CA_LIFETIME)?;
        alter(&mut params);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            trust_domains: self.trust_domains.clone(),
        })
    }

    /// Loads `ca.pem` and `ca.key` from `dir`, checking that they belong together and that the
    /// key is ECDSA P-256 (docs/cli.md: "Keys are ECDSA P-256").
    ///
    /// # Errors
    /// [`CertsError::Io`] or [`CertsError::BadFile`] naming the file at fault.
    pub fn load(dir: &Path) -> Result<Ca, CertsError> {
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        let cert_pem = read_text(&cert_path)?;
        let cert_der = certificates(&cert_path, cert_pem.as_bytes())?.swap_remove(0);
        let key = KeyPair::from_pem(&read_text(&key_path)?)
            .map_err(|e| bad_file(&key_path, format!("not a PEM private key: {e}")))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(bad_file(&key_path, "not an ECDSA P-256 key".into()));
        }
        let trust_domains =
            check_ca(&cert_der, &key).map_err(|problem| bad_file(&cert_path, problem))?;
        // From DER, not `from_ca_cert_pem`: that reads the first PEM block, which may be a key.
        // rcgen copies the subject attribute by attribute and string type by string type, and
        // the subjectKeyIdentifier, so leaves' issuer and AKI match the CA's subject and SKI.
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|e| bad_file(&cert_path, format!("subject cannot be re-encoded ({e})")))?;
        // Only the certificates travel on into svid.pem: ca.pem might also hold the CA key.
        let cert_pem = certificate_blocks(&cert_pem);
        Ok(Ca {
            issuer,
            cert_pem,
            cert_der,
            trust_domains,
        })
    }

    /// The CA certificate, PEM (what `ca.pem` and `bundle.pem` hold).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER (a trust anchor for rustls root stores in tests).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The trust domains named by the CA certificate's `spiffe://` URI SANs; empty for a CA
    /// not made for SPIFFE (an external CA).
    pub fn trust_domains(&self) -> &[String] {
        &self.trust_domains
    }

    /// Issues an X509-SVID for `id` valid for `ttl` (see [`svid_params`]), whatever `id`'s
    /// trust domain: tests mint cross-domain leaves with it. `certs::issue` checks it.
    ///
    /// # Errors
    /// [`CertsError::RootId`] for an ID without a path; [`CertsError::BadDnsName`];
    /// [`CertsError::Generate`].
    pub fn issue(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        dns: &[String],
    ) -> Result<IssuedSvid, CertsError> {
        self.sign(&svid_params(id, ttl, dns)?)
    }

    /// Signs `params` as given, with a fresh ECDSA P-256 key. Checks nothing, so tests can
    /// mint leaves that break X509-SVID rules on purpose; use [`Ca::issue`] for good ones.
    ///
    /// # Errors
    /// [`CertsError::Generate`] if rcgen refuses the parameters.
    pub fn sign(&self, params: &CertificateParams) -> Result<IssuedSvid, CertsError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_pem = cert.pem();
        Ok(IssuedSvid {
            chain_pem: format!("{cert_pem}{}", self.cert_pem),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            cert_pem,
        })
    }

    /// The CA's private key, PKCS#8 PEM; only for writing `ca.key`.
    pub(super) fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rcgen's `Issuer` Debug already elides the signing key.
        f.debug_struct("Ca")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for IssuedSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSvid")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// X509-SVID leaf parameters: one URI SAN = `id`, DNS SANs, CA:false, digitalSignature only,
/// serverAuth + clientAuth, valid from [`CLOCK_SKEW`] ago for `ttl`. Tests may alter them.
///
/// # Errors
/// [`CertsError::RootId`] for an ID without a path; [`CertsError::BadDnsName`] for a DNS name
/// that is not one (see [`CertsError::BadDnsName`]); [`CertsError::BadTtl`] for a `ttl` past
/// the year 9999; [`CertsError::Generate`] if rcgen refuses them.
pub fn svid_params(
    id: &SpiffeId,
    ttl: Duration,
    dns: &[String],
) -> Result<CertificateParams, CertsError> {
    if id.path().is_empty() {
        return Err(CertsError::RootId(id.to_string()));
    }
    if let Some(bad) = dns.iter().find(|name| !is_dns_name(name)) {
        return Err(CertsError::BadDnsName(bad.clone()));
    }
    let mut params = CertificateParams::default();
    // X509-SVID: "The Subject field is not required"; rcgen then marks the SAN critical.
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![uri_san(id)?];
    for name in dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(name.as_str().try_into()?));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = window(ttl)?;
    Ok(params)
}

/// What rcgen's `Issuer::from_ca_cert_der` leaves unchecked: the certificate is a CA and
/// belongs to `key`, and its subject survives rcgen's copy, which keeps one value per
/// attribute type (a repeated type would silently change the leaves' issuer name).
/// Returns the trust domains of its `spiffe://` URI SANs.
fn check_ca(der: &[u8], key: &KeyPair) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("first certificate does not parse: {e}"))?;
    if !cert.is_ca() {
        return Err("not a CA certificate (needs basicConstraints CA:true)".into());
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
        return Err(format!(
            "does not belong to the private key in {CA_KEY_FILE}"
        ));
    }
    let unsupported = |what: &str| {
        Err(format!(
            "subject has {what}, which segward cannot re-encode"
        ))
    };
    let subject = cert.subject();
    let types: Vec<_> = subject.iter_attributes().map(|a| a.attr_type()).collect();
    if subject.iter().count() != types.len() {
        return unsupported("a multi-valued RDN");
    }
    if (0..types.len()).any(|i| types[..i].contains(&types[i])) {
        return unsupported("a repeated attribute");
    }
    // Fail closed: a SAN we cannot read might name a trust domain.
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("subjectAltName does not parse: {e}"))?;
    let uris = san.iter().flat_map(|san| &san.value.general_names);
    Ok(uris
        .filter_map(|name| match name {
            GeneralName::URI(uri) => spiffe_trust_domain(uri),
            _ => None,
        })
        .map(str::to_owned)
        .collect())
}

/// The authority of a `spiffe://` URI, the scheme matched in any case (RFC 3986 §3.1) so that
/// `SPIFFE://Example.org` still counts as a claim, and one that no lower-case ID matches.
fn spiffe_trust_domain(uri: &str) -> Option<&str> {
    const SCHEME: &str = "spiffe://";
    let (scheme, rest) = uri.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    Some(rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]))
}

/// A DNS SAN: dot-separated labels of `[A-Za-z0-9-]`, 1–63 characters, not starting or ending
/// with `-`; at most 253 characters; an optional leading `*.`; no trailing dot.
fn is_dns_name(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    name.len() <= 253 && host.split('.').all(is_dns_label)
}

fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn uri_san(id: &SpiffeId) -> Result<SanType, CertsError> {
    Ok(SanType::URI(id.as_str().try_into()?))
}

/// notBefore = now − [`CLOCK_SKEW`], notAfter = now + `lifetime`.
fn window(lifetime: Duration) -> Result<(OffsetDateTime, OffsetDateTime), CertsError> {
    let now = OffsetDateTime::now_utc();
    let not_after = time::Duration::try_from(lifetime)
        .ok()
        .and_then(|lifetime| now.checked_add(lifetime))
        .ok_or_else(|| CertsError::BadTtl {
            input: format!("{}s", lifetime.as_secs()),
            problem: "ends after the year 9999",
        })?;
    Ok((now - CLOCK_SKEW, not_after))
}

//! The PKI behind `segward certs init|issue|inspect` (PRODUCT.md §1): an ECDSA P-256 CA and
//! X509-SVID leaves minted with rcgen, in memory ([`Ca`], for tests and the demo) or as files.
//! Uses only `identity`; used by the CLI, the demo and tests. Never prints key material.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::Pem;
use x509_parser::time::ASN1Time;
use x509_parser::x509::X509Name;

use crate::identity::svid::unix_seconds;
use crate::identity::{Role, SpiffeId, Svid, TrustDomain};

/// The CA certificate written by `init`.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key written by `init` (PKCS#8 PEM, mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// The trust bundle (CA certificates) written by `init` and `issue`.
pub const BUNDLE_FILE: &str = "bundle.pem";
/// The SVID chain written by `issue`: the leaf, then the CA certificate.
pub const SVID_CERT_FILE: &str = "svid.pem";
/// The SVID private key written by `issue` (PKCS#8 PEM, mode 0600).
pub const SVID_KEY_FILE: &str = "svid.key";
/// How far in the past every certificate starts, so that peers with slow clocks accept it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// Lifetime of a CA made by [`Ca::new`].
pub const CA_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// The longest TTL [`parse_ttl`] accepts: 3650 days.
pub const MAX_TTL: Duration = Duration::from_secs(3650 * 86_400);

/// Why a certs command failed; file problems name the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertsError {
    /// A file or directory could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        message: String,
    },
    /// `init` found a CA key: replacing it silently would orphan every SVID it issued.
    #[error(
        "{}: a CA key already exists; pass --force to replace it (SVIDs it issued stop verifying)",
        .0.display()
    )]
    KeyExists(PathBuf),
    /// A file does not hold what it should (PEM certificate, private key, CA certificate).
    #[error("{}: {problem}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// "A leaf's ID must have a non-empty path" (PRODUCT.md §4).
    #[error("cannot issue an SVID for `{0}`: a leaf's ID must have a non-empty path")]
    RootId(String),
    /// A TTL is not a positive whole number of s, m, h or d, at most 3650d.
    #[error("invalid TTL `{input}`: {problem}")]
    BadTtl {
        /// What the user typed.
        input: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// rcgen refused to build or sign a certificate (for example a non-ASCII DNS name).
    #[error("cannot generate the certificate: {0}")]
    Generate(rcgen::Error),
}

impl CertsError {
    /// Short, bounded label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::KeyExists(_) => "key-exists",
            Self::BadFile { .. } => "bad-file",
            Self::RootId(_) => "root-id",
            Self::BadTtl { .. } => "bad-ttl",
            Self::Generate(_) => "generate",
        }
    }
}

impl From<rcgen::Error> for CertsError {
    fn from(error: rcgen::Error) -> Self {
        Self::Generate(error)
    }
}

/// A signing CA held in memory: its certificate and the key that signs SVIDs.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
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

/// The files `init` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// `ca.pem`
    pub cert: PathBuf,
    /// `ca.key`, mode 0600
    pub key: PathBuf,
    /// `bundle.pem`
    pub bundle: PathBuf,
}

/// The files `issue` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidFiles {
    /// `svid.pem`: leaf then chain
    pub cert: PathBuf,
    /// `svid.key`, mode 0600
    pub key: PathBuf,
    /// `bundle.pem`
    pub bundle: PathBuf,
}

/// What `certs inspect` reports about the first certificate of a PEM file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    /// The single URI SAN, when there is exactly one and it is a valid SPIFFE ID.
    pub spiffe_id: Option<String>,
    /// Subject distinguished name, e.g. `CN=segward CA example.org`; empty for SVIDs.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number as colon-separated hex.
    pub serial: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Seconds from the inspection time to notAfter; negative once expired.
    pub expires_in_secs: i64,
    /// basicConstraints CA:true.
    pub is_ca: bool,
    /// How many certificates the file holds.
    pub chain_len: usize,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// `ok`, or why the leaf fails the X509-SVID rules as an inbound peer.
    pub client_check: String,
    /// `ok`, or why the leaf fails the X509-SVID rules as a server.
    pub server_check: String,
}

impl Ca {
    /// A new self-signed CA for `trust_domain`: CA:true, keyCertSign + cRLSign +
    /// digitalSignature, URI SAN `spiffe://<td>`, valid for [`CA_LIFETIME`].
    ///
    /// # Errors
    /// [`CertsError::Generate`] if rcgen fails.
    pub fn new(trust_domain: &TrustDomain) -> Result<Ca, CertsError> {
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
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `ca.pem` and `ca.key` from `dir`, checking that they belong together.
    ///
    /// # Errors
    /// [`CertsError::Io`] or [`CertsError::BadFile`] naming the file at fault.
    pub fn load(dir: &Path) -> Result<Ca, CertsError> {
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        let cert_pem = read_text(&cert_path)?;
        let cert_der = certificates(&cert_path, cert_pem.as_bytes())?.swap_remove(0);
        let key = KeyPair::from_pem(&read_text(&key_path)?)
            .map_err(|e| bad_file(&key_path, format!("not a PEM private key: {e}")))?;
        let issuer = issuer_for(&cert_der, key).map_err(|problem| bad_file(&cert_path, problem))?;
        // Only the certificates travel on into svid.pem: ca.pem might also hold the CA key.
        let cert_pem = certificate_blocks(&cert_pem);
        Ok(Ca {
            issuer,
            cert_pem,
            cert_der,
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

    /// Issues an X509-SVID for `id` valid for `ttl` (see [`svid_params`]).
    ///
    /// # Errors
    /// [`CertsError::RootId`] for an ID without a path; [`CertsError::Generate`].
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
    fn key_pem(&self) -> String {
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

impl CaFiles {
    /// The CA file names inside `dir`.
    pub fn in_dir(dir: &Path) -> CaFiles {
        CaFiles {
            cert: dir.join(CA_CERT_FILE),
            key: dir.join(CA_KEY_FILE),
            bundle: dir.join(BUNDLE_FILE),
        }
    }
}

impl SvidFiles {
    /// The SVID file names inside `dir`.
    pub fn in_dir(dir: &Path) -> SvidFiles {
        SvidFiles {
            cert: dir.join(SVID_CERT_FILE),
            key: dir.join(SVID_KEY_FILE),
            bundle: dir.join(BUNDLE_FILE),
        }
    }
}

/// X509-SVID leaf parameters: one URI SAN = `id`, DNS SANs, CA:false, digitalSignature only,
/// serverAuth + clientAuth, valid from [`CLOCK_SKEW`] ago for `ttl`. Tests may alter them.
///
/// # Errors
/// [`CertsError::RootId`] for an ID without a path; [`CertsError::Generate`] for a DNS name
/// that is not ASCII; [`CertsError::BadTtl`] for a `ttl` past the year 9999.
pub fn svid_params(
    id: &SpiffeId,
    ttl: Duration,
    dns: &[String],
) -> Result<CertificateParams, CertsError> {
    if id.path().is_empty() {
        return Err(CertsError::RootId(id.to_string()));
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

/// `certs init`: a new CA for `trust_domain` written to `out` (created if missing) as
/// `ca.pem`, `ca.key` (0600) and `bundle.pem`. Refuses to replace a `ca.key` unless `force`.
///
/// # Errors
/// [`CertsError::KeyExists`], [`CertsError::Io`] naming the file, [`CertsError::Generate`].
pub fn init(trust_domain: &TrustDomain, out: &Path, force: bool) -> Result<CaFiles, CertsError> {
    let files = CaFiles::in_dir(out);
    // symlink_metadata: a dangling symlink named ca.key also counts as a key in the way.
    if !force && fs::symlink_metadata(&files.key).is_ok() {
        return Err(CertsError::KeyExists(files.key));
    }
    let ca = Ca::new(trust_domain)?;
    create_dir(out)?;
    write_file(&files.key, &ca.key_pem(), SECRET_MODE)?;
    write_file(&files.cert, ca.cert_pem(), PUBLIC_MODE)?;
    write_file(&files.bundle, ca.cert_pem(), PUBLIC_MODE)?;
    Ok(files)
}

/// `certs issue`: an X509-SVID for `id` signed by the CA in `ca_dir`, written to `out`
/// (created if missing) as `svid.pem` (leaf then CA), `svid.key` (0600) and `bundle.pem`
/// (the CA's `bundle.pem`, or its `ca.pem` if it has none).
///
/// # Errors
/// [`CertsError::RootId`], [`CertsError::Io`] / [`CertsError::BadFile`] naming the file,
/// [`CertsError::Generate`].
pub fn issue(
    ca_dir: &Path,
    id: &SpiffeId,
    out: &Path,
    ttl: Duration,
    dns: &[String],
) -> Result<SvidFiles, CertsError> {
    let params = svid_params(id, ttl, dns)?;
    let ca = Ca::load(ca_dir)?;
    let svid = ca.sign(&params)?;
    let bundle = ca_bundle(ca_dir, &ca)?;
    let files = SvidFiles::in_dir(out);
    create_dir(out)?;
    write_file(&files.key, &svid.key_pem, SECRET_MODE)?;
    write_file(&files.cert, &svid.chain_pem, PUBLIC_MODE)?;
    write_file(&files.bundle, &bundle, PUBLIC_MODE)?;
    Ok(files)
}

/// Parses a TTL such as `90s`, `30m`, `24h` or `7d`: a positive whole number and one unit,
/// at most [`MAX_TTL`].
///
/// # Errors
/// [`CertsError::BadTtl`] saying what is wrong.
pub fn parse_ttl(input: &str) -> Result<Duration, CertsError> {
    let bad = |problem| CertsError::BadTtl {
        input: input.to_owned(),
        problem,
    };
    let unit_secs: u64 = match input.chars().last() {
        None => return Err(bad("empty; write a number and a unit, e.g. 24h")),
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        Some(c) if c.is_ascii_digit() => return Err(bad("missing unit; end with s, m, h or d")),
        Some(_) => return Err(bad("unknown unit; use s, m, h or d (e.g. 24h)")),
    };
    // Invariant: the unit matched above is one ASCII byte, so this slices at a char boundary.
    let number = &input[..input.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected a whole number before the unit, e.g. 24h"));
    }
    let too_long = || bad("too long; the longest TTL is 3650d");
    let secs = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_secs));
    match secs.ok_or_else(too_long)? {
        0 => Err(bad("must be longer than zero")),
        secs if secs > MAX_TTL.as_secs() => Err(too_long()),
        secs => Ok(Duration::from_secs(secs)),
    }
}

/// `certs inspect`: reads the PEM certificates in `pem_path` and reports on the first,
/// checking it against the X509-SVID leaf rules at `now` for both roles.
///
/// # Errors
/// [`CertsError::Io`] or [`CertsError::BadFile`] naming `pem_path`.
pub fn inspect(pem_path: &Path, now: SystemTime) -> Result<Inspection, CertsError> {
    let text = fs::read(pem_path).map_err(|e| io_error(pem_path, &e))?;
    let ders = certificates(pem_path, &text)?;
    let leaf = &ders[0]; // Invariant: `certificates` returns at least one.
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| bad_file(pem_path, format!("first certificate does not parse: {e}")))?;
    Ok(Inspection::of(&cert, leaf, ders.len(), now))
}

impl Inspection {
    fn of(cert: &X509Certificate<'_>, der: &[u8], chain_len: usize, now: SystemTime) -> Self {
        let (uris, dns_names) = san_names(cert);
        let not_after = cert.validity().not_after;
        let check = |role| match Svid::from_der(der, role, now) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        Inspection {
            // Reported as found, root IDs included; the checks below say what is wrong.
            spiffe_id: match uris.as_slice() {
                [uri] => SpiffeId::parse(uri).ok().map(|id| id.to_string()),
                _ => None,
            },
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            not_before: rfc3339(cert.validity().not_before),
            not_after: rfc3339(not_after),
            expires_in_secs: not_after.timestamp().saturating_sub(unix_seconds(now)),
            is_ca: cert.is_ca(),
            chain_len,
            dns_names,
            client_check: check(Role::Client),
            server_check: check(Role::Server),
        }
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_none = |text: &str| {
            if text.is_empty() {
                "(none)".to_owned()
            } else {
                text.to_owned()
            }
        };
        let expiry = match self.expires_in_secs {
            secs if secs < 0 => format!("expired {} ago", span(-secs)),
            secs => format!("expires in {}", span(secs)),
        };
        writeln!(
            f,
            "SPIFFE ID     {}",
            or_none(self.spiffe_id.as_deref().unwrap_or(""))
        )?;
        writeln!(f, "subject       {}", or_none(&self.subject))?;
        writeln!(f, "issuer        {}", or_none(&self.issuer))?;
        writeln!(f, "serial        {}", self.serial)?;
        writeln!(f, "not before    {}", self.not_before)?;
        writeln!(f, "not after     {} ({expiry})", self.not_after)?;
        writeln!(f, "CA            {}", if self.is_ca { "yes" } else { "no" })?;
        writeln!(f, "certificates  {} in the file", self.chain_len)?;
        writeln!(f, "DNS names     {}", or_none(&self.dns_names.join(", ")))?;
        writeln!(f, "client check  {}", self.client_check)?;
        writeln!(f, "server check  {}", self.server_check)
    }
}

const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// The URI and the DNS SANs of a certificate; none when its SAN extension is absent or bad.
fn san_names(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                GeneralName::DNSName(name) => dns.push((*name).to_owned()),
                _ => {}
            }
        }
    }
    (uris, dns)
}

fn rfc3339(time: ASN1Time) -> String {
    time.to_datetime()
        .format(&Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

/// A duration in seconds as `2d 3h`, `4h 5m`, `6m 7s` or `8s`.
fn span(secs: i64) -> String {
    let (d, h) = (secs / 86_400, secs % 86_400 / 3600);
    let (m, s) = (secs % 3600 / 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
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

/// Rebuilds rcgen's view of an existing CA certificate so it can sign: subject name and key
/// identifier. (rcgen's `Issuer::from_ca_cert_pem` needs its `x509-parser` feature, which
/// this crate does not enable.)
fn issuer_for(der: &[u8], key: KeyPair) -> Result<Issuer<'static, KeyPair>, String> {
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
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(cert.subject())?;
    // Leaves' authorityKeyIdentifier must equal the CA's subjectKeyIdentifier.
    if let Some(key_id) = subject_key_id(&cert) {
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_id);
    }
    Ok(Issuer::new(params, key))
}

/// The same name for rcgen, attribute by attribute and string type by string type, so that
/// leaves' issuer field is byte-for-byte the CA's subject.
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, String> {
    let unsupported = |what: &str| format!("subject has {what}, which segward cannot re-encode");
    if name.iter().count() != name.iter_attributes().count() {
        return Err(unsupported("a multi-valued RDN"));
    }
    let mut dn = DistinguishedName::new();
    for attr in name.iter_attributes() {
        let oid = attr
            .attr_type()
            .iter()
            .ok_or_else(|| unsupported("a huge OID"))?;
        let dn_type = DnType::from_oid(&oid.collect::<Vec<_>>());
        if dn.get(&dn_type).is_some() {
            return Err(unsupported("a repeated attribute"));
        }
        let value = attr.attr_value();
        let value = std::str::from_utf8(value.data)
            .ok()
            .and_then(|text| dn_value(value.header.tag(), text))
            .ok_or_else(|| unsupported("a value that is not a UTF8, Printable or IA5 string"))?;
        dn.push(dn_type, value);
    }
    Ok(dn)
}

fn dn_value(tag: Tag, text: &str) -> Option<DnValue> {
    match tag {
        Tag::Utf8String => Some(DnValue::Utf8String(text.to_owned())),
        Tag::PrintableString => text.try_into().ok().map(DnValue::PrintableString),
        Tag::Ia5String => text.try_into().ok().map(DnValue::Ia5String),
        _ => None,
    }
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(key_id) => Some(key_id.0.to_vec()),
            _ => None,
        })
}

/// The DER of every CERTIFICATE block in `text`; at least one.
fn certificates(path: &Path, text: &[u8]) -> Result<Vec<Vec<u8>>, CertsError> {
    let mut ders = Vec::new();
    for pem in Pem::iter_from_buffer(text) {
        let pem = pem.map_err(|e| bad_file(path, format!("bad PEM: {e}")))?;
        if pem.label == "CERTIFICATE" {
            ders.push(pem.contents);
        }
    }
    if ders.is_empty() {
        return Err(bad_file(path, "no PEM CERTIFICATE block".into()));
    }
    Ok(ders)
}

/// The trust bundle an SVID directory gets: the CA's `bundle.pem`, else its certificate.
fn ca_bundle(ca_dir: &Path, ca: &Ca) -> Result<String, CertsError> {
    let path = ca_dir.join(BUNDLE_FILE);
    match fs::read_to_string(&path) {
        Ok(bundle) => Ok(certificate_blocks(&bundle)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ca.cert_pem().to_owned()),
        Err(e) => Err(io_error(&path, &e)),
    }
}

fn read_text(path: &Path) -> Result<String, CertsError> {
    fs::read_to_string(path).map_err(|e| io_error(path, &e))
}

fn create_dir(dir: &Path) -> Result<(), CertsError> {
    fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))
}

/// Writes `contents` to a new sibling file created with `mode` (so a key is never readable
/// by others, not even briefly), then renames it over `path`: readers see old or new, whole.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertsError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = write_new(&tmp, contents, mode).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp); // Best effort: the error below is what matters.
    }
    written.map_err(|e| io_error(path, &e))
}

fn write_new(path: &Path, contents: &str, mode: u32) -> io::Result<()> {
    let _ = fs::remove_file(path); // A leftover from a crashed run would block create_new.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// The `CERTIFICATE` blocks of a PEM text, each ending in a newline; nothing else.
fn certificate_blocks(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let (mut blocks, mut rest) = (String::new(), text);
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        blocks.push_str(&rest[start..start + len + END.len()]);
        blocks.push('\n');
        rest = &rest[start + len + END.len()..];
    }
    blocks
}

fn io_error(path: &Path, error: &io::Error) -> CertsError {
    CertsError::Io {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

fn bad_file(path: &Path, problem: String) -> CertsError {
    CertsError::BadFile {
        path: path.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests;

//! `certs inspect` (docs/cli.md): what the first certificate of a PEM file says, whether it
//! passes the X509-SVID leaf rules of `identity::Svid` (docs/security.md) in either role, and
//! whether every certificate after it is a signing certificate (X509-SVID §4.1/§4.3: CA:true
//! and keyCertSign) — the same rules the handshake applies to a peer's intermediates.

use std::fmt;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use super::{CertsError, bad_file, certificates, io_error};
use crate::identity::svid::unix_seconds;
use crate::identity::{Role, SpiffeId, Svid, check_signers};

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
    /// `ok` when every certificate after the first is a signing certificate (CA:true and
    /// keyCertSign), else which one is not and why.
    pub chain_check: String,
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
    Ok(Inspection::of(&cert, &ders, now))
}

/// `ok`, or the first certificate after the leaf that is not a signing certificate: its
/// position in the file (the leaf is 1), its subject, and the rule it breaks.
fn chain_check(ders: &[Vec<u8>]) -> String {
    let Err((position, error)) = check_signers(&ders[1..]) else {
        return PASSED.to_owned();
    };
    let subject = x509_parser::parse_x509_certificate(&ders[position - 1])
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_default();
    match subject.as_str() {
        "" => format!("certificate {position}: {error}"),
        subject => format!("certificate {position} ({subject}): {error}"),
    }
}

impl Inspection {
    /// Whether the certificate passes the X509-SVID leaf rules in at least one role (as an
    /// inbound peer or as a server); `certs inspect` exits 1 when it passes in neither.
    pub fn is_svid(&self) -> bool {
        self.client_check == PASSED || self.server_check == PASSED
    }

    /// Whether the file holds a usable SVID chain: the leaf passes in a role
    /// ([`Self::is_svid`]) and every later certificate is a signing certificate.
    pub fn is_valid(&self) -> bool {
        self.is_svid() && self.chain_check == PASSED
    }

    /// The report on `cert`, the first of `ders` (every certificate of the file, DER).
    fn of(cert: &X509Certificate<'_>, ders: &[Vec<u8>], now: SystemTime) -> Self {
        let der = &ders[0];
        let (uris, dns_names) = san_names(cert);
        let not_after = cert.validity().not_after;
        let check = |role| match Svid::from_der(der, role, now) {
            Ok(_) => PASSED.to_owned(),
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
            chain_len: ders.len(),
            dns_names,
            client_check: check(Role::Client),
            server_check: check(Role::Server),
            chain_check: chain_check(ders),
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
        writeln!(f, "server check  {}", self.server_check)?;
        writeln!(f, "chain check   {}", self.chain_check)
    }
}

/// What `client_check` and `server_check` say when the leaf passes.
const PASSED: &str = "ok";

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

//! `certs init` and `certs issue` (docs/cli.md): the CA and SVID files, written atomically
//! with keys created 0600, and the `--ttl` syntax ([`parse_ttl`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    BUNDLE_FILE, CA_CERT_FILE, CA_KEY_FILE, Ca, CertsError, SVID_CERT_FILE, SVID_KEY_FILE,
    certificate_blocks, io_error, svid_params,
};
use crate::atomic_file::AtomicWrite;
use crate::duration;
use crate::identity::{SpiffeId, TrustDomain};

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
/// (the CA's `bundle.pem`, or its `ca.pem` if it has none). Nothing is written on error.
///
/// # Errors
/// [`CertsError::RootId`], [`CertsError::BadDnsName`], [`CertsError::BadTtl`],
/// [`CertsError::Io`] / [`CertsError::BadFile`] naming the file,
/// [`CertsError::TrustDomainMismatch`] when the CA names another trust domain,
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
    check_trust_domain(&ca, id)?;
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
/// at most [`super::MAX_TTL`] (the grammar of [`crate::duration::TTL`]).
///
/// # Errors
/// [`CertsError::BadTtl`] saying what is wrong.
pub fn parse_ttl(input: &str) -> Result<Duration, CertsError> {
    use crate::duration::DurationError as E;
    duration::parse(input, &duration::TTL).map_err(|e| CertsError::BadTtl {
        input: input.to_owned(),
        problem: match e {
            E::Empty => "empty; write a number and a unit, e.g. 24h",
            E::MissingUnit => "missing unit; end with s, m, h or d",
            E::UnknownUnit => "unknown unit; use s, m, h or d (e.g. 24h)",
            E::NotWholeNumber => "expected a whole number before the unit, e.g. 24h",
            E::Zero => "must be longer than zero",
            E::TooLong => "too long; the longest TTL is 3650d",
        },
    })
}

const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// "A CA of one trust domain cannot vouch for another" (docs/security.md): every trust domain the
/// CA certificate names must be `id`'s. A CA that names none (an external CA) may issue for any.
fn check_trust_domain(ca: &Ca, id: &SpiffeId) -> Result<(), CertsError> {
    match ca
        .trust_domains()
        .iter()
        .find(|td| *td != id.trust_domain())
    {
        Some(td) => Err(CertsError::TrustDomainMismatch {
            ca: td.clone(),
            id: id.trust_domain().to_owned(),
        }),
        None => Ok(()),
    }
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

fn create_dir(dir: &Path) -> Result<(), CertsError> {
    fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))
}

/// Writes `contents` as `path` with `mode` (so a key is never readable by others, not even
/// briefly), atomically: readers see the old file or the new one, whole.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertsError> {
    AtomicWrite::new()
        .mode(mode)
        .write(path, contents)
        .map_err(|e| io_error(path, &e))
}

//! [`Pki`]: a throwaway PKI for integration tests. One in-memory [`Ca`] per trust domain, its
//! bundle written to a temporary folder, and X509-SVIDs written beside it: good ones,
//! cross-domain forgeries and leaves that break docs/security.md on purpose. No PEM is checked in.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyUsagePurpose, SanType};
use segward::certs::{Ca, IssuedSvid, svid_params};
use segward::identity::{SpiffeId, TrustDomain};
use tempfile::TempDir;
use time::OffsetDateTime;

/// Lifetime of every good SVID the fixture mints.
pub const SVID_TTL: Duration = Duration::from_secs(3600);

/// The DNS SAN of every SVID: sidecars and test servers are reached as `localhost`.
pub const DNS_NAME: &str = "localhost";

/// CAs for a few trust domains, and the folder their bundles and SVIDs are written to.
pub struct Pki {
    dir: TempDir,
    cas: Vec<(String, Ca)>,
    issued: AtomicUsize,
}

/// One SVID on disk: `cert` holds the chain (leaf, then CA), `key` the PKCS#8 key.
#[derive(Debug, Clone)]
pub struct SvidFiles {
    /// `<dir>/<n>/svid.pem`: the leaf, then the CA certificate.
    pub cert: PathBuf,
    /// `<dir>/<n>/svid.key`: the leaf's private key (mode 0600).
    pub key: PathBuf,
    /// The same material in memory.
    pub pem: IssuedSvid,
}

impl Pki {
    /// A fresh CA for each trust domain, its certificate written to `<dir>/bundles/<td>.pem`.
    pub fn new(trust_domains: &[&str]) -> Pki {
        Pki::with_roots(trust_domains, |_| {})
    }

    /// As [`Pki::new`], each root CA altered by `alter` before it is signed (roots made as
    /// other CAs make them, e.g. without a keyUsage extension).
    pub fn with_roots(trust_domains: &[&str], alter: fn(&mut CertificateParams)) -> Pki {
        let dir = TempDir::new().unwrap();
        let bundles = dir.path().join("bundles");
        fs::create_dir(&bundles).unwrap();
        let cas = trust_domains
            .iter()
            .map(|td| {
                let ca = Ca::root(&TrustDomain::parse(td).unwrap(), alter).unwrap();
                fs::write(bundles.join(format!("{td}.pem")), ca.cert_pem()).unwrap();
                (td.to_string(), ca)
            })
            .collect();
        Pki {
            dir,
            cas,
            issued: AtomicUsize::new(0),
        }
    }

    /// The temporary folder that holds `bundles/` and the SVID folders.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA of trust domain `td`; panics if [`Pki::new`] was not given `td`.
    pub fn ca(&self, td: &str) -> &Ca {
        let found = self.cas.iter().find(|(name, _)| name == td);
        &found
            .unwrap_or_else(|| panic!("no CA for trust domain {td}"))
            .1
    }

    /// `<dir>/bundles/<td>.pem`: the CA certificate of `td`.
    pub fn bundle_path(&self, td: &str) -> PathBuf {
        self.dir().join("bundles").join(format!("{td}.pem"))
    }

    /// Every CA certificate, PEM, in the order given to [`Pki::new`] (roots for clients).
    pub fn bundle_pems(&self) -> Vec<String> {
        self.cas
            .iter()
            .map(|(_, ca)| ca.cert_pem().to_owned())
            .collect()
    }

    /// A good SVID for `id`, signed by the CA of `id`'s own trust domain.
    pub fn issue(&self, id: &str) -> SvidFiles {
        let td = spiffe_id(id).trust_domain().to_owned();
        self.issue_by(&td, id)
    }

    /// An SVID for `id` signed by the CA of `ca_td`: a cross-domain forgery when `id` belongs
    /// to another trust domain (the chain verifies, the trust domain does not match).
    pub fn issue_by(&self, ca_td: &str, id: &str) -> SvidFiles {
        let svid = self.ca(ca_td).issue(&spiffe_id(id), SVID_TTL, &dns_names());
        self.write_svid(svid.unwrap())
    }

    /// Writes any leaf to `<dir>/<n>/svid.pem` (its chain) and `<dir>/<n>/svid.key`.
    pub fn write_svid(&self, svid: IssuedSvid) -> SvidFiles {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let folder = self.dir().join(n.to_string());
        fs::create_dir(&folder).unwrap();
        let (cert, key) = (folder.join("svid.pem"), folder.join("svid.key"));
        fs::write(&cert, &svid.chain_pem).unwrap();
        write_secret(&key, &svid.key_pem);
        SvidFiles {
            cert,
            key,
            pem: svid,
        }
    }

    /// A leaf for `id` with a second URI SAN, `<id>-twin` (an X509-SVID has exactly one).
    pub fn two_uri_sans(&self, id: &str) -> SvidFiles {
        let twin = format!("{id}-twin");
        self.bad_leaf(id, |params| {
            let san = SanType::URI(twin.as_str().try_into().unwrap());
            params.subject_alt_names.push(san);
        })
    }

    /// A leaf for `id` that is a CA: basicConstraints CA:true, keyCertSign.
    pub fn ca_as_leaf(&self, id: &str) -> SvidFiles {
        self.bad_leaf(id, |params| {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
        })
    }

    /// A leaf for `id` that expired an hour ago (valid from two hours ago).
    pub fn expired(&self, id: &str) -> SvidFiles {
        self.bad_leaf(id, |params| {
            let now = OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::hours(2);
            params.not_after = now - time::Duration::hours(1);
        })
    }

    /// Good SVID parameters for `id`, altered by `alter`, signed by `id`'s own CA.
    fn bad_leaf(&self, id: &str, alter: impl FnOnce(&mut CertificateParams)) -> SvidFiles {
        let id = spiffe_id(id);
        let mut params = svid_params(&id, SVID_TTL, &dns_names()).unwrap();
        alter(&mut params);
        let svid = self.ca(id.trust_domain()).sign(&params).unwrap();
        self.write_svid(svid)
    }
}

/// The serial number of a DER certificate: which of several SVIDs a peer presented.
pub fn serial(der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.raw_serial().to_vec()
}

fn spiffe_id(id: &str) -> SpiffeId {
    SpiffeId::parse(id).unwrap_or_else(|e| panic!("bad SPIFFE ID {id}: {e}"))
}

fn dns_names() -> Vec<String> {
    vec![DNS_NAME.to_owned()]
}

/// Writes a private key readable by the owner only, as `segward certs issue` does.
fn write_secret(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

//! [`Credentials`]: our SVID chain, its private key and the trust bundles, each keyed by
//! trust domain, loaded from PEM and checked before any listener starts (fail closed).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;

use super::{TlsError, crypto_provider};
use crate::identity::{Role, SpiffeId, Svid, TrustDomain, check_signers};

/// Checked TLS material: a leaf that is an X509-SVID for both roles, the key that belongs to
/// it, and one non-empty bundle per trust domain. Its only constructors check all of that.
pub struct Credentials {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    certified: Arc<CertifiedKey>,
    id: SpiffeId,
    not_after: i64,
    bundles: BTreeMap<String, Arc<RootCertStore>>,
}

/// PEM text and the name errors give it: a file path, or a `<label>` for in-memory PEM.
struct Pem<'a> {
    file: String,
    text: &'a [u8],
}

impl Credentials {
    /// Reads the SVID chain `cert`, its private key `key` and one bundle file per trust domain.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file at fault; see [`Credentials::from_pem`].
    pub fn load(
        cert: &Path,
        key: &Path,
        bundles: &[(TrustDomain, PathBuf)],
        now: SystemTime,
    ) -> Result<Credentials, TlsError> {
        let cert_text = read_file(cert)?;
        let key_text = read_file(key)?;
        let bundle_texts = bundles
            .iter()
            .map(|(_, path)| read_file(path))
            .collect::<Result<Vec<_>, _>>()?;
        let bundles: Vec<_> = bundles
            .iter()
            .zip(&bundle_texts)
            .map(|((td, path), text)| (td, path.as_path(), text.as_slice()))
            .collect();
        Self::from_files((cert, &cert_text), (key, &key_text), &bundles, now)
    }

    /// The checks of [`Credentials::load`] on file contents already read (a reload hashes
    /// the very bytes it builds from): each `(path, contents)`, the path naming it in errors.
    ///
    /// # Errors
    /// As [`Credentials::from_pem`], naming the files.
    pub fn from_files(
        cert: (&Path, &[u8]),
        key: (&Path, &[u8]),
        bundles: &[(&TrustDomain, &Path, &[u8])],
        now: SystemTime,
    ) -> Result<Credentials, TlsError> {
        let bundles = bundles
            .iter()
            .map(|&(td, path, text)| (td, named(path, text)))
            .collect();
        build(named(cert.0, cert.1), named(key.0, key.1), bundles, now)
    }

    /// The same checks on in-memory PEM; errors name `<certificate>`, `<key>` and
    /// `<bundle TD>`.
    ///
    /// # Errors
    /// [`TlsError::NoCertificate`], [`TlsError::NoPrivateKey`], [`TlsError::BadPem`],
    /// [`TlsError::InvalidSvid`] (the leaf must pass the X509-SVID rules as client and as
    /// server at `now`), [`TlsError::UnsupportedKey`], [`TlsError::KeyMismatch`],
    /// [`TlsError::EmptyBundle`], [`TlsError::BadTrustAnchor`], [`TlsError::DuplicateBundle`]
    /// or [`TlsError::NoBundles`].
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        bundles: &[(TrustDomain, &str)],
        now: SystemTime,
    ) -> Result<Credentials, TlsError> {
        let bundles = bundles
            .iter()
            .map(|(td, text)| (td, pem(&format!("<bundle {td}>"), text.as_bytes())))
            .collect();
        let cert = pem("<certificate>", cert_pem.as_bytes());
        build(cert, pem("<key>", key_pem.as_bytes()), bundles, now)
    }

    /// Our SPIFFE ID, from the leaf's URI SAN.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// When our leaf expires (notAfter), unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The leaf, then its intermediates, as presented to peers.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key of the leaf. Secret: never log it.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The trust anchors per trust domain name.
    pub fn bundles(&self) -> &BTreeMap<String, Arc<RootCertStore>> {
        &self.bundles
    }

    /// Chain and signing key together, as the config builders want them.
    pub(super) fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("chain_len", &self.chain.len())
            .field("key", &"[redacted]")
            .field("trust_domains", &self.bundles.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The bytes of a certificate, key or bundle file; an error names the file.
///
/// # Errors
/// [`TlsError::Io`] with the operating system's words.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Io {
        file: path.display().to_string(),
        problem: e.to_string(),
    })
}

fn named<'a>(path: &Path, text: &'a [u8]) -> Pem<'a> {
    pem(&path.display().to_string(), text)
}

fn pem<'a>(file: &str, text: &'a [u8]) -> Pem<'a> {
    Pem {
        file: file.to_owned(),
        text,
    }
}

fn build(
    cert: Pem<'_>,
    key: Pem<'_>,
    bundles: Vec<(&TrustDomain, Pem<'_>)>,
    now: SystemTime,
) -> Result<Credentials, TlsError> {
    let chain = certificates(&cert)?.ok_or_else(|| TlsError::NoCertificate {
        file: cert.file.clone(),
    })?;
    let private_key = private_key(&key)?;
    let mut roots = Vec::with_capacity(bundles.len());
    for (trust_domain, pem) in bundles {
        let certs = certificates(&pem)?.unwrap_or_default();
        roots.push(Bundle {
            trust_domain: trust_domain.clone(),
            source: pem.file,
            certs,
        });
    }
    assemble(&cert.file, chain, &key.file, private_key, roots, now)
}

/// One trust domain's CA certificates and the name errors give their source.
#[derive(Debug)]
pub struct Bundle {
    /// The trust domain the CAs sign for.
    pub trust_domain: TrustDomain,
    /// A file path or a `<label>`, named in errors.
    pub source: String,
    /// The CA certificates (DER); empty is an error.
    pub certs: Vec<CertificateDer<'static>>,
}

impl Credentials {
    /// The checks of [`Credentials::load`] on DER material, as the SPIFFE Workload API
    /// delivers it: `chain` (leaf first) and PKCS#8 `key` named `cert_source` and
    /// `key_source` in errors.
    ///
    /// # Errors
    /// As [`Credentials::from_pem`].
    pub fn from_der(
        (cert_source, chain): (&str, Vec<CertificateDer<'static>>),
        (key_source, key): (&str, PrivateKeyDer<'static>),
        bundles: Vec<Bundle>,
        now: SystemTime,
    ) -> Result<Credentials, TlsError> {
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                file: cert_source.to_owned(),
            });
        }
        assemble(cert_source, chain, key_source, key, bundles, now)
    }
}

/// Every check on parsed material: the leaf is an X509-SVID for both roles, the key is its
/// own, each bundle is non-empty and usable, one per trust domain, at least one, and our
/// chain verifies against our own trust domain's bundle ([`check_own_chain`]).
fn assemble(
    cert_source: &str,
    chain: Vec<CertificateDer<'static>>,
    key_source: &str,
    private_key: PrivateKeyDer<'static>,
    bundles: Vec<Bundle>,
    now: SystemTime,
) -> Result<Credentials, TlsError> {
    let own = own_svid(cert_source, &chain[0], now)?;
    let certified = certified_key(cert_source, key_source, chain.clone(), &private_key)?;
    let bundles = trust_bundles(bundles)?;
    check_own_chain(cert_source, &chain, &own.id, &bundles, now)?;
    Ok(Credentials {
        chain,
        key: private_key,
        certified: Arc::new(certified),
        id: own.id,
        not_after: own.not_after,
        bundles,
    })
}

/// Our chain as our peers will check it, at start-up and at every rotation: each
/// intermediate a signing certificate (CA:true, keyCertSign), and the whole chain verifying
/// by webpki against the bundle of our own trust domain at `now`.
fn check_own_chain(
    file: &str,
    chain: &[CertificateDer<'static>],
    id: &SpiffeId,
    bundles: &BTreeMap<String, Arc<RootCertStore>>,
    now: SystemTime,
) -> Result<(), TlsError> {
    check_signers(&chain[1..]).map_err(|(position, error)| TlsError::OwnSigner {
        file: file.to_owned(),
        position,
        error,
    })?;
    let trust_domain = id.trust_domain();
    let roots = bundles
        .get(trust_domain)
        .ok_or_else(|| TlsError::OwnTrustDomainUnbundled {
            file: file.to_owned(),
            trust_domain: trust_domain.to_owned(),
        })?;
    let untrusted = |problem: String| TlsError::OwnChainUntrusted {
        file: file.to_owned(),
        trust_domain: trust_domain.to_owned(),
        problem,
    };
    let parsed = ParsedCertificate::try_from(&chain[0]).map_err(|e| untrusted(e.to_string()))?;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &chain[1..],
        UnixTime::since_unix_epoch(since_epoch),
        crypto_provider().signature_verification_algorithms.all,
    )
    .map_err(|e| untrusted(e.to_string()))
}

/// Every CERTIFICATE block of `pem`, in order; `None` when there is none.
fn certificates(pem: &Pem<'_>) -> Result<Option<Vec<CertificateDer<'static>>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(pem, &e))?;
    Ok(Some(certs).filter(|certs| !certs.is_empty()))
}

/// Our leaf must be an X509-SVID as a client (outbound) and as a server (inbound).
fn own_svid(file: &str, leaf: &CertificateDer<'_>, now: SystemTime) -> Result<Svid, TlsError> {
    let invalid = |error| TlsError::InvalidSvid {
        file: file.to_owned(),
        error,
    };
    Svid::from_der(leaf, Role::Client, now).map_err(invalid)?;
    Svid::from_der(leaf, Role::Server, now).map_err(invalid)
}

fn private_key(pem: &Pem<'_>) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.text).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            file: pem.file.clone(),
        },
        e => bad_pem(pem, &e),
    })
}

/// Loads the key with the provider and checks that its public key is the leaf's.
fn certified_key(
    cert: &str,
    key: &str,
    chain: Vec<CertificateDer<'static>>,
    private_key: &PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(private_key.clone_key())
        .map_err(|e| TlsError::UnsupportedKey {
            file: key.to_owned(),
            problem: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // Fail closed: a key whose public half cannot be compared counts as a mismatch.
    certified.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
    })?;
    Ok(certified)
}

/// One non-empty root store per trust domain; at least one trust domain.
fn trust_bundles(bundles: Vec<Bundle>) -> Result<BTreeMap<String, Arc<RootCertStore>>, TlsError> {
    if bundles.is_empty() {
        return Err(TlsError::NoBundles);
    }
    let mut stores = BTreeMap::new();
    for bundle in bundles {
        let trust_domain = bundle.trust_domain.to_string();
        let store = root_store(bundle)?;
        if stores
            .insert(trust_domain.clone(), Arc::new(store))
            .is_some()
        {
            return Err(TlsError::DuplicateBundle { trust_domain });
        }
    }
    Ok(stores)
}

fn root_store(bundle: Bundle) -> Result<RootCertStore, TlsError> {
    if bundle.certs.is_empty() {
        return Err(TlsError::EmptyBundle {
            file: bundle.source,
            trust_domain: bundle.trust_domain.to_string(),
        });
    }
    let mut store = RootCertStore::empty();
    for cert in bundle.certs {
        store.add(cert).map_err(|e| TlsError::BadTrustAnchor {
            file: bundle.source.clone(),
            problem: e.to_string(),
        })?;
    }
    Ok(store)
}

fn bad_pem(pem: &Pem<'_>, error: &pem::Error) -> TlsError {
    TlsError::BadPem {
        file: pem.file.clone(),
        problem: error.to_string(),
    }
}

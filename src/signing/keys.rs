//! The keys of policy signing (docs/fleet.md#signed-policy): Ed25519, the private key as
//! PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) and the public key as SubjectPublicKeyInfo PEM
//! (`-----BEGIN PUBLIC KEY-----`), the forms `openssl genpkey -algorithm ed25519` and
//! `openssl pkey -pubout` read and write. A key is named by its [`Fingerprint`], the SHA-256
//! of its DER SubjectPublicKeyInfo.

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

use super::digest::{PolicyDigest, hex, hex_decode, sha256};

/// A key file larger than this is not a key (an Ed25519 PEM is about 120 bytes).
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// The DER SubjectPublicKeyInfo of an Ed25519 key up to the key's 32 bytes (RFC 8410 §4):
/// SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 PKCS#8 version 1 document up to the 32-byte seed (RFC 8410 §7): SEQUENCE {
/// INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The same up to the seed in version 2, as ring writes it (the public key follows the seed).
const PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read, or is over 64 KiB.
    #[error("cannot read: {0}")]
    Io(String),
    /// No `PUBLIC KEY` block, or one that is not an Ed25519 SubjectPublicKeyInfo.
    #[error("not an Ed25519 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`)")]
    NotPublicKey,
    /// No `PRIVATE KEY` block, or one ring refuses as an Ed25519 PKCS#8 key.
    #[error("not an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`)")]
    NotPrivateKey,
    /// The random source failed while making a key.
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

/// A public key's name: the SHA-256 of its DER SubjectPublicKeyInfo, written
/// `sha256:<64 hex digits>` (`openssl pkey -pubin -in KEY -outform DER | sha256sum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Parses `sha256:<64 hex digits>`, the form [`fmt::Display`] writes.
    pub fn parse(text: &str) -> Option<Self> {
        hex_decode::<32>(text.strip_prefix("sha256:")?).map(Self)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex(&self.0))
    }
}

/// An Ed25519 public key that verifies policy signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyKey {
    raw: [u8; 32],
    fingerprint: Fingerprint,
}

impl VerifyKey {
    /// The key of an SPKI PEM text.
    ///
    /// # Errors
    /// [`KeyError::NotPublicKey`].
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der =
            SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| KeyError::NotPublicKey)?;
        let raw = der
            .as_ref()
            .strip_prefix(&ED25519_SPKI_PREFIX)
            .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
            .ok_or(KeyError::NotPublicKey)?;
        Ok(Self::from_raw(raw))
    }

    /// The key in the SPKI PEM file `path`.
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::NotPublicKey`].
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_pem(&read_capped(path)?)
    }

    fn from_raw(raw: [u8; 32]) -> Self {
        let fingerprint = Fingerprint(sha256(&spki_der(&raw)));
        Self { raw, fingerprint }
    }

    /// The key's name.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether `signature` is this key's Ed25519 signature of `digest`.
    pub fn verifies(&self, digest: &PolicyDigest, signature: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(digest.as_bytes(), signature)
            .is_ok()
    }
}

/// An Ed25519 private key that signs policies.
#[derive(Debug)]
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: VerifyKey,
}

impl SigningKey {
    /// The key of a PKCS#8 PEM text (version 1, as openssl writes it, or 2).
    ///
    /// # Errors
    /// [`KeyError::NotPrivateKey`].
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|_| KeyError::NotPrivateKey)?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|_| KeyError::NotPrivateKey)?;
        let raw = <[u8; 32]>::try_from(pair.public_key().as_ref())
            .map_err(|_| KeyError::NotPrivateKey)?;
        Ok(Self {
            pair,
            public: VerifyKey::from_raw(raw),
        })
    }

    /// The key in the PKCS#8 PEM file `path`.
    ///
    /// # Errors
    /// [`KeyError::Io`], [`KeyError::NotPrivateKey`].
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_pem(&read_capped(path)?)
    }

    /// Its public half.
    pub fn public(&self) -> &VerifyKey {
        &self.public
    }

    /// The Ed25519 signature of `digest`.
    pub fn sign(&self, digest: &PolicyDigest) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(digest.as_bytes()).as_ref());
        out
    }
}

/// A new key pair as PEM texts, for `segward certs signing-key`.
#[derive(Debug)]
pub struct KeyPairPem {
    /// PKCS#8 PEM: the secret.
    pub private_pem: String,
    /// SPKI PEM: what sidecars are given.
    pub public_pem: String,
    /// The public key's name.
    pub fingerprint: Fingerprint,
}

/// Makes a new Ed25519 key pair. The private key is written as PKCS#8 version 1 (RFC 8410
/// §7: the seed alone), the form openssl writes and reads; ring makes version 2 (seed and
/// public key), which OpenSSL 3.0 refuses.
///
/// # Errors
/// [`KeyError::Generate`] when the system's random source fails.
pub fn generate() -> Result<KeyPairPem, KeyError> {
    let failed = |e: &dyn fmt::Display| KeyError::Generate(e.to_string());
    let v2 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| failed(&e))?;
    let seed = v2
        .as_ref()
        .strip_prefix(&PKCS8_V2_PREFIX)
        .and_then(|rest| rest.get(..32))
        .ok_or_else(|| failed(&"ring's PKCS#8 document has an unexpected layout"))?;
    let mut v1 = PKCS8_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(v1),
        &rcgen::PKCS_ED25519,
    )
    .map_err(|e| failed(&e))?;
    let private_pem = pair.serialize_pem();
    let fingerprint = SigningKey::from_pem(private_pem.as_bytes())?
        .public()
        .fingerprint();
    Ok(KeyPairPem {
        public_pem: pair.public_key_pem(),
        private_pem,
        fingerprint,
    })
}

fn spki_der(raw: &[u8; 32]) -> Vec<u8> {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(raw);
    der
}

/// The bytes of a key file of at most [`MAX_KEY_BYTES`].
fn read_capped(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |e: std::io::Error| KeyError::Io(e.to_string());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_KEY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_BYTES {
        return Err(KeyError::Io(format!("over {MAX_KEY_BYTES} bytes")));
    }
    Ok(bytes)
}

use std::fs;

use super::digest::canonical_text;
use super::*;

/// `openssl genpkey -algorithm ed25519` (PKCS#8 version 1) and `openssl pkey -pubout`.
const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIC8bJH3P15n90+3Rv073+nHYgcU3bEKJQwd6JePHT0xq
-----END PRIVATE KEY-----
";
const OPENSSL_PUB: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEACsk0Gt+FrwlwbE2UbuY6NWqhGTDiVfBLm5DOTrj1NGo=
-----END PUBLIC KEY-----
";
/// `openssl pkey -pubin -in pub.pem -outform DER | sha256sum` of [`OPENSSL_PUB`].
const OPENSSL_FINGERPRINT: &str =
    "sha256:56ce9f0e636adfb183769e080f805b2449b8c1ad20644c78a936c9919b67d887";

fn digest(files: &[(&str, &str)]) -> PolicyDigest {
    PolicyDigest::of(files.iter().map(|(n, t)| (*n, t.as_bytes()))).unwrap()
}

const A: (&str, &str) = ("a.yaml", "segments: {}\n");
const B: (&str, &str) = ("b.yaml", "rules: []\n");

#[test]
fn the_digest_does_not_depend_on_the_order_files_are_given_in() {
    assert_eq!(digest(&[A, B]), digest(&[B, A]));
}

#[test]
fn every_change_to_names_or_bytes_changes_the_digest() {
    let base = digest(&[A, B]);
    let changed = [
        ("renamed", digest(&[("a2.yaml", A.1), B])),
        ("added", digest(&[A, B, ("c.yaml", "")])),
        ("removed", digest(&[A])),
        ("whitespace", digest(&[("a.yaml", "segments: {} \n"), B])),
        (
            "contents swapped",
            digest(&[("a.yaml", B.1), ("b.yaml", A.1)]),
        ),
        (
            "bytes moved",
            digest(&[("a.yaml", "segments: {}\nr"), ("b.yaml", "ules: []\n")]),
        ),
    ];
    for (change, other) in changed {
        assert_ne!(other, base, "{change}");
    }
}

#[test]
fn the_canonical_text_is_sha256sum_lines_in_name_order_under_a_versioned_header() {
    let text = canonical_text([("b.yaml", &b"x"[..]), ("a.yaml", &b""[..])]).unwrap();
    assert_eq!(
        text,
        "segward-policy-digest v1\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a.yaml\n\
         2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881  b.yaml\n"
    );
}

#[test]
fn names_are_sorted_by_their_bytes() {
    let text = canonical_text([("a\tb.yaml", &b""[..]), ("a.yaml", &b""[..])]).unwrap();
    let names: Vec<_> = text.lines().skip(1).map(|l| &l[66..]).collect();
    assert_eq!(names, ["a\tb.yaml", "a.yaml"]);
}

#[test]
fn a_name_with_a_line_break_cannot_be_signed() {
    let error = PolicyDigest::of([("a\n.yaml", &b""[..])]).unwrap_err();
    assert_eq!(error, BadFileName("a\n.yaml".into()));
}

#[test]
fn only_the_file_name_counts_not_its_folder() {
    let here = digest_of(Path::new("p"), [("/etc/p/a.yaml", A.1.as_bytes())]).unwrap();
    let there = digest_of(Path::new("q"), [("ci/out/a.yaml", A.1.as_bytes())]).unwrap();
    assert_eq!(here, there);
}

#[test]
fn openssl_keys_are_read_and_named_by_the_sha256_of_their_spki() {
    let private = SigningKey::from_pem(OPENSSL_KEY.as_bytes()).unwrap();
    let public = VerifyKey::from_pem(OPENSSL_PUB.as_bytes()).unwrap();
    assert_eq!(private.public(), &public);
    assert_eq!(public.fingerprint().to_string(), OPENSSL_FINGERPRINT);
    assert_eq!(
        Fingerprint::parse(OPENSSL_FINGERPRINT),
        Some(public.fingerprint())
    );
}

#[test]
fn a_generated_pair_signs_what_its_public_half_verifies() {
    let pair = generate().unwrap();
    let key = SigningKey::from_pem(pair.private_pem.as_bytes()).unwrap();
    let public = VerifyKey::from_pem(pair.public_pem.as_bytes()).unwrap();
    assert_eq!(public.fingerprint(), pair.fingerprint);
    // PKCS#8 version 1, the same shape as openssl's own.
    assert_eq!(pair.private_pem.len(), OPENSSL_KEY.len());
    let signed = digest(&[A]);
    let signature = key.sign(&signed);
    assert!(public.verifies(&signed, &signature));
    assert!(!public.verifies(&digest(&[B]), &signature));
}

#[test]
fn keys_of_the_wrong_kind_are_refused() {
    let p256 = rcgen::KeyPair::generate().unwrap();
    let rows: [(&str, Result<(), KeyError>); 4] = [
        (OPENSSL_PUB, Err(KeyError::NotPrivateKey)),
        (&p256.serialize_pem(), Err(KeyError::NotPrivateKey)),
        ("not pem", Err(KeyError::NotPrivateKey)),
        (OPENSSL_KEY, Ok(())),
    ];
    for (pem, expected) in rows {
        let got = SigningKey::from_pem(pem.as_bytes()).map(|_| ());
        assert_eq!(got, expected, "{pem}");
    }
    let public_rows = [OPENSSL_KEY, &p256.public_key_pem(), ""];
    for pem in public_rows {
        let got = VerifyKey::from_pem(pem.as_bytes());
        assert_eq!(got, Err(KeyError::NotPublicKey), "{pem}");
    }
}

fn signature_file() -> SignatureFile {
    let key = SigningKey::from_pem(OPENSSL_KEY.as_bytes()).unwrap();
    let digest = digest(&[A]);
    SignatureFile {
        key: key.public().fingerprint(),
        digest,
        signature: key.sign(&digest),
    }
}

#[test]
fn a_signature_file_reads_back_what_was_written() {
    let file = signature_file();
    let text = file.to_string();
    assert!(text.starts_with("format: segward-policy-signature v1\nkey: sha256:56ce9f0e"));
    assert_eq!(SignatureFile::parse(&text), Ok(file));
}

#[test]
fn a_malformed_signature_file_says_what_is_wrong() {
    let good = signature_file().to_string();
    let rows = [
        ("", "no `format:` line"),
        (
            "format: segward-policy-signature v2\n",
            "format `segward-policy-signature v2`",
        ),
        (&good.replacen("key: sha256:", "key: md5:", 1), "key `md5:"),
        (
            &good.replacen("digest:", "digests:", 1),
            "expected `digest: …`",
        ),
        (
            &good.replace("signature: ", "signature: 00"),
            "not 128 hex digits",
        ),
        (&format!("{good}extra\n"), "text after"),
        (&"x".repeat(5000), "over 4096 bytes"),
    ];
    for (text, expected) in rows {
        let error = SignatureFile::parse(text).unwrap_err();
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
    }
}

/// A folder with [`A`] and [`B`], signed by a new key; returns the folder, the files as the
/// loader reads them, and the key.
fn signed_folder() -> (tempfile::TempDir, SigningKey) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [A, B] {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let key = SigningKey::from_pem(generate().unwrap().private_pem.as_bytes()).unwrap();
    sign(dir.path(), files(dir.path()).iter().map(as_pair), &key).unwrap();
    (dir, key)
}

fn files(dir: &Path) -> Vec<(String, String)> {
    crate::policy::PolicySource::read(dir).unwrap()
}

fn as_pair((name, text): &(String, String)) -> (&str, &[u8]) {
    (name.as_str(), text.as_bytes())
}

fn verify(dir: &Path, keys: &[&VerifyKey]) -> Result<Fingerprint, SignatureError> {
    let keys = PolicyKeys::new(keys.iter().map(|k| (*k).clone()).collect());
    keys.verify(dir, files(dir).iter().map(as_pair))
}

#[test]
fn a_signed_folder_verifies_with_its_key_among_others() {
    let (dir, key) = signed_folder();
    let other = VerifyKey::from_pem(OPENSSL_PUB.as_bytes()).unwrap();
    assert!(dir.path().join("policy.sig").is_file());
    let signer = verify(dir.path(), &[&other, key.public()]);
    assert_eq!(signer, Ok(key.public().fingerprint()));
}

#[test]
fn a_folder_is_refused_for_each_broken_rule_of_its_signature() {
    let (dir, key) = signed_folder();
    let path = dir.path();
    let other = VerifyKey::from_pem(OPENSSL_PUB.as_bytes()).unwrap();
    assert!(matches!(
        verify(path, &[&other]),
        Err(SignatureError::UnknownKey { trusted: 1, .. })
    ));
    fs::write(path.join("c.yml"), "rules: []\n").unwrap();
    assert!(matches!(
        verify(path, &[key.public()]),
        Err(SignatureError::NotSigned { .. })
    ));
    fs::remove_file(path.join("c.yml")).unwrap();
    // The signed digest written over with the new one: the signature no longer matches it.
    let sig = path.join("policy.sig");
    let text = fs::read_to_string(&sig).unwrap();
    fs::write(path.join("a.yaml"), "segments: {}\n\n").unwrap();
    let actual = digest_of(path, files(path).iter().map(as_pair)).unwrap();
    let forged = text
        .lines()
        .map(|l| match l.starts_with("digest:") {
            true => format!("digest: {actual}\n"),
            false => format!("{l}\n"),
        })
        .collect::<String>();
    fs::write(&sig, forged).unwrap();
    assert!(matches!(
        verify(path, &[key.public()]),
        Err(SignatureError::BadSignature { .. })
    ));
    fs::remove_file(&sig).unwrap();
    let missing = verify(path, &[key.public()]).unwrap_err();
    assert!(matches!(missing, SignatureError::Missing { .. }));
    assert!(missing.to_string().starts_with(&path.display().to_string()));
}

#[test]
fn a_single_file_policy_is_signed_beside_it() {
    assert_eq!(
        signature_path(Path::new("/no/such/policy.yaml")),
        Path::new("/no/such/policy.yaml.sig")
    );
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(signature_path(dir.path()), dir.path().join("policy.sig"));
}

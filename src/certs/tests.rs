//! `certs init|issue|inspect` and `parse_ttl` (docs/cli.md) on real files in a temporary
//! directory, and the in-memory `Ca` other tests reuse. Issued leaves are checked with the
//! X509-SVID rules of `identity::Svid` (docs/security.md).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use tempfile::TempDir;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::pem::Pem;

use super::*;
use crate::identity::{Role, SpiffeId, Svid, SvidError, TrustDomain};

const ID: &str = "spiffe://example.org/ns/prod/sa/payments";
const DAY: Duration = Duration::from_secs(86_400);

fn td() -> TrustDomain {
    TrustDomain::parse("example.org").unwrap()
}

fn id() -> SpiffeId {
    SpiffeId::parse(ID).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every PEM block of a file as (label, DER).
fn pem_blocks(path: &Path) -> Vec<(String, Vec<u8>)> {
    let text = fs::read(path).unwrap();
    Pem::iter_from_buffer(&text)
        .map(|pem| pem.unwrap())
        .map(|pem| (pem.label, pem.contents))
        .collect()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn key_ids(cert: &X509Certificate<'_>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut ids = (None, None);
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                ids.0 = aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            ParsedExtension::SubjectKeyIdentifier(ski) => ids.1 = Some(ski.0.to_vec()),
            _ => {}
        }
    }
    ids
}

/// `leaf` names `ca` as issuer the way chain building needs: name bytes and key identifier.
fn assert_issued_by(leaf: &[u8], ca: &[u8]) {
    let (leaf, ca) = (parse(leaf), parse(ca));
    assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw(), "issuer name");
    let (aki, _) = key_ids(&leaf);
    let (_, ski) = key_ids(&ca);
    assert!(ski.is_some(), "CA has a subjectKeyIdentifier");
    assert_eq!(
        aki, ski,
        "leaf authorityKeyIdentifier = CA subjectKeyIdentifier"
    );
}

#[test]
fn init_writes_a_ca_its_0600_pkcs8_key_and_a_bundle_into_a_new_directory() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("nested/certs");
    let files = init(&td(), &out, false).unwrap();
    assert_eq!(files, CaFiles::in_dir(&out));
    assert_eq!(mode(&files.key), 0o600);
    let key = pem_blocks(&files.key);
    assert_eq!(key.len(), 1);
    assert_eq!(key[0].0, "PRIVATE KEY", "PKCS#8");
    assert_eq!(
        fs::read(&files.cert).unwrap(),
        fs::read(&files.bundle).unwrap()
    );

    let ca = pem_blocks(&files.cert);
    let cert = parse(&ca[0].1);
    assert!(cert.is_ca());
    assert_eq!(cert.subject().to_string(), "CN=segward CA example.org");
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign() && usage.digital_signature());
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(lifetime, (CA_LIFETIME + CLOCK_SKEW).as_secs() as i64);
}

#[test]
fn init_refuses_to_replace_a_ca_key_unless_forced() {
    let dir = TempDir::new().unwrap();
    let files = init(&td(), dir.path(), false).unwrap();
    let first = fs::read(&files.key).unwrap();

    assert_eq!(
        init(&td(), dir.path(), false),
        Err(CertsError::KeyExists(files.key.clone()))
    );
    assert_eq!(fs::read(&files.key).unwrap(), first, "key untouched");

    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o644)).unwrap();
    init(&td(), dir.path(), true).unwrap();
    assert_ne!(fs::read(&files.key).unwrap(), first, "key replaced");
    assert_eq!(mode(&files.key), 0o600, "a replaced key is 0600 again");
}

#[test]
fn issue_writes_an_x509_svid_that_passes_both_roles_and_chains_to_the_ca() {
    let dir = TempDir::new().unwrap();
    let ca_files = init(&td(), dir.path(), false).unwrap();
    let out = dir.path().join("payments");
    let files = issue(dir.path(), &id(), &out, DAY, &["payments".to_owned()]).unwrap();
    assert_eq!(files, SvidFiles::in_dir(&out));

    let chain = pem_blocks(&files.cert);
    let ca = pem_blocks(&ca_files.cert);
    assert_eq!(chain.len(), 2, "leaf then CA");
    assert_eq!(chain[1], ca[0], "second certificate is the CA");
    for role in [Role::Client, Role::Server] {
        let svid = Svid::from_der(&chain[0].1, role, SystemTime::now()).unwrap();
        assert_eq!(svid.id, id());
        assert_eq!(
            svid.not_after - svid.not_before,
            (DAY + CLOCK_SKEW).as_secs() as i64
        );
    }
    assert_issued_by(&chain[0].1, &ca[0].1);
    assert_eq!(mode(&files.key), 0o600);
    assert_eq!(pem_blocks(&files.key)[0].0, "PRIVATE KEY", "PKCS#8");
    assert_eq!(
        fs::read(&files.bundle).unwrap(),
        fs::read(&ca_files.bundle).unwrap()
    );

    let inspection = inspect(&files.cert, SystemTime::now()).unwrap();
    assert_eq!(inspection.dns_names, ["payments"]);
    assert_eq!(inspection.subject, "", "X509-SVIDs need no subject");
}

#[test]
fn issue_replaces_a_world_readable_key_with_a_0600_one() {
    let dir = TempDir::new().unwrap();
    init(&td(), dir.path(), false).unwrap();
    let out = dir.path().join("svid");
    fs::create_dir(&out).unwrap();
    fs::write(out.join(SVID_KEY_FILE), "old").unwrap();
    fs::set_permissions(out.join(SVID_KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();

    let files = issue(dir.path(), &id(), &out, DAY, &[]).unwrap();
    assert_eq!(mode(&files.key), 0o600);
    let leftovers: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 3, "no temporary files left: {leftovers:?}");
}

#[test]
fn issue_refuses_a_trust_domain_id_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    init(&td(), dir.path(), false).unwrap();
    let out = dir.path().join("root");
    let root = td().id();
    assert_eq!(
        issue(dir.path(), &root, &out, DAY, &[]),
        Err(CertsError::RootId("spiffe://example.org".to_owned()))
    );
    assert!(!out.exists());
}

#[test]
fn issue_errors_name_the_file_at_fault() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let missing = issue(dir.path(), &id(), &out, DAY, &[]).unwrap_err();
    assert!(
        matches!(&missing, CertsError::Io { path, .. } if path == &dir.path().join(CA_CERT_FILE)),
        "{missing:?}"
    );

    // A CA key that belongs to another CA certificate.
    let other = TempDir::new().unwrap();
    init(&td(), dir.path(), false).unwrap();
    init(&td(), other.path(), false).unwrap();
    fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
    let mismatch = issue(dir.path(), &id(), &out, DAY, &[]).unwrap_err();
    assert!(
        matches!(&mismatch, CertsError::BadFile { path, .. } if path == &dir.path().join(CA_CERT_FILE)),
        "{mismatch:?}"
    );
    assert!(mismatch.to_string().contains("ca.pem"), "{mismatch}");

    // A leaf where the CA certificate should be.
    let leaf = Ca::new(&td()).unwrap().issue(&id(), DAY, &[]).unwrap();
    fs::write(dir.path().join(CA_CERT_FILE), &leaf.cert_pem).unwrap();
    fs::write(dir.path().join(CA_KEY_FILE), &leaf.key_pem).unwrap();
    let not_ca = issue(dir.path(), &id(), &out, DAY, &[]).unwrap_err();
    assert!(
        not_ca.to_string().contains("not a CA certificate"),
        "{not_ca}"
    );
}

#[test]
fn issue_refuses_an_id_of_another_trust_domain_and_writes_nothing() {
    // docs/security.md: "a CA of one trust domain cannot vouch for another".
    let dir = TempDir::new().unwrap();
    init(&td(), dir.path(), false).unwrap();
    let out = dir.path().join("evil");
    let evil = SpiffeId::parse("spiffe://evil.org/ns/x").unwrap();

    let error = issue(dir.path(), &evil, &out, DAY, &[]).unwrap_err();

    assert_eq!(
        error,
        CertsError::TrustDomainMismatch {
            ca: "example.org".into(),
            id: "evil.org".into()
        }
    );
    assert_eq!(error.reason(), "trust-domain-mismatch");
    assert!(!out.exists(), "nothing written");
    // The in-memory CA still signs across trust domains: tests mint such leaves on purpose.
    assert!(Ca::new(&td()).unwrap().issue(&evil, DAY, &[]).is_ok());
}

#[test]
fn issue_reads_the_ca_trust_domain_from_its_spiffe_uri_sans_only() {
    let evil = SpiffeId::parse("spiffe://evil.org/ns/x").unwrap();
    // (URI SANs of the CA certificate, the trust domain refused for an evil.org ID)
    let cases: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&["https://example.org/ca"], None),
        (&["spiffe://evil.org"], None),
        (&["spiffe://example.org"], Some("example.org")),
        (&["spiffe://example.org/some/path"], Some("example.org")),
        (&["SPIFFE://Example.org"], Some("Example.org")),
        (
            &["spiffe://evil.org", "spiffe://example.org"],
            Some("example.org"),
        ),
    ];
    for (sans, refused) in cases {
        let dir = TempDir::new().unwrap();
        write_external_ca(dir.path(), sans, &KeyPair::generate().unwrap());
        let out = dir.path().join("svid");

        let result = issue(dir.path(), &evil, &out, DAY, &[]);

        let expected = refused.map(|ca| CertsError::TrustDomainMismatch {
            ca: ca.into(),
            id: "evil.org".into(),
        });
        assert_eq!(result.err(), expected, "CA with URI SANs {sans:?}");
        assert_eq!(out.exists(), refused.is_none(), "CA with URI SANs {sans:?}");
    }
}

#[test]
fn issue_refuses_a_ca_key_that_is_not_ecdsa_p256() {
    let dir = TempDir::new().unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    write_external_ca(dir.path(), &[], &key);

    let error = issue(dir.path(), &id(), &dir.path().join("svid"), DAY, &[]).unwrap_err();

    assert_eq!(
        error,
        CertsError::BadFile {
            path: dir.path().join(CA_KEY_FILE),
            problem: "not an ECDSA P-256 key".into()
        }
    );
}

#[test]
fn svid_params_accept_dns_names_and_refuse_anything_else() {
    let label = |c: &str, n: usize| c.repeat(n);
    let longest = [
        label("a", 63),
        label("b", 63),
        label("c", 63),
        label("d", 61),
    ]
    .join(".");
    let too_long = format!("{longest}d");
    assert_eq!((longest.len(), too_long.len()), (253, 254));
    let good = [
        "payments".to_owned(),
        "Payments.Internal".to_owned(),
        "a-b.example.org".to_owned(),
        "*.example.org".to_owned(),
        "xn--bcher-kva.example".to_owned(),
        "123.4".to_owned(),
        label("a", 63),
        longest,
    ];
    for name in &good {
        let dns = [name.clone()];
        assert!(svid_params(&id(), DAY, &dns).is_ok(), "{name}");
    }
    let bad = [
        "",
        "bad name",
        "-a",
        "a-",
        "a.-b",
        "a..b",
        "a.",
        ".a",
        "*",
        "*.",
        "a.*.b",
        "*.*.b",
        "*a.b",
        "a_b",
        "a/b",
        "a:443",
        "bücher.example",
        &label("a", 64),
        &too_long,
    ];
    for name in bad {
        let dns = ["payments".to_owned(), name.to_owned()];
        assert_eq!(
            svid_params(&id(), DAY, &dns).err(),
            Some(CertsError::BadDnsName(name.to_owned())),
            "{name}"
        );
    }
    let dir = TempDir::new().unwrap();
    init(&td(), dir.path(), false).unwrap();
    let out = dir.path().join("svid");
    let error = issue(dir.path(), &id(), &out, DAY, &["bad name".into()]).unwrap_err();
    assert_eq!(error.reason(), "bad-dns-name");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn issue_signs_with_a_ca_whose_subject_was_not_made_by_segward() {
    // Printable and UTF-8 strings, several attributes: the leaf's issuer must match byte for byte.
    let dir = TempDir::new().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CountryName,
        DnValue::PrintableString("DE".try_into().unwrap()),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example Ünternehmen");
    params
        .distinguished_name
        .push(DnType::CommonName, "Example Root");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let cert = params.self_signed(&key).unwrap();
    fs::write(dir.path().join(CA_CERT_FILE), cert.pem()).unwrap();
    fs::write(dir.path().join(CA_KEY_FILE), key.serialize_pem()).unwrap();

    let files = issue(dir.path(), &id(), &dir.path().join("svid"), DAY, &[]).unwrap();
    let chain = pem_blocks(&files.cert);
    assert_issued_by(&chain[0].1, cert.der());
    assert_eq!(
        fs::read_to_string(&files.bundle).unwrap(),
        cert.pem(),
        "ca.pem as bundle"
    );
}

#[test]
fn parse_ttl_accepts_one_positive_number_and_unit_up_to_3650_days() {
    let good: &[(&str, u64)] = &[
        ("90s", 90),
        ("30m", 1_800),
        ("24h", 86_400),
        ("7d", 604_800),
        ("3650d", 315_360_000),
        ("007m", 420),
    ];
    for (input, secs) in good {
        assert_eq!(parse_ttl(input), Ok(Duration::from_secs(*secs)), "{input}");
    }
    let bad: &[(&str, &str)] = &[
        ("", "empty"),
        ("0s", "longer than zero"),
        ("0d", "longer than zero"),
        ("24", "missing unit"),
        ("h", "whole number"),
        ("1.5h", "whole number"),
        ("-5m", "whole number"),
        ("+5m", "whole number"),
        (" 5m", "whole number"),
        ("5 m", "whole number"),
        ("24H", "unknown unit"),
        ("1w", "unknown unit"),
        ("5µ", "unknown unit"),
        ("3651d", "too long"),
        ("87600h1s", "whole number"),
        ("99999999999999999999s", "too long"),
        ("18446744073709551615d", "too long"),
    ];
    for (input, problem) in bad {
        let error = parse_ttl(input).unwrap_err();
        assert_eq!(error.reason(), "bad-ttl", "{input}");
        assert!(error.to_string().contains(problem), "{input}: {error}");
    }
}

#[test]
fn inspect_reports_an_issued_svid() {
    let dir = TempDir::new().unwrap();
    init(&td(), dir.path(), false).unwrap();
    let files = issue(dir.path(), &id(), dir.path(), 2 * DAY, &[]).unwrap();
    let inspection = inspect(&files.cert, SystemTime::now()).unwrap();

    assert_eq!(inspection.spiffe_id.as_deref(), Some(ID));
    assert_eq!(inspection.issuer, "CN=segward CA example.org");
    assert_eq!(inspection.chain_len, 2);
    assert!(!inspection.is_ca);
    assert_eq!(inspection.client_check, "ok");
    assert_eq!(inspection.server_check, "ok");
    assert!(inspection.is_svid());
    let two_days = (2 * DAY).as_secs() as i64;
    assert!((two_days - 60..=two_days).contains(&inspection.expires_in_secs));
    assert!(
        inspection.not_after.ends_with('Z'),
        "RFC 3339: {}",
        inspection.not_after
    );

    let text = inspection.to_string();
    assert!(text.contains(&format!("SPIFFE ID     {ID}\n")), "{text}");
    assert!(text.contains("client check  ok\n"), "{text}");
    let json = serde_json::to_value(&inspection).unwrap();
    assert_eq!(json["spiffe_id"], ID);
    assert_eq!(json["chain_len"], 2);
}

#[test]
fn inspect_reports_a_ca_and_why_it_is_no_svid() {
    let dir = TempDir::new().unwrap();
    let files = init(&td(), dir.path(), false).unwrap();
    let inspection = inspect(&files.cert, SystemTime::now()).unwrap();

    assert!(inspection.is_ca);
    assert_eq!(inspection.chain_len, 1);
    assert_eq!(
        inspection.spiffe_id.as_deref(),
        Some("spiffe://example.org")
    );
    assert_eq!(inspection.client_check, SvidError::RootId.to_string());
    assert_eq!(inspection.server_check, SvidError::RootId.to_string());
    assert!(!inspection.is_svid(), "a CA passes neither role");

    let later = SystemTime::now() + 400 * DAY;
    let expired = inspect(&files.cert, later).unwrap();
    assert!(expired.expires_in_secs < 0);
    assert!(expired.to_string().contains("expired "), "{expired}");
}

#[test]
fn inspect_counts_a_leaf_that_passes_one_role_as_an_svid() {
    let ca = Ca::new(&td()).unwrap();
    let mut params = svid_params(&id(), DAY, &[]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_only = ca.sign(&params).unwrap();
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("server.pem");
    fs::write(&path, &server_only.chain_pem).unwrap();

    let inspection = inspect(&path, SystemTime::now()).unwrap();

    assert_eq!(
        inspection.client_check,
        SvidError::MissingClientAuth.to_string()
    );
    assert_eq!(inspection.server_check, "ok");
    assert!(inspection.is_svid());
}

#[test]
fn inspect_names_the_file_when_it_holds_no_certificate() {
    let dir = TempDir::new().unwrap();
    let files = init(&td(), dir.path(), false).unwrap();
    let error = inspect(&files.key, SystemTime::now()).unwrap_err();
    assert_eq!(
        error,
        CertsError::BadFile {
            path: files.key.clone(),
            problem: "no PEM CERTIFICATE block".into()
        }
    );
    let missing = dir.path().join("nope.pem");
    assert!(
        matches!(inspect(&missing, SystemTime::now()), Err(CertsError::Io { path, .. }) if path == missing)
    );
}

#[test]
fn in_memory_ca_issues_good_svids_and_signs_bad_ones_on_request() {
    let ca = Ca::new(&td()).unwrap();
    let svid = ca.issue(&id(), DAY, &[]).unwrap();
    assert_issued_by(&svid.der, ca.cert_der());
    assert_eq!(
        svid.chain_pem,
        format!("{}{}", svid.cert_pem, ca.cert_pem())
    );
    assert!(Svid::from_der(&svid.der, Role::Client, SystemTime::now()).is_ok());

    let mut params = svid_params(&id(), DAY, &[]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let bad = ca.sign(&params).unwrap();
    assert_eq!(
        Svid::from_der(&bad.der, Role::Client, SystemTime::now()),
        Err(SvidError::IsCa)
    );

    assert_eq!(
        ca.issue(&td().id(), DAY, &[]).unwrap_err(),
        CertsError::RootId("spiffe://example.org".into())
    );
    let too_long = ca.issue(&id(), Duration::MAX, &[]).unwrap_err();
    assert_eq!(too_long.reason(), "bad-ttl");
}

#[test]
fn debug_output_never_shows_key_material() {
    let ca = Ca::new(&td()).unwrap();
    let svid = ca.issue(&id(), DAY, &[]).unwrap();
    for debug in [format!("{ca:?}"), format!("{svid:?}")] {
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }
}

/// Writes `ca.pem` (a self-signed CA not made by segward, with these URI SANs) and `ca.key`.
fn write_external_ca(dir: &Path, uri_sans: &[&str], key: &KeyPair) {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "External Root");
    params.subject_alt_names = uri_sans
        .iter()
        .map(|uri| SanType::URI((*uri).try_into().unwrap()))
        .collect();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let cert = params.self_signed(key).unwrap();
    fs::write(dir.join(CA_CERT_FILE), cert.pem()).unwrap();
    fs::write(dir.join(CA_KEY_FILE), key.serialize_pem()).unwrap();
}

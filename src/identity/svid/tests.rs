//! Table tests: one row per X509-SVID leaf rule of docs/security.md, on real certificates that
//! rcgen mints here, signed by a throwaway CA. The clock is fixed at 2030-01-01.
//!
//! Rules, in the order `Svid::from_der` checks them:
//! 1. parses  2. SAN: one SAN extension, exactly one URI SAN, a valid SPIFFE ID, non-empty path
//! 3. CA:false  4. keyUsage present, digitalSignature, no keyCertSign/cRLSign
//! 5. EKU (if present) allows clientAuth / serverAuth  6. validity window

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

use super::*;

const ID: &str = "spiffe://example.org/ns/prod/sa/payments";

/// 2030-01-01T00:00:00Z, inside the default window 2029-01-01 .. 2031-01-01.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().unwrap())
}

/// A leaf that passes every rule: one URI SAN, CA:false, digitalSignature, both EKUs.
fn good_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![uri(ID)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = date_time_ymd(2029, 1, 1);
    params.not_after = date_time_ymd(2031, 1, 1);
    params
}

/// Signs `params` with a fresh leaf key under a fresh test CA; returns the leaf's DER.
fn mint(params: &CertificateParams) -> Vec<u8> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = Issuer::new(ca, KeyPair::generate().unwrap());
    let leaf = params
        .signed_by(&KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    leaf.der().to_vec()
}

fn mint_with(tweak: fn(&mut CertificateParams)) -> Vec<u8> {
    let mut params = good_params();
    tweak(&mut params);
    mint(&params)
}

/// A second subjectAltName extension holding `uri`, DER by hand (short lengths only).
fn extra_san_extension(uri: &str) -> CustomExtension {
    let mut name = vec![0x86, uri.len() as u8];
    name.extend_from_slice(uri.as_bytes());
    let mut seq = vec![0x30, name.len() as u8];
    seq.extend_from_slice(&name);
    CustomExtension::from_oid_content(&[2, 5, 29, 17], seq)
}

#[test]
fn good_leaf_passes_as_client_and_server_with_its_id_and_window() {
    let der = mint(&good_params());
    for role in [Role::Client, Role::Server] {
        let svid = Svid::from_der(&der, role, now()).unwrap();
        assert_eq!(svid.id, SpiffeId::parse(ID).unwrap());
        assert_eq!(svid.not_before, 1_861_920_000, "2029-01-01");
        assert_eq!(svid.not_after, 1_924_992_000, "2031-01-01");
    }
}

type Tweak = fn(&mut CertificateParams);

/// One leaf per rule, each breaking only that rule, with the role it is tried in and the
/// variant it must be refused with.
fn rejected_rows() -> Vec<(&'static str, Tweak, Role, SvidError)> {
    vec![
        // 2. SAN rules
        (
            "second SAN extension",
            |p| p.custom_extensions = vec![extra_san_extension("spiffe://example.org/b")],
            Role::Client,
            SvidError::DuplicateSan,
        ),
        (
            "no SAN at all",
            |p| p.subject_alt_names.clear(),
            Role::Client,
            SvidError::NoUriSan,
        ),
        (
            "DNS SAN but no URI SAN",
            |p| p.subject_alt_names = vec![SanType::DnsName("payments".try_into().unwrap())],
            Role::Client,
            SvidError::NoUriSan,
        ),
        (
            "spiffe + https URI SANs",
            |p| p.subject_alt_names.push(uri("https://example.org/x")),
            Role::Client,
            SvidError::MultipleUriSans,
        ),
        (
            "two spiffe URI SANs",
            |p| p.subject_alt_names.push(uri("spiffe://example.org/other")),
            Role::Server,
            SvidError::MultipleUriSans,
        ),
        (
            "one https URI SAN",
            |p| p.subject_alt_names = vec![uri("https://example.org/ns/prod")],
            Role::Client,
            SvidError::InvalidSpiffeId(SpiffeIdError::WrongScheme),
        ),
        (
            "upper-case trust domain",
            |p| p.subject_alt_names = vec![uri("spiffe://Example.org/ns/prod")],
            Role::Client,
            SvidError::InvalidSpiffeId(SpiffeIdError::UppercaseTrustDomain('E')),
        ),
        (
            "trust domain's own ID",
            |p| p.subject_alt_names = vec![uri("spiffe://example.org")],
            Role::Client,
            SvidError::RootId,
        ),
        // 3. CA:false
        (
            "CA:true",
            |p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained),
            Role::Client,
            SvidError::IsCa,
        ),
        // 4. keyUsage
        (
            "no keyUsage",
            |p| p.key_usages.clear(),
            Role::Client,
            SvidError::MissingKeyUsage,
        ),
        (
            "keyEncipherment only",
            |p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment],
            Role::Client,
            SvidError::MissingDigitalSignature,
        ),
        (
            "digitalSignature + keyCertSign",
            |p| p.key_usages.push(KeyUsagePurpose::KeyCertSign),
            Role::Client,
            SvidError::KeyCertSign,
        ),
        (
            "digitalSignature + cRLSign",
            |p| p.key_usages.push(KeyUsagePurpose::CrlSign),
            Role::Server,
            SvidError::CrlSign,
        ),
        // 5. EKU for the holder's role
        (
            "serverAuth only, used by a client",
            |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth],
            Role::Client,
            SvidError::MissingClientAuth,
        ),
        (
            "clientAuth only, used by a server",
            |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
            Role::Server,
            SvidError::MissingServerAuth,
        ),
        // 6. validity window
        (
            "notBefore after now",
            |p| p.not_before = date_time_ymd(2030, 6, 1),
            Role::Client,
            SvidError::NotYetValid,
        ),
        (
            "notAfter before now",
            |p| p.not_after = date_time_ymd(2029, 12, 31),
            Role::Server,
            SvidError::Expired,
        ),
    ]
}

#[test]
fn every_leaf_rule_rejects_with_its_own_variant() {
    for (rule, tweak, role, expected) in rejected_rows() {
        let der = mint_with(tweak);
        assert_eq!(
            Svid::from_der(&der, role, now()),
            Err(expected.clone()),
            "{rule}"
        );
    }
}

/// Leaves that look unusual but pass every rule, in both roles.
fn passing_rows() -> Vec<(&'static str, Tweak)> {
    vec![
        ("no EKU at all", |p| p.extended_key_usages.clear()),
        ("anyExtendedKeyUsage", |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any]
        }),
        ("DNS SANs beside the URI SAN", |p| {
            p.subject_alt_names
                .push(SanType::DnsName("payments".try_into().unwrap()))
        }),
        ("keyEncipherment beside digitalSignature", |p| {
            p.key_usages.push(KeyUsagePurpose::KeyEncipherment)
        }),
    ]
}

#[test]
fn leaves_without_eku_or_with_any_eku_or_extra_dns_sans_pass_both_roles() {
    for (case, tweak) in passing_rows() {
        let der = mint_with(tweak);
        for role in [Role::Client, Role::Server] {
            let svid = Svid::from_der(&der, role, now());
            assert_eq!(svid.map(|s| s.id.to_string()), Ok(ID.to_owned()), "{case}");
        }
    }
}

#[test]
fn bytes_that_are_not_exactly_one_certificate_are_malformed() {
    let mut trailing = mint(&good_params());
    trailing.push(0);
    let rows: &[(&str, &[u8])] = &[
        ("empty", b""),
        ("garbage", b"not a certificate at all"),
        ("trailing byte", &trailing),
    ];
    for (case, der) in rows {
        let result = Svid::from_der(der, Role::Client, now());
        assert!(
            matches!(result, Err(SvidError::Malformed(_))),
            "{case}: {result:?}"
        );
    }
}

#[test]
fn window_edges_are_inclusive() {
    let der = mint(&good_params());
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    assert!(Svid::from_der(&der, Role::Client, at(1_861_920_000)).is_ok());
    assert!(Svid::from_der(&der, Role::Client, at(1_924_992_000)).is_ok());
    assert_eq!(
        Svid::from_der(&der, Role::Client, at(1_861_919_999)),
        Err(SvidError::NotYetValid)
    );
    assert_eq!(
        Svid::from_der(&der, Role::Client, at(1_924_992_001)),
        Err(SvidError::Expired)
    );
}

#[test]
fn every_variant_has_its_own_kebab_case_reason() {
    let all = [
        SvidError::Malformed(String::new()),
        SvidError::DuplicateSan,
        SvidError::NoUriSan,
        SvidError::MultipleUriSans,
        SvidError::InvalidSpiffeId(SpiffeIdError::WrongScheme),
        SvidError::RootId,
        SvidError::IsCa,
        SvidError::MissingKeyUsage,
        SvidError::MissingDigitalSignature,
        SvidError::KeyCertSign,
        SvidError::CrlSign,
        SvidError::MissingClientAuth,
        SvidError::MissingServerAuth,
        SvidError::NotYetValid,
        SvidError::Expired,
        SvidError::SignerNotCa,
        SvidError::SignerWithoutKeyCertSign,
    ];
    let reasons: HashSet<&str> = all.iter().map(SvidError::reason).collect();
    assert_eq!(reasons.len(), all.len());
    for reason in reasons {
        assert!(
            reason.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{reason}"
        );
    }
}

/// Writes every leaf of these tables (good, passing-but-odd, and one per broken rule) as DER
/// into `$SEGWARD_FUZZ_SEEDS` — the seeds of the `svid_der` fuzz target (fuzz/seeds/svid_der,
/// checked in). Run: `SEGWARD_FUZZ_SEEDS=fuzz/seeds/svid_der cargo test --lib write_fuzz_seeds
/// -- --ignored`.
#[test]
#[ignore = "writes fuzz seeds; run by hand when the leaf rules change"]
fn write_fuzz_seeds() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("SEGWARD_FUZZ_SEEDS").expect("set SEGWARD_FUZZ_SEEDS to a folder"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let slug = |name: &str| -> String {
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    };
    std::fs::write(dir.join("good.der"), mint(&good_params())).unwrap();
    for (case, tweak) in passing_rows() {
        std::fs::write(dir.join(format!("ok-{}.der", slug(case))), mint_with(tweak)).unwrap();
    }
    for (rule, tweak, _, _) in rejected_rows() {
        std::fs::write(
            dir.join(format!("bad-{}.der", slug(rule))),
            mint_with(tweak),
        )
        .unwrap();
    }
}

#[test]
fn signing_certificates_need_ca_true_and_key_cert_sign() {
    let ca = |key_usages: Vec<KeyUsagePurpose>, is_ca: IsCa| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = is_ca;
        params.key_usages = key_usages;
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    };
    let unconstrained = || IsCa::Ca(BasicConstraints::Unconstrained);
    let rows: Vec<(&str, Vec<u8>, Result<(), SvidError>)> = vec![
        (
            "CA:true, keyCertSign",
            ca(vec![KeyUsagePurpose::KeyCertSign], unconstrained()),
            Ok(()),
        ),
        (
            "CA:true, keyCertSign + cRLSign + digitalSignature",
            ca(
                vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ],
                unconstrained(),
            ),
            Ok(()),
        ),
        (
            "CA:false",
            ca(vec![KeyUsagePurpose::KeyCertSign], IsCa::ExplicitNoCa),
            Err(SvidError::SignerNotCa),
        ),
        (
            "no basicConstraints",
            ca(vec![KeyUsagePurpose::KeyCertSign], IsCa::NoCa),
            Err(SvidError::SignerNotCa),
        ),
        (
            "CA:true, cRLSign only",
            ca(vec![KeyUsagePurpose::CrlSign], unconstrained()),
            Err(SvidError::SignerWithoutKeyCertSign),
        ),
        (
            "CA:true, no keyUsage",
            ca(vec![], unconstrained()),
            Err(SvidError::SignerWithoutKeyCertSign),
        ),
        (
            "an X509-SVID leaf",
            mint(&good_params()),
            Err(SvidError::SignerNotCa),
        ),
    ];
    for (case, der, expected) in rows {
        assert_eq!(check_signing_certificate(&der), expected, "{case}");
    }
    assert!(matches!(
        check_signing_certificate(b"garbage"),
        Err(SvidError::Malformed(_))
    ));
}

/// RFC 5280 §6.1: the trust anchor is input, not a signer of the chain. A self-signed root
/// without keyUsage (as many CAs outside segward make them) is accepted at the end of a
/// chain; an intermediate without keyCertSign is not, nor is a certificate that only names
/// itself as issuer but was signed by another key.
#[test]
fn a_self_signed_root_is_a_trust_anchor_and_exempt_from_the_signer_rules() {
    let named = |name: &str, key_usages: Vec<KeyUsagePurpose>| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = key_usages;
        params
    };
    let root_key = KeyPair::generate().unwrap();
    let bare_root = named("Root", vec![]).self_signed(&root_key).unwrap();
    let issuer = Issuer::new(named("Root", vec![]), root_key);
    let bare_intermediate = named("Intermediate", vec![])
        .signed_by(&KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    // Subject and issuer both "Root", but signed by the real root's key, not its own.
    let self_issued = named("Root", vec![])
        .signed_by(&KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    let good_intermediate = named("Good", vec![KeyUsagePurpose::KeyCertSign])
        .signed_by(&KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    let der = |c: &rcgen::Certificate| c.der().to_vec();
    type Row<'a> = (&'a str, Vec<Vec<u8>>, Result<(), (usize, SvidError)>);
    let rows: Vec<Row> = vec![
        ("root alone", vec![der(&bare_root)], Ok(())),
        (
            "intermediate, then root",
            vec![der(&good_intermediate), der(&bare_root)],
            Ok(()),
        ),
        (
            "intermediate without keyUsage",
            vec![der(&bare_intermediate), der(&bare_root)],
            Err((2, SvidError::SignerWithoutKeyCertSign)),
        ),
        (
            "self-issued, not self-signed",
            vec![der(&good_intermediate), der(&self_issued)],
            Err((3, SvidError::SignerWithoutKeyCertSign)),
        ),
    ];
    for (case, chain, expected) in rows {
        assert_eq!(check_signers(&chain), expected, "{case}");
    }
}

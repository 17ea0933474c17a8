//! Table tests: one row per SPIFFE-ID rule of docs/security.md, valid and invalid classes.

use super::*;

#[test]
fn valid_ids_parse_and_split_into_trust_domain_and_path() {
    let rows: &[(&str, &str, &str)] = &[
        (
            "spiffe://example.org/ns/prod/sa/payments",
            "example.org",
            "/ns/prod/sa/payments",
        ),
        ("spiffe://example.org", "example.org", ""),
        ("spiffe://a", "a", ""),
        (
            "spiffe://trust_domain-1.example/a",
            "trust_domain-1.example",
            "/a",
        ),
        (
            "spiffe://example.org/A-Za-z0-9._",
            "example.org",
            "/A-Za-z0-9._",
        ),
        ("spiffe://example.org/...", "example.org", "/..."),
        (
            "spiffe://example.org/.hidden/x",
            "example.org",
            "/.hidden/x",
        ),
    ];
    for (input, td, path) in rows {
        let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(id.trust_domain(), *td, "{input}");
        assert_eq!(id.path(), *path, "{input}");
        assert_eq!(id.as_str(), *input);
        assert_eq!(id.to_string(), *input);
    }
}

#[test]
fn segments_are_the_path_without_slashes() {
    let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/payments").unwrap();
    assert_eq!(
        id.segments().collect::<Vec<_>>(),
        ["ns", "prod", "sa", "payments"]
    );
    let root = SpiffeId::parse("spiffe://example.org").unwrap();
    assert_eq!(root.segments().count(), 0);
}

#[test]
fn every_rule_rejects_its_class_of_invalid_ids() {
    use SpiffeIdError::*;
    let long_td = format!("spiffe://{}/a", "a".repeat(256));
    let max_td = format!("spiffe://{}/a", "a".repeat(255));
    let long_id = format!("spiffe://example.org/{}", "a".repeat(2048));
    let rows: Vec<(&str, SpiffeIdError)> = vec![
        ("", Empty),
        (&long_id, TooLong(long_id.len())),
        ("http://example.org/a", WrongScheme),
        ("SPIFFE://example.org/a", WrongScheme),
        ("spiffe:/example.org/a", WrongScheme),
        ("example.org/a", WrongScheme),
        ("spiffe:///a", EmptyTrustDomain),
        ("spiffe://", EmptyTrustDomain),
        (&long_td, TrustDomainTooLong(256)),
        ("spiffe://Example.org/a", UppercaseTrustDomain('E')),
        ("spiffe://example.ORG/a", UppercaseTrustDomain('O')),
        ("spiffe://exa mple.org/a", BadTrustDomainChar(' ')),
        ("spiffe://exa+mple.org/a", BadTrustDomainChar('+')),
        ("spiffe://exämple.org/a", BadTrustDomainChar('ä')),
        ("spiffe://example.org:8443/a", Port),
        ("spiffe://user@example.org/a", Userinfo),
        ("spiffe://user:pw@example.org/a", Userinfo),
        ("spiffe://example.org/a?x=1", QueryOrFragment),
        ("spiffe://example.org/a#frag", QueryOrFragment),
        ("spiffe://example.org?x", QueryOrFragment),
        ("spiffe://example.org/a%20b", PercentEncoded),
        ("spiffe://example%2eorg/a", PercentEncoded),
        ("spiffe://example.org//a", EmptySegment),
        ("spiffe://example.org/a//b", EmptySegment),
        ("spiffe://example.org/a/./b", DotSegment),
        ("spiffe://example.org/a/../b", DotSegment),
        ("spiffe://example.org/..", DotSegment),
        ("spiffe://example.org/a/", TrailingSlash),
        ("spiffe://example.org/", TrailingSlash),
        ("spiffe://example.org/a b", BadPathChar(' ')),
        ("spiffe://example.org/a*", BadPathChar('*')),
        ("spiffe://example.org/a\\b", BadPathChar('\\')),
        ("spiffe://example.org/caf\u{e9}", BadPathChar('\u{e9}')),
    ];
    for (input, want) in rows {
        assert_eq!(SpiffeId::parse(input), Err(want), "{input}");
    }
    assert!(SpiffeId::parse(&max_td).is_ok());
}

#[test]
fn length_limits_are_inclusive() {
    let prefix = "spiffe://example.org/";
    let exactly = format!("{prefix}{}", "a".repeat(MAX_ID_LEN - prefix.len()));
    assert_eq!(exactly.len(), 2048);
    assert!(SpiffeId::parse(&exactly).is_ok());
    let over = format!("{exactly}a");
    assert_eq!(SpiffeId::parse(&over), Err(SpiffeIdError::TooLong(2049)));
}

#[test]
fn trust_domain_parses_alone_and_rejects_what_ids_reject() {
    assert_eq!(
        TrustDomain::parse("example.org").unwrap().as_str(),
        "example.org"
    );
    assert_eq!(
        TrustDomain::parse("Example.org"),
        Err(SpiffeIdError::UppercaseTrustDomain('E'))
    );
    assert_eq!(TrustDomain::parse(""), Err(SpiffeIdError::EmptyTrustDomain));
    assert_eq!(TrustDomain::parse("a:1"), Err(SpiffeIdError::Port));
    let td = TrustDomain::parse("example.org").unwrap();
    assert_eq!(td.id().as_str(), "spiffe://example.org");
    assert_eq!(td.id().trust_domain(), "example.org");
}

#[test]
fn every_error_has_a_distinct_reason() {
    use SpiffeIdError::*;
    let all = [
        Empty,
        TooLong(0),
        WrongScheme,
        EmptyTrustDomain,
        TrustDomainTooLong(0),
        UppercaseTrustDomain('A'),
        BadTrustDomainChar('!'),
        Port,
        Userinfo,
        QueryOrFragment,
        PercentEncoded,
        EmptySegment,
        DotSegment,
        TrailingSlash,
        BadPathChar('!'),
    ];
    let mut reasons: Vec<_> = all.iter().map(SpiffeIdError::reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
}

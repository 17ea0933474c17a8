use std::collections::BTreeMap;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;

use super::*;

fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap()
}

fn leaked_ci_token() -> Containment {
    Containment {
        id: ContainmentId::new(at("2026-12-03T13:30:59.7Z"), [0x7f, 0x3a]),
        scope: Scope::Identity("spiffe://example.org/ns/staging/**".into()),
        reason: "leaked CI token INC-42".into(),
        since: at("2026-12-03T13:30:00Z"),
        until: Some(at("2026-12-04T13:30:00Z")),
        writer: Containment::POLICY_CONTAIN,
        author: "alice@ops-1".into(),
        suspend_tests: false,
    }
}

#[test]
fn an_id_is_the_utc_minute_and_four_hex_digits() {
    let id = ContainmentId::new(at("2026-12-03T14:30:59+01:00"), [0x7f, 0x3a]);
    assert_eq!(id.as_str(), "c-20261203-1330-7f3a");
    assert_eq!(id.file_name(), "contain-c-20261203-1330-7f3a.yaml");
    assert_eq!(ContainmentId::parse(id.as_str()), Ok(id));
}

#[test]
fn release_refuses_anything_that_is_not_an_id() {
    for text in [
        "",
        "c-20261203-1330-7f3",
        "c-20261203-1330-7F3A",
        "c-2026120x-1330-7f3a",
        "x-20261203-1330-7f3a",
        "c-20261203-1330-7f3a/..",
        "../c-20261203-1330-7f3a",
        "c-20261203_1330_7f3a",
        "c-20261203-1330-7f3é",
    ] {
        assert!(ContainmentId::parse(text).is_err(), "{text:?}");
    }
    let hint = ContainmentId::parse("contain-c-20261203-1330-7f3a.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        hint.ends_with("give the id alone: c-20261203-1330-7f3a"),
        "{hint}"
    );
}

#[test]
fn the_file_is_a_header_and_one_revoked_entry_in_map_form() {
    let text = leaked_ci_token().to_yaml("policies/");
    assert_eq!(
        text,
        "# Containment c-20261203-1330-7f3a, written by `segward policy contain` (alice@ops-1) \
         at 2026-12-03T13:30:00Z.\n\
         # Every sidecar watching this folder applies it within 2 s.\n\
         # Release it with: segward policy release policies/ c-20261203-1330-7f3a\n\
         # (which checks the rest of the policy first), or by deleting this file.\n\
         revoked:\n  - { identity: \"spiffe://example.org/ns/staging/**\", reason: \"leaked CI \
         token INC-42\", since: 2026-12-03T13:30:00Z, until: 2026-12-04T13:30:00Z }\n"
    );
}

#[test]
fn segment_and_label_scopes_are_written_as_their_keys() {
    let mut c = leaked_ci_token();
    c.until = None;
    c.scope = Scope::Segment("ci-runner".into());
    let text = c.to_yaml("p");
    assert!(
        text.ends_with(
            "  - { segment: \"ci-runner\", reason: \"leaked CI token INC-42\", \
             since: 2026-12-03T13:30:00Z }\n"
        ),
        "{text}"
    );
    c.scope = Scope::Labels(
        [
            ("risk".into(), "ci".into()),
            ("env".into(), "staging".into()),
        ]
        .into(),
    );
    let text = c.to_yaml("p");
    assert!(
        text.contains("- { labels: { \"env\": \"staging\", \"risk\": \"ci\" }, reason:"),
        "{text}"
    );
    assert_eq!(c.scope.selector_text(), "env=staging,risk=ci");
}

#[test]
fn the_written_entry_reads_back_as_its_scope_whatever_the_reason_says() {
    let hostile = "a \"quoted\" \\ reason\n- spiffe://example.org/**\u{7f}\u{85}\u{2028}\u{feff}}#";
    let mut c = leaked_ci_token();
    c.reason = hostile.into();
    c.author = "eve\n- spiffe://example.org/**".into();
    let text = c.to_yaml("dir\nrevoked: [x]");
    assert_eq!(text.lines().count(), 6, "{text}");
    assert_eq!(
        scopes_in(&text),
        Some(vec!["spiffe://example.org/ns/staging/**".to_owned()])
    );
    #[derive(Deserialize)]
    struct Doc {
        revoked: Vec<BTreeMap<String, String>>,
    }
    let doc: Doc = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(doc.revoked.len(), 1);
    assert_eq!(doc.revoked[0]["reason"], hostile);
    assert_eq!(doc.revoked[0]["since"], "2026-12-03T13:30:00Z");
    assert_eq!(doc.revoked[0]["until"], "2026-12-04T13:30:00Z");
}

#[test]
fn scopes_are_read_back_from_every_entry_form() {
    let text = "revoked:\n  - spiffe://example.org/a\n  - { segment: ci-runner, reason: x }\n  \
                - { labels: { risk: ci, env: staging }, since: 2026-12-03T13:30:00Z }\n";
    assert_eq!(
        scopes_in(text),
        Some(vec![
            "spiffe://example.org/a".to_owned(),
            "ci-runner".to_owned(),
            "env=staging,risk=ci".to_owned(),
        ])
    );
    for odd in [
        "revoked: []\n",
        "revoked:\n  - { segment: a, identity: spiffe://x.org/a }\n",
        "not yaml: [",
    ] {
        assert_eq!(scopes_in(odd), None, "{odd}");
    }
}

#[test]
fn a_containment_that_suspends_tests_says_so_in_its_entry() {
    let mut c = leaked_ci_token();
    c.suspend_tests = true;
    c.writer = "segward demo";
    let text = c.to_yaml("p");
    assert!(
        text.starts_with(
            "# Containment c-20261203-1330-7f3a, written by `segward demo` (alice@ops-1)"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("until: 2026-12-04T13:30:00Z, suspend_tests: true }\n"),
        "{text}"
    );
}

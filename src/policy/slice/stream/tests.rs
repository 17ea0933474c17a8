//! The streamed check and slice against the whole path: the same slice, version and rule
//! count for valid texts (on the streamed path, not its fallback), the same errors for
//! broken ones. `tests/it/slice_props.rs` compares both on random policies.

use super::{Texts, stream};
use crate::identity::SpiffeId;
use crate::policy::{CompiledPolicy, Fleet, PolicyErrors, PolicySource, Scope};

const NOW: i64 = 1_800_000_000;

const SEGMENTS: &str = r#"
segments:
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"], labels: { env: prod, tier: web } }
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"], labels: { env: prod, tier: web } }
  db: { identities: ["spiffe://example.org/ns/prod/sa/db"], labels: { env: prod, tier: data } }
  ci: { identities: ["spiffe://example.org/ns/staging/*"], labels: { env: staging } }
  lonely: { identities: ["spiffe://example.org/ns/other/sa/x"] }
revoked:
  - spiffe://example.org/ns/prod/sa/old
  - { segment: lonely, until: "2099-01-01T00:00:00Z" }
"#;

/// Rules in a file before the one defining their segments.
const RULES: &str = r#"
rules:
  - { name: web-to-api, from: [web], to: [api], methods: [GET], paths: ["/v1/*"] }
  - { name: api-to-db, from: [api], to: [db], expires: "2020-01-01T00:00:00Z" }
  - { name: later, from: [api], to: [db], expires: "2099-01-01T00:00:00Z" }
  - { name: staging-never-prod, effect: deny, from: [{ env: staging }], to: [{ env: prod }] }
  - { name: audit-web, effect: deny, dry_run: true, from: ["*"], to: [{ tier: web }], paths: ["/debug"] }
  - { name: lonely-in, from: [{ env: prod }], to: [lonely] }
tests:
  - { from: "spiffe://example.org/ns/prod/sa/web", to: "spiffe://example.org/ns/prod/sa/api", path: /v1/x, expect: allow }
  - { from: "spiffe://example.org/ns/staging/x", to: "spiffe://example.org/ns/prod/sa/db", expect: deny }
"#;

fn texts(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect()
}

fn scope(id: &str) -> Scope {
    Scope::identity(SpiffeId::parse(id).unwrap())
}

/// The whole path a sidecar took before: parse, check, cut.
fn whole(texts: &Texts, scope: &Scope) -> Result<CompiledPolicy, PolicyErrors> {
    let source = PolicySource::from_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))?;
    Fleet::check(&source, NOW)?.compile(source, scope)
}

/// What a slice is, for comparing: version, counts, rules and segments with their patterns.
fn shape(p: &CompiledPolicy) -> String {
    let rules: Vec<_> = p
        .rules()
        .iter()
        .map(|r| (&r.name, r.expired, r.at))
        .collect();
    let segments: Vec<_> = p
        .segments()
        .iter()
        .map(|s| (&s.name, s.identities.len(), &s.labels, s.at))
        .collect();
    format!(
        "{} {} {} {:?} {rules:?} {segments:?}",
        p.version(),
        p.fleet_rules(),
        p.test_count(),
        p.next_change()
    )
}

#[test]
fn a_streamed_slice_is_the_slice_of_the_whole_for_every_member() {
    let files = texts(&[("a-rules.yaml", RULES), ("b-segments.yaml", SEGMENTS)]);
    for id in [
        "spiffe://example.org/ns/prod/sa/api",
        "spiffe://example.org/ns/prod/sa/db",
        "spiffe://example.org/ns/staging/ci",
        "spiffe://example.org/ns/other/sa/x",
        "spiffe://example.org/ns/none/sa/none",
    ] {
        let scope = scope(id);
        assert!(
            stream(&files, Some(&scope), NOW).is_some(),
            "{id}: fell back"
        );
        let streamed = Fleet::compile_texts(&files, &scope, NOW).unwrap();
        let before = whole(&files, &scope).unwrap();
        assert_eq!(shape(&streamed), shape(&before), "{id}");
        let successor = Fleet::cut_texts(&files, &scope, NOW)
            .unwrap()
            .successor()
            .unwrap();
        assert_eq!(successor.version(), before.version(), "{id}");
    }
    assert_eq!(Fleet::check_texts(&files, NOW), Ok(()));
}

#[test]
fn every_error_is_the_whole_paths_error_at_file_line_col() {
    let broken = [
        // A rule naming no segment, and a revoked entry naming none.
        RULES.replace("to: [lonely]", "to: [lonley]") + "revoked:\n  - { segment: nowhere }\n",
        // A key no rule has.
        RULES.replace("name: later,", "name: later, color: red,"),
        // YAML that does not parse, inside `rules:`.
        RULES.replace("[GET]", "[GET"),
        // The same rule name twice.
        RULES.replace("name: later,", "name: web-to-api,"),
        // A failing test.
        RULES.replace("expect: allow", "expect: deny"),
        // An unknown top-level key after `rules:`.
        RULES.to_owned() + "color: red\n",
    ];
    let scope = scope("spiffe://example.org/ns/prod/sa/api");
    for text in &broken {
        let files = texts(&[("a-rules.yaml", text), ("b-segments.yaml", SEGMENTS)]);
        let streamed = Fleet::compile_texts(&files, &scope, NOW).unwrap_err();
        let before = whole(&files, &scope).unwrap_err();
        assert_eq!(streamed.to_string(), before.to_string());
        assert!(streamed.to_string().contains("a-rules.yaml:"), "{streamed}");
        if !text.contains("expect: deny") {
            assert_eq!(Fleet::check_texts(&files, NOW).unwrap_err(), before);
        }
    }
}

#[test]
fn a_text_outside_the_fast_subset_takes_the_whole_path_to_the_same_slice() {
    let anchored = RULES.replace("methods: [GET], paths", "methods: &m [GET], paths");
    let files = texts(&[("a-rules.yaml", &anchored), ("b-segments.yaml", SEGMENTS)]);
    let scope = scope("spiffe://example.org/ns/prod/sa/api");
    assert!(stream(&files, Some(&scope), NOW).is_none());
    let streamed = Fleet::compile_texts(&files, &scope, NOW).unwrap();
    assert_eq!(shape(&streamed), shape(&whole(&files, &scope).unwrap()));
}

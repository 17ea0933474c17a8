//! Generalization only where the evidence says a position varies.

use super::*;

#[test]
fn two_hundred_numeric_ids_give_one_star_and_a_fixed_path_stays_literal() {
    let mut paths: Vec<String> = (0..200)
        .map(|n| format!("/v1/charges/{}", 4000 + n * 7))
        .collect();
    paths.push("/v1/health".into());
    paths.push("/v1/charges".into());

    let patterns = patterns_of(paths.iter().map(String::as_str));

    assert_eq!(patterns, ["/v1/charges", "/v1/charges/*", "/v1/health"]);
}

#[test]
fn uuids_hex_and_tokens_vary_and_words_do_not() {
    let paths = [
        "/orders/3f2504e0-4f89-11d3-9a0c-0305e82c3301/items",
        "/orders/9a0c0305e82c3301/items",
        "/users/alice/profile",
        "/users/bob/profile",
        "/keys/AbCdEf0123456789xyz",
    ];

    let patterns = patterns_of(paths);

    assert_eq!(
        patterns,
        [
            "/keys/*",
            "/orders/*/items",
            "/users/alice/profile",
            "/users/bob/profile"
        ]
    );
}

#[test]
fn many_distinct_words_at_one_position_vary() {
    let words: Vec<String> = (0..MANY)
        .map(|i| format!("/docs/page-{}", char::from(b'a' + i as u8)))
        .collect();
    let few: Vec<String> = (0..MANY - 1)
        .map(|i| format!("/docs/page-{}", char::from(b'a' + i as u8)))
        .collect();

    assert_eq!(patterns_of(words.iter().map(String::as_str)), ["/docs/*"]);
    assert_eq!(patterns_of(few.iter().map(String::as_str)).len(), MANY - 1);
}

#[test]
fn a_varying_depth_gives_globstar_and_a_fixed_depth_never_does() {
    let varying = [
        "/blobs/a1b2c3d4e5",
        "/blobs/a1b2c3d4e6/f00dfeed01",
        "/blobs/a1b2c3d4e7/f00dfeed02/0123456789",
    ];
    let fixed = [
        "/v1/charges/1/refunds",
        "/v1/charges/2/refunds",
        "/v1/charges/3",
    ];

    assert_eq!(patterns_of(varying), ["/blobs/**"]);
    assert_eq!(
        patterns_of(fixed),
        ["/v1/charges/*", "/v1/charges/*/refunds"]
    );
}

#[test]
fn the_root_and_a_trailing_slash_are_literal_paths() {
    assert_eq!(patterns_of(["/", "/v1/"]), ["/", "/v1"]);
}

#[test]
fn id_like_segments() {
    for yes in [
        "0",
        "12345",
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "deadbeef01",
        "tok_9f8e7d6c5b4a3f2e1d",
    ] {
        assert!(id_like(yes), "{yes}");
    }
    for no in [
        "v1",
        "charges",
        "refunds",
        "deadbeef",
        "health-check",
        "",
        "a1",
    ] {
        assert!(!id_like(no), "{no}");
    }
}

#[test]
fn hostile_methods_and_wildcard_looking_segments_still_give_a_policy_that_compiles() {
    use crate::evidence::observe::{Direction, Key, Logged};
    let mut obs = Observations::default();
    let long = format!("spiffe://example.org/{}", "x".repeat(300));
    for (method, path, source) in [
        ("#X", "/a/**/b", "spiffe://example.org/ns/a"),
        ("*", "/a/*x", "spiffe://example.org/ns/a"),
        ("GET", "/v1/x", long.as_str()),
    ] {
        let key = Key {
            direction: Direction::Inbound,
            protocol: Protocol::Http,
            source,
            destination: "spiffe://example.org/ns/b",
            method,
            path,
            decision: Logged::Allow,
            rule: None,
            reason: Some("allow-rule"),
        };
        obs.add(
            &key,
            &Stats {
                count: 1,
                ..Stats::default()
            },
        );
    }

    let learned = learn(&obs, None);
    let yaml = learned.to_yaml("test");

    assert_eq!(learned.covered, 3, "{yaml}");
    let compiled = crate::policy::from_text("learned.yaml", &yaml);
    assert!(compiled.is_ok(), "{compiled:?}\n{yaml}");
    assert!(yaml.contains("\"/a/*/b\""), "{yaml}");
}

/// Found by the `evidence_input` fuzz target: a line naming a bare trust domain
/// (`spiffe://td`, no path) as a party once made a segment no policy accepts.
#[test]
fn a_party_without_a_path_is_unusable_and_the_learned_policy_compiles() {
    use crate::evidence::observe::{Direction, Key, Logged};
    let mut obs = Observations::default();
    for destination in [
        "spiffe://example.org/ns/b",
        "spiffe://exampleid-ns-prod-sa-invoices",
    ] {
        let key = Key {
            direction: Direction::Outbound,
            protocol: Protocol::Http,
            source: "spiffe://example.org/ns/a",
            destination,
            method: "GET",
            path: "/v1/x",
            decision: Logged::Allow,
            rule: None,
            reason: Some("allow-rule"),
        };
        let stats = Stats {
            count: 2,
            ..Stats::default()
        };
        obs.add(&key, &stats);
    }

    let learned = learn(&obs, None);
    let yaml = learned.to_yaml("test");

    assert_eq!((learned.covered, learned.unusable), (2, 2), "{yaml}");
    assert!(!yaml.contains("exampleid"), "{yaml}");
    let compiled = crate::policy::from_text("learned.yaml", &yaml);
    assert!(compiled.is_ok(), "{compiled:?}\n{yaml}");
}

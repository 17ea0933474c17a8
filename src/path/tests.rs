//! Table tests for `normalize`, one row per rule, and a proptest of its output's shape.

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

// The rules of docs/security.md "Paths", in the order `normalize` checks them:
// rule 8 length cap (first); rule 1 origin-form; rule 2 raw bytes (visible ASCII, no `\`);
// rule 3 percent-decoding (decode unreserved, upper-case the rest, reject `/` `\` NUL
// controls); rule 4 decode before dot removal; rule 5 merge `//`; rule 6 dot segments,
// never above the root; rule 7 trailing slash kept.

/// (rule, input, normalized output)
const NORMALIZES: &[(&str, &str, &str)] = &[
    ("rule 1: the root", "/", "/"),
    ("rule 1: an ordinary path", "/v1/charges", "/v1/charges"),
    ("rule 2: sub-delims", "/:@;=,!$&'()*+", "/:@;=,!$&'()*+"),
    ("rule 3: encoded ALPHA decoded", "/%61dmin", "/admin"),
    ("rule 3: encoded upper ALPHA decoded", "/%41%5a", "/AZ"),
    ("rule 3: encoded `~` decoded", "/%7Euser", "/~user"),
    ("rule 3: `-._` DIGIT decoded", "/%2D%2e%5F%30", "/-._0"),
    ("rule 3: kept escape upper-cased", "/a%3ab", "/a%3Ab"),
    ("rule 3: UTF-8 upper-cased", "/%e2%82%ac", "/%E2%82%AC"),
    ("rule 3: UTF-8 kept", "/caf%C3%A9", "/caf%C3%A9"),
    ("rule 3: encoded space kept", "/a%20b", "/a%20b"),
    ("rule 3: `%25` stays encoded", "/%2561", "/%2561"),
    ("rule 4: decoded `..` resolved", "/a/%2e%2e/admin", "/admin"),
    ("rule 4: decoded `.` resolved", "/%2E/x", "/x"),
    ("rule 4: half-encoded `..` resolved", "/a/.%2e/b", "/b"),
    ("rule 5: leading `//` merged", "//admin", "/admin"),
    ("rule 5: inner runs merged", "//a///b", "/a/b"),
    ("rule 5: only slashes", "///", "/"),
    ("rule 6: `.` dropped", "/a/./b", "/a/b"),
    ("rule 6: `..` pops a segment", "/a/b/../c", "/a/c"),
    ("rule 6: `..` back to the root", "/a/../b", "/b"),
    ("rule 6: `...` is a segment", "/.../b.", "/.../b."),
    ("rule 6: dotted names", "/.a/b./x..y", "/.a/b./x..y"),
    ("rule 5 before 6", "/a//../b", "/b"),
    ("rule 7: trailing slash kept", "/a/b/", "/a/b/"),
    ("rule 7: trailing `/.` gives `/`", "/a/b/.", "/a/b/"),
    ("rule 7: trailing `/..` gives `/`", "/a/b/..", "/a/"),
    ("rule 7: trailing `/../` gives `/`", "/a/b/../", "/a/"),
    ("rule 7: `/a/..` is the root", "/a/..", "/"),
    ("rule 7: `/.` is the root", "/.", "/"),
];

/// (rule, input, error)
const REJECTS: &[(&str, &str, PathError)] = &[
    ("rule 1: empty", "", PathError::NotOriginForm),
    ("rule 1: OPTIONS `*`", "*", PathError::NotOriginForm),
    ("rule 1: relative", "a/b", PathError::NotOriginForm),
    (
        "rule 1: absolute-form",
        "http://x/a",
        PathError::NotOriginForm,
    ),
    ("rule 2: raw backslash", "/a\\b", PathError::Backslash),
    (
        "rule 2: raw non-ASCII",
        "/caf\u{e9}",
        PathError::NotVisibleAscii(0xC3),
    ),
    (
        "rule 2: raw space",
        "/a b",
        PathError::NotVisibleAscii(b' '),
    ),
    ("rule 2: raw NUL", "/a\0", PathError::NotVisibleAscii(0)),
    (
        "rule 2: raw tab",
        "/a\tb",
        PathError::NotVisibleAscii(b'\t'),
    ),
    (
        "rule 2: raw DEL",
        "/a\x7f",
        PathError::NotVisibleAscii(0x7F),
    ),
    ("path only: query", "/a?x=1", PathError::QueryOrFragment),
    ("path only: fragment", "/a#top", PathError::QueryOrFragment),
    ("rule 3: lone `%`", "/a%", PathError::MalformedEscape),
    ("rule 3: one digit", "/a%4", PathError::MalformedEscape),
    (
        "rule 3: one digit, then `/`",
        "/a%4/b",
        PathError::MalformedEscape,
    ),
    ("rule 3: not hex", "/a%zz", PathError::MalformedEscape),
    (
        "rule 3: second digit not hex",
        "/a%4g",
        PathError::MalformedEscape,
    ),
    ("rule 3: encoded `/`", "/a%2fb", PathError::EncodedSlash),
    (
        "rule 3: encoded `/` upper case",
        "/a%2Fb",
        PathError::EncodedSlash,
    ),
    (
        "rule 3: encoded `\\`",
        "/a%5cb",
        PathError::EncodedBackslash,
    ),
    ("rule 3: encoded NUL", "/a%00", PathError::EncodedNul),
    (
        "rule 3: encoded LF",
        "/a%0A",
        PathError::EncodedControl(0x0A),
    ),
    (
        "rule 3: encoded DEL",
        "/a%7f",
        PathError::EncodedControl(0x7F),
    ),
    ("rule 6: `..` at the root", "/..", PathError::EscapesRoot),
    ("rule 6: second `..`", "/a/../..", PathError::EscapesRoot),
    (
        "rule 6: climb then descend",
        "/a/../../b",
        PathError::EscapesRoot,
    ),
    (
        "rule 6: encoded climb",
        "/a/%2e%2e/%2e%2e",
        PathError::EscapesRoot,
    ),
    ("rule 6: `//` is no room", "//..", PathError::EscapesRoot),
    ("rule 1 before 2", "a\\b", PathError::NotOriginForm),
    ("rule 2 before 3", "/%zz\\", PathError::Backslash),
    ("rule 3 before 6", "/../%2f", PathError::EncodedSlash),
];

#[test]
fn every_rule_normalizes_its_row() {
    for (rule, input, expected) in NORMALIZES {
        let got = normalize(input).map(NormalizedPath::into_string);
        assert_eq!(got.as_deref(), Ok(*expected), "{rule}: {input:?}");
    }
}

#[test]
fn every_rule_rejects_its_row() {
    for (rule, input, expected) in REJECTS {
        assert_eq!(normalize(input), Err(expected.clone()), "{rule}: {input:?}");
    }
}

#[test]
fn normalizing_twice_changes_nothing() {
    for (rule, input, _) in NORMALIZES {
        let once = normalize(input).unwrap();
        assert_eq!(
            normalize(once.as_str()),
            Ok(once.clone()),
            "{rule}: {input:?}"
        );
    }
}

#[test]
fn length_cap_is_checked_first_and_allows_exactly_8192_bytes() {
    let longest = format!("/{}", "a".repeat(8191));
    assert_eq!(
        normalize(&longest).unwrap().as_str(),
        longest,
        "rule 8: 8192 bytes pass"
    );

    let too_long = format!("/{}", "a".repeat(8192));
    assert_eq!(
        normalize(&too_long),
        Err(PathError::TooLong(8193)),
        "rule 8: 8193 bytes"
    );

    let bad_and_long = format!("\\{}", "%".repeat(9000));
    assert_eq!(
        normalize(&bad_and_long),
        Err(PathError::TooLong(9001)),
        "rule 8 before 1"
    );
}

#[test]
fn reasons_are_distinct_kebab_case_labels() {
    let all = [
        PathError::TooLong(0),
        PathError::NotOriginForm,
        PathError::Backslash,
        PathError::NotVisibleAscii(0),
        PathError::QueryOrFragment,
        PathError::MalformedEscape,
        PathError::EncodedSlash,
        PathError::EncodedBackslash,
        PathError::EncodedNul,
        PathError::EncodedControl(1),
        PathError::EscapesRoot,
    ];
    let reasons: HashSet<_> = all.iter().map(PathError::reason).collect();
    assert_eq!(reasons.len(), all.len());
    for reason in reasons {
        assert!(
            reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "{reason}"
        );
    }
}

#[test]
fn normalized_path_shows_as_its_text() {
    let path = normalize("/a/%7e").unwrap();
    assert_eq!(path.to_string(), "/a/~");
    assert_eq!(path.as_ref(), "/a/~");
    assert_eq!(path.into_string(), "/a/~");
}

/// Pieces that combine into dot segments, escapes and slashes; the rare bad ones
/// (`%2f`, `\\`, a lone `%`) keep the error paths covered without drowning the good ones.
const PIECES: &[&str] = &["/", "/", ".", "..", "a", "%2e", "%2E", "%41", "%3a", "%7e"];
const BAD_PIECES: &[&str] = &["%2f", "\\", "%"];

fn pieced_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        20 => proptest::sample::select(PIECES),
        1 => proptest::sample::select(BAD_PIECES),
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|pieces| format!("/{}", pieces.concat()))
}

proptest::proptest! {
    #[test]
    fn any_accepted_path_is_canonical_and_stable(path in pieced_path()) {
        if let Ok(normalized) = normalize(&path) {
            let out = normalized.as_str();
            prop_assert!(out.starts_with('/'), "{path:?} -> {out:?}");
            prop_assert!(out.len() <= path.len(), "{path:?} -> {out:?}");
            prop_assert!(!out.contains("//"), "{path:?} -> {out:?}");
            prop_assert!(out.split('/').all(|s| s != "." && s != ".."), "{path:?} -> {out:?}");
            let upper = out.to_ascii_uppercase();
            prop_assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{path:?} -> {out:?}");
            prop_assert_eq!(normalize(out), Ok(normalized.clone()), "{:?}", path);
        }
    }

    #[test]
    fn any_string_is_normalized_or_rejected_without_panic(path in any::<String>()) {
        let _ = normalize(&path);
    }
}

#[test]
fn upstream_variant_cuts_parameters_and_decodes_lenient_escapes() {
    let rows: &[(&str, Option<&str>)] = &[
        ("/admin/users", None),
        ("/admin;jsessionid=1/users", Some("/admin/users")),
        ("/admin%3Bx/users", Some("/admin/users")),
        ("/files/a%3Ab", Some("/files/a:b")),
        ("/a/..;/admin", Some("/admin")),
        ("/a/b;c", Some("/a/b")),
        ("/caf%C3%A9", None),
        ("/a%20b", None),
        ("/;x/admin", Some("/admin")),
    ];
    for (input, want) in rows {
        let path = normalize(input).unwrap();
        let got = upstream_variant(path.as_str()).map(|r| r.unwrap().into_string());
        assert_eq!(got.as_deref(), *want, "{input}");
    }
}

#[test]
fn upstream_variant_above_the_root_is_an_error() {
    let path = normalize("/..;/admin").unwrap();
    assert_eq!(
        upstream_variant(path.as_str()),
        Some(Err(PathError::EscapesRoot))
    );
}

//! `path::normalize` and `path::upstream_variant` on arbitrary text, with the invariants of
//! docs/security.md "Paths" asserted on every accepted path:
//! - idempotent: normalizing the result again gives the result;
//! - origin-form, never longer than the input;
//! - no `.` or `..` segment, no empty segment (no `//`) except a kept trailing slash;
//! - no encoded `/`, `\` or NUL, no lower-case escape, no raw byte outside visible ASCII;
//! - matching the normalized path equals matching it again (the fleet policy's verdict for
//!   the result and for its re-normalization agree), and an upstream variant, when there is
//!   one, is itself normalized.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use segward::identity::SpiffeId;
use segward::path::{normalize, upstream_variant};
use segward::policy::{self, CompiledPolicy, Request};

fn fleet() -> &'static (CompiledPolicy, Vec<(SpiffeId, SpiffeId)>) {
    static FLEET: OnceLock<(CompiledPolicy, Vec<(SpiffeId, SpiffeId)>)> = OnceLock::new();
    FLEET.get_or_init(|| {
        let text = include_str!("../../policies/fleet.yaml");
        let compiled = policy::from_text("fleet.yaml", text).expect("policies/fleet.yaml compiles");
        let id = |s: &str| SpiffeId::parse(s).expect("fixed IDs are valid");
        let pairs = vec![
            (
                id("spiffe://example.org/ns/prod/sa/frontend"),
                id("spiffe://example.org/ns/prod/sa/payments"),
            ),
            (
                id("spiffe://example.org/ns/prod/sa/payments"),
                id("spiffe://example.org/ns/prod/sa/ledger"),
            ),
            (
                id("spiffe://example.org/ns/staging/sa/ci-runner"),
                id("spiffe://example.org/ns/prod/sa/payments"),
            ),
        ];
        (compiled, pairs)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = normalize(input) else {
        return;
    };
    let out = path.as_str();
    assert_eq!(
        normalize(out).as_ref(),
        Ok(&path),
        "not idempotent: {input:?} -> {out:?}"
    );
    assert!(out.starts_with('/'), "{out:?}");
    assert!(out.len() <= input.len(), "grew: {input:?} -> {out:?}");
    let segments: Vec<&str> = out[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(!segment.is_empty() || last, "empty segment in {out:?}");
        assert!(
            *segment != "." && *segment != "..",
            "dot segment in {out:?}"
        );
    }
    assert!(!out.contains("//"), "{out:?}");
    for (i, _) in out.match_indices('%') {
        let escape = &out[i..i + 3];
        assert!(
            !matches!(escape, "%2F" | "%5C" | "%00"),
            "forbidden escape in {out:?}"
        );
        assert_eq!(
            escape,
            escape.to_ascii_uppercase(),
            "lower-case escape in {out:?}"
        );
    }
    assert!(out.bytes().all(|b| matches!(b, b'!'..=b'~')), "{out:?}");
    if let Some(Ok(variant)) = upstream_variant(out) {
        assert_eq!(
            normalize(variant.as_str()).as_ref(),
            Ok(&variant),
            "{variant:?}"
        );
    }
    let again = normalize(out).expect("idempotent");
    let (compiled, pairs) = fleet();
    for (source, destination) in pairs {
        for method in ["GET", "POST"] {
            let verdict = |path| {
                compiled.decide(&Request {
                    source,
                    destination,
                    method,
                    path,
                })
            };
            assert_eq!(verdict(&path), verdict(&again), "{input:?}");
        }
    }
});

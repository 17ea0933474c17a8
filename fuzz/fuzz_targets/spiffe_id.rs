//! `SpiffeId::parse` and `TrustDomain::parse` on arbitrary text. Asserted: no panic; an
//! accepted ID is kept byte for byte, re-parses to itself, and its parts obey the rules it
//! was checked against (lower-case trust domain of `[a-z0-9.-_]`, path segments non-empty
//! and never `.` or `..`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use segward::identity::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(text) {
        assert_eq!(id.as_str(), text, "an ID is kept exactly as written");
        assert_eq!(SpiffeId::parse(id.as_str()).as_ref(), Ok(&id), "re-parses");
        let td = id.trust_domain();
        assert!(!td.is_empty(), "empty trust domain accepted: {text:?}");
        assert!(
            td.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)),
            "trust domain outside [a-z0-9-._]: {text:?}"
        );
        for segment in id.segments() {
            assert!(
                !segment.is_empty() && segment != "." && segment != "..",
                "bad path segment {segment:?} in {text:?}"
            );
        }
        assert_eq!(
            TrustDomain::parse(td)
                .map(|t| t.as_str().to_owned())
                .as_deref(),
            Ok(td),
            "an accepted ID's trust domain parses on its own"
        );
    }
    if let Err(error) = SpiffeId::parse(text) {
        assert!(!error.reason().is_empty());
    }
    let _ = TrustDomain::parse(text);
});

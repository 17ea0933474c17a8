//! Policy YAML → `compile` (validation, the file's own `tests:`, the trie) → `lint` → a few
//! decisions, on arbitrary text. Asserted: no panic; every error names a position; a policy
//! that compiles decides every request with a verdict, and deciding twice agrees.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segward::identity::SpiffeId;
use segward::path::normalize;
use segward::policy::analysis::lint::lint;
use segward::policy::{self, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let compiled = match policy::from_text("fuzz.yaml", text) {
        Ok(compiled) => compiled,
        Err(errors) => {
            assert!(!errors.to_string().is_empty(), "an empty error report");
            return;
        }
    };
    let _ = lint(&compiled);
    let ids = [
        "spiffe://example.org/ns/prod/sa/frontend",
        "spiffe://example.org/ns/prod/sa/payments",
        "spiffe://example.org/ns/staging/sa/ci-runner",
        "spiffe://partner.example/integrations/acme",
    ]
    .map(|id| SpiffeId::parse(id).expect("fixed IDs are valid"));
    let paths = ["/", "/v1/charges", "/admin/users", "/a/b/c/"]
        .map(|p| normalize(p).expect("fixed paths are valid"));
    for source in &ids {
        for destination in &ids {
            for path in &paths {
                for method in ["GET", "POST", "DELETE"] {
                    let req = Request {
                        source,
                        destination,
                        method,
                        path,
                    };
                    assert_eq!(compiled.decide(&req), compiled.decide(&req));
                }
            }
        }
    }
});

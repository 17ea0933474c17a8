//! `Svid::from_der` (the X509-SVID leaf rules of docs/security.md) on arbitrary bytes, in both
//! roles, at a fixed clock inside the seeds' validity window. Asserted: no panic; an accepted
//! leaf names a valid SPIFFE ID with a non-empty path, and its window holds the clock.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use segward::identity::{Role, SpiffeId, Svid};

/// 2030-01-01T00:00:00Z, the clock of src/identity/svid/tests.rs (whose certificates seed
/// this target).
const NOW_UNIX: u64 = 1_893_456_000;

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
    for role in [Role::Client, Role::Server] {
        match Svid::from_der(data, role, now) {
            Ok(svid) => {
                assert_eq!(SpiffeId::parse(svid.id.as_str()).as_ref(), Ok(&svid.id));
                assert!(
                    !svid.id.path().is_empty(),
                    "a trust domain ID accepted as an SVID"
                );
                let now = i64::try_from(NOW_UNIX).expect("fits");
                assert!(
                    svid.not_before <= now && now <= svid.not_after,
                    "window {svid:?}"
                );
            }
            Err(error) => assert!(!error.reason().is_empty()),
        }
    }
    // Far outside any window: the verdict may change only to a window error.
    let late = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 2);
    let _ = Svid::from_der(data, Role::Client, late);
});

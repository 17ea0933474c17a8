//! The fast YAML path of policy files (src/policy/fast_yaml) against serde-saphyr, on
//! arbitrary text. Asserted: whatever the fast path accepts, serde-saphyr accepts with the
//! same document (values, lines, columns); otherwise the fast path leaves the text to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segward::policy::fast_yaml::check_against_saphyr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(difference) = check_against_saphyr(text) {
        panic!("fast path and serde-saphyr disagree: {difference}");
    }
});

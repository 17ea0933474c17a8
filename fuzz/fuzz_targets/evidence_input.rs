//! The evidence readers on arbitrary bytes (docs/least-privilege.md#inputs): a decision-log
//! file and an observation file (CSV or JSON lines) that a hostile or broken sidecar, a
//! collector or an operator's export could hand `policy replay|learn|unused`. Invariants:
//! - never a panic;
//! - every line is accounted for: counted into a key, refused, a continuation, blank, or
//!   skipped with its line number (skipped lines never exceed the lines read);
//! - every counted key replays under the fleet policy without a panic, and learning from the
//!   keys gives a policy that compiles.
#![no_main]

use std::io::Cursor;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use segward::evidence::read::{Read, log_lines};
use segward::evidence::{Observations, replay};
use segward::policy::{self, CompiledPolicy};

fn fleet() -> &'static CompiledPolicy {
    static FLEET: OnceLock<CompiledPolicy> = OnceLock::new();
    FLEET.get_or_init(|| {
        policy::from_text("fleet.yaml", include_str!("../../policies/fleet.yaml"))
            .expect("policies/fleet.yaml compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut observations = Observations::default();
    let mut read = Read::default();
    log_lines(
        &mut Cursor::new(data),
        "fuzz.log",
        &mut observations,
        &mut read,
    );
    assert!(read.skipped.total() <= read.lines);
    let replayed = replay(fleet(), &observations);
    assert!(replayed.replayed + replayed.invalid == observations.counted);
    let learned = segward::evidence::learn::learn(&observations, None);
    let yaml = learned.to_yaml("fuzz");
    if let Err(e) = policy::from_text("learned.yaml", &yaml) {
        panic!("learned policy does not compile: {e}\n{yaml}");
    }
});

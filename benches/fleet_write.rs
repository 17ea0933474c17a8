//! Writes the bench fleet (`benches/fleet/mod.rs`, docs/performance.md) to disk, so that a
//! real sidecar can load it: `benches/fleet_load.sh` runs the release binary on it.
//!
//!   fleet_write DIR [SEGMENTS RULES]    # DIR/fleet.yaml; default 10000 segments, 50000 rules
//!
//! Not part of the product binary: a `harness = false` bench target (`cargo bench` passes
//! `--bench`, which is ignored).
#![allow(clippy::unwrap_used)]

mod fleet;

use std::path::Path;
use std::process::ExitCode;

use fleet::Fleet;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (dir, segments, rules) = match args.as_slice() {
        [dir] => (dir, 10_000, 50_000),
        [dir, segments, rules] => match (segments.parse(), rules.parse()) {
            (Ok(s), Ok(r)) => (dir, s, r),
            _ => return usage(),
        },
        _ => return usage(),
    };
    let fleet = Fleet::new(segments, rules);
    // What is written is what the benches measure: the probes' verdicts hold.
    fleet.check(&segward::policy::from_text("fleet.yaml", &fleet.yaml).unwrap());
    let file = Path::new(dir).join("fleet.yaml");
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&file, &fleet.yaml)) {
        eprintln!("fleet_write: {}: {e}", file.display());
        return ExitCode::FAILURE;
    }
    println!("{} bytes={}", file.display(), fleet.yaml.len());
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: fleet_write DIR [SEGMENTS RULES]");
    ExitCode::from(2)
}

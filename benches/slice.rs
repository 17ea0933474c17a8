//! What a sidecar given its slice pays to load it (docs/performance.md "With a slice instead
//! of the whole fleet"; PRODUCT §13: a one-workload slice loads ≤ 10 ms): the bench fleet is
//! written to a temporary folder, `segward policy slice --for` (the binary of this build)
//! writes the slice of one workload, and the folder's texts are parsed
//! (`PolicySource::from_texts`) and compiled (`compile`, its `tests:` run), as a reload does.
//! Also the cut itself on the whole fleet (`Fleet::compile`, parse excluded): what a
//! sidecar given the whole policy spends on its slice after parsing.
#![allow(clippy::unwrap_used)]

mod fleet;

use std::hint::black_box;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use segward::identity::SpiffeId;
use segward::policy::{self, Fleet as Whole, PolicySource, Scope};

use fleet::Fleet;

/// The workload whose slice is measured (the one docs/performance.md's table uses).
const OWN: &str = "spiffe://fleet.org/ns/ns-2/sa/svc-2";

fn load_slice(c: &mut Criterion) {
    let fleet = Fleet::new(10_000, 50_000);
    let dir = tempfile::tempdir().unwrap();
    let whole_file = dir.path().join("fleet.yaml");
    std::fs::write(&whole_file, &fleet.yaml).unwrap();
    let out = dir.path().join("slice");
    let status = Command::new(env!("CARGO_BIN_EXE_segward"))
        .args([
            "policy",
            "slice",
            whole_file.to_str().unwrap(),
            "--for",
            OWN,
        ])
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let texts = PolicySource::read(&out).unwrap();
    let bytes: usize = texts.iter().map(|(_, t)| t.len()).sum();
    println!("slice of {OWN}: {bytes} bytes in {} file(s)", texts.len());
    let pairs = || texts.iter().map(|(n, t)| (n.as_str(), t.as_str()));
    let source = PolicySource::from_texts(pairs()).unwrap();
    let mut group = c.benchmark_group("slice");
    group.bench_function("parse/one_workload", |b| {
        b.iter_with_large_drop(|| PolicySource::from_texts(black_box(pairs())).unwrap())
    });
    group.bench_function("compile/one_workload", |b| {
        b.iter_with_large_drop(|| policy::compile(black_box(&source)).unwrap())
    });
    group.bench_function("parse+compile/one_workload", |b| {
        b.iter_with_large_drop(|| {
            policy::compile(&PolicySource::from_texts(black_box(pairs())).unwrap()).unwrap()
        })
    });
    group.sample_size(10);
    let whole = PolicySource::from_texts([("fleet.yaml", fleet.yaml.as_str())]).unwrap();
    fleet.check(&policy::compile(&whole).unwrap());
    let checked = Whole::check(&whole, policy::unix_now()).unwrap();
    let own = Scope::identity(SpiffeId::parse(OWN).unwrap());
    group.bench_function("cut+compile/one_workload_of_50k_rules", |b| {
        b.iter_batched(
            || PolicySource::from_texts([("fleet.yaml", fleet.yaml.as_str())]).unwrap(),
            |source| checked.compile(source, black_box(&own)).unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, load_slice);
criterion_main!(benches);

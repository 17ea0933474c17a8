//! Policy reload cost at fleet scale (docs/performance.md: parse + compile of 50k rules
//! ≤ 300 ms): YAML parse (`PolicySource::from_texts`, the fast path) and `compile` measured
//! apart, then together; and serde-saphyr alone on the same text, the parse every file took
//! before the fast path (`policy/parse_saphyr/`).
#![allow(clippy::unwrap_used)]

mod fleet;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use segward::policy::{self, PolicySource};

use fleet::Fleet;

fn compile_fleet(c: &mut Criterion) {
    let fleet = Fleet::new(10_000, 50_000);
    let texts = || [("fleet.yaml", fleet.yaml.as_str())];
    let source = PolicySource::from_texts(texts()).unwrap();
    fleet.check(&policy::compile(&source).unwrap());
    // The fleet is in the fast path's subset, and reads there as serde-saphyr reads it.
    assert_eq!(
        policy::fast_yaml::check_against_saphyr(&fleet.yaml),
        Ok(true)
    );
    let mut group = c.benchmark_group("policy");
    group.sample_size(10);
    group.bench_function("parse/50k_rules", |b| {
        b.iter_with_large_drop(|| PolicySource::from_texts(black_box(texts())).unwrap())
    });
    group.bench_function("parse_saphyr/50k_rules", |b| {
        b.iter_with_large_drop(|| policy::load::parse_with_saphyr(black_box(&fleet.yaml)).unwrap())
    });
    group.bench_function("compile/50k_rules", |b| {
        b.iter_with_large_drop(|| policy::compile(black_box(&source)).unwrap())
    });
    group.bench_function("parse+compile/50k_rules", |b| {
        b.iter_with_large_drop(|| policy::from_text("fleet.yaml", black_box(&fleet.yaml)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, compile_fleet);
criterion_main!(benches);

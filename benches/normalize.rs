//! Path normalization, run once per request before the decision (docs/security.md "Paths").
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use segward::path::normalize;

fn normalize_paths(c: &mut Criterion) {
    let long = long_path(1024);
    let cases = [
        ("typical", "/v1/charges/ch_123"),
        ("messy", "//v1/./charges/%61bc/../ch_123/"),
        ("1kb", long.as_str()),
    ];
    let mut group = c.benchmark_group("normalize");
    for (label, path) in cases {
        normalize(path).unwrap();
        group.bench_function(label, |b| b.iter(|| normalize(black_box(path)).unwrap()));
    }
    group.finish();
}

/// A plain path of `len` bytes: `/v1/seg-000/seg-001/…`, padded to the exact length.
fn long_path(len: usize) -> String {
    let mut path = String::from("/v1");
    let mut i = 0;
    while path.len() + 8 <= len {
        path.push_str(&format!("/seg-{i:03}"));
        i += 1;
    }
    path.push('/');
    while path.len() < len {
        path.push('x');
    }
    path
}

criterion_group!(benches, normalize_paths);
criterion_main!(benches);

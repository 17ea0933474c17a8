//! Decision latency (docs/performance.md: ≤ 250 ns median at 10k segments / 50k rules, and ≤ 2×
//! the 10-rule figure). IDs are parsed and the path normalized outside the timed loop, as
//! the proxy does once per connection and once per request.
#![allow(clippy::unwrap_used)]

mod fleet;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use segward::policy;

use fleet::Fleet;

/// (label, segments, rules).
const SIZES: [(&str, usize, usize); 3] = [
    ("10_rules", 10, 10),
    ("1k_rules", 1_000, 1_000),
    ("50k_rules", 10_000, 50_000),
];

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for (label, segments, rules) in SIZES {
        let fleet = Fleet::new(segments, rules);
        let policy = policy::from_text("fleet.yaml", &fleet.yaml).unwrap();
        fleet.check(&policy);
        for (kind, probe) in [
            ("allow", &fleet.allowed),
            ("default-deny", &fleet.unmatched),
            ("allow-wildcard-source", &fleet.wildcard),
        ] {
            let request = probe.request();
            group.bench_function(format!("{kind}/{label}"), |b| {
                b.iter(|| black_box(&policy).decide(black_box(&request)).decision)
            });
            // The proxy's per-request cost: parties classified once per connection.
            let (source, destination) = (
                policy.classify(request.source),
                policy.classify(request.destination),
            );
            group.bench_function(format!("classified/{kind}/{label}"), |b| {
                b.iter(|| {
                    let p = black_box(&policy);
                    p.decide_classified(&source, &destination, request.method, request.path)
                        .decision
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);

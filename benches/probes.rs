//! The cost of probe detection (docs/performance.md#probe-detection): what an allowed request
//! pays (is its source contained? — one atomic load while nobody is), and what a denied one
//! pays (the tracker: a new distinct target, or a repeat), with a full table of sources.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use segward::config::{ProbeAction, ProbeSettings};
use segward::detect::{Probes, Target, Tracker};
use segward::telemetry::decision_log::Direction;
use segward::telemetry::metrics::Metrics;

const SOURCE: &str = "spiffe://example.org/ns/prod/sa/web";

fn probes(c: &mut Criterion) {
    let mut group = c.benchmark_group("probes");
    let settings = ProbeSettings {
        distinct_denied: 5,
        window: Duration::from_secs(60),
        action: ProbeAction::Alert,
        contain_for: Duration::from_secs(900),
        max_sources: 4096,
    };
    let detector = Probes::new(
        Some(settings),
        || {},
        Arc::new(Metrics::new()),
        "policies".into(),
    );
    // The allowed path: nobody contained.
    group.bench_function("allowed/is_contained", |b| {
        b.iter(|| black_box(&detector).is_contained(black_box(SOURCE)))
    });
    let target = Target {
        destination: "spiffe://example.org/ns/prod/sa/api",
        method: "GET",
        path: "/admin",
    };
    // A denied request repeating a target already seen (the common case of a misconfigured
    // caller), through the whole `Probes::denied` (lock + tracker).
    group.bench_function("denied/repeat", |b| {
        b.iter(|| {
            detector.denied(
                Direction::Inbound,
                black_box(SOURCE),
                black_box(&target),
                None,
            )
        })
    });
    // A denied request from a new source into a full table (4096 sources): an eviction.
    let mut tracker = Tracker::new(5, Duration::from_secs(60), 4096);
    let now = Instant::now();
    let ids: Vec<String> = (0..100_000)
        .map(|n| format!("spiffe://example.org/ns/noise/sa/n{n}"))
        .collect();
    for id in ids.iter().take(4096) {
        tracker.observe(id, &target, now);
    }
    let mut n = 4096;
    group.bench_function("denied/new_source_full_table", |b| {
        b.iter(|| {
            n = (n + 1) % ids.len();
            black_box(tracker.observe(&ids[n], &target, now))
        })
    });
    // A new distinct target of a tracked source (below the threshold).
    let paths: Vec<String> = (0..1000).map(|n| format!("/enum/{n}")).collect();
    let mut tracker = Tracker::new(64, Duration::from_secs(60), 4096);
    let mut i = 0;
    group.bench_function("denied/new_target", |b| {
        b.iter(|| {
            i = (i + 1) % paths.len();
            let t = Target {
                path: &paths[i],
                ..target
            };
            if i % 60 == 0 {
                tracker.forget(SOURCE);
            }
            black_box(tracker.observe(SOURCE, &t, now))
        })
    });
    group.finish();
}

criterion_group!(benches, probes);
criterion_main!(benches);

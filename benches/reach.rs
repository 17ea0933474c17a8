//! Blast-radius queries at fleet scale (docs/blast-radius.md: `reach --from` one identity and
//! `--to` one segment ≤ 1 s each including load; all edges, as `report` needs, ≤ 10 s),
//! on the 10k-segment / 50k-rule bench fleet. Prints the size of the full answer once.
#![allow(clippy::unwrap_used)]

mod fleet;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use segward::policy::{self, CompiledPolicy, Reach, Selector};

use fleet::Fleet;

fn query(policy: &CompiledPolicy, from: &str, to: &str) -> Reach {
    let (f, t) = (
        Selector::parse(policy, from).unwrap(),
        Selector::parse(policy, to).unwrap(),
    );
    policy::reach(policy, (from, &f), (to, &t)).unwrap()
}

fn reach_fleet(c: &mut Criterion) {
    let fleet = Fleet::new(10_000, 50_000);
    // For the CLI and report figures (README "Blast radius"): the same fleet as a file.
    if let Some(path) = std::env::var_os("SEGWARD_FLEET_OUT") {
        std::fs::write(path, &fleet.yaml).unwrap();
    }
    let t = std::time::Instant::now();
    let compiled = policy::from_text("fleet.yaml", &fleet.yaml).unwrap();
    let load = t.elapsed();
    fleet.check(&compiled);
    let t = std::time::Instant::now();
    let one = query(&compiled, "spiffe://fleet.org/ns/ns-1/sa/svc-1", "*");
    let from_one = t.elapsed();
    let t = std::time::Instant::now();
    let _ = query(&compiled, "*", "svc-2");
    eprintln!(
        "load {load:?}; reach --from one ID {from_one:?} ({} edges); --to one segment {:?}",
        one.edges.len(),
        t.elapsed()
    );
    let id = "spiffe://fleet.org/ns/ns-1/sa/svc-1";
    let all = query(&compiled, "*", "*");
    let json = serde_json::to_string(&all).unwrap();
    eprintln!(
        "fleet: all edges = {} (folded: {}), JSON {} bytes; --from {id}: {} edges; --to svc-2: {} edges",
        all.edges.len(),
        all.folded,
        json.len(),
        query(&compiled, id, "*").edges.len(),
        query(&compiled, "*", "svc-2").edges.len(),
    );
    let mut group = c.benchmark_group("reach");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    if std::env::var_os("REACH_ONCE").is_some() {
        return;
    }
    group.bench_function("from_identity_including_load/50k_rules", |b| {
        b.iter_with_large_drop(|| {
            let p = policy::from_text("fleet.yaml", black_box(&fleet.yaml)).unwrap();
            query(&p, id, "*").edges.len()
        })
    });
    group.bench_function("to_segment_including_load/50k_rules", |b| {
        b.iter_with_large_drop(|| {
            let p = policy::from_text("fleet.yaml", black_box(&fleet.yaml)).unwrap();
            query(&p, "*", "svc-2").edges.len()
        })
    });
    group.bench_function("all_edges/50k_rules", |b| {
        b.iter_with_large_drop(|| query(&compiled, "*", "*"))
    });
    group.finish();
}

criterion_group!(benches, reach_fleet);
criterion_main!(benches);

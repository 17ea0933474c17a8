//! Slices of the bench fleet (`benches/fleet`: workload segments over 20 namespaces, `**`
//! namespace segments, env- and tier-wide label denies, `"*"` rules, revoked IDs) decide
//! thousands of sampled requests and connections as the whole policy does, for the slice of
//! the destination (inbound) and of the source (outbound) — docs/fleet.md "Slices".
//!
//! A debug build runs a smaller instance of the same generator; the full size is
//! `SEGWARD_SLICE_FLEET=10000,50000 cargo test --release --test it slice_fleet`.

use segward::identity::SpiffeId;
use segward::path::normalize;
use segward::policy::{self, CompiledPolicy, Fleet, PolicySource, Request, Scope, Target};

#[allow(dead_code)]
#[path = "../../benches/fleet/mod.rs"]
mod fleet_gen;

/// Identities whose slices are checked, and requests per identity and direction.
const OWNS: usize = 20;
const REQUESTS: usize = 120;
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "HEAD"];
const PATHS: [&str; 8] = [
    "/v1/orders",
    "/v1/charges/ch_1",
    "/v1/users/u/x",
    "/v2/items/7/items",
    "/healthz",
    "/metrics",
    "/debug/pprof",
    "/admin/users",
];

/// (segments, rules) of the generated fleet.
fn size() -> (usize, usize) {
    let Ok(text) = std::env::var("SEGWARD_SLICE_FLEET") else {
        return (1_000, 5_000);
    };
    let (s, r) = text
        .split_once(',')
        .expect("SEGWARD_SLICE_FLEET=SEGMENTS,RULES");
    (s.parse().unwrap(), r.parse().unwrap())
}

/// A tiny deterministic generator, so every run samples the same requests.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// An identity of a segment: its pattern, with `**` filled in.
fn member(policy: &CompiledPolicy, segment: u32) -> String {
    let pattern = policy.segments()[segment as usize].identities[0].to_string();
    pattern.replace("/**", "/sa/probe")
}

/// Identities a rule naming `own` on `side` lets in on the other side, plus outsiders.
fn peers(whole: &CompiledPolicy, own: &SpiffeId, inbound: bool) -> Vec<String> {
    let mine = whole.segment_names(own);
    let mut peers = vec![
        "spiffe://fleet.org/ns/ns-19/sa/retired-0".to_owned(),
        "spiffe://fleet.org/ns/ns-0/sa/scraper".to_owned(),
        "spiffe://fleet.org/ns/ns-7/sa/ghost".to_owned(),
        "spiffe://other.org/ns/ns-1/sa/svc-1".to_owned(),
    ];
    for rule in whole.rules() {
        let (near, far) = if inbound {
            (&rule.to, &rule.from)
        } else {
            (&rule.from, &rule.to)
        };
        let names_own = near.iter().any(|t| match t {
            Target::Segment(s) => mine.contains(&whole.segments()[*s as usize].name.as_str()),
            _ => false,
        });
        if names_own {
            peers.extend(far.iter().filter_map(|t| match t {
                Target::Segment(s) => Some(member(whole, *s)),
                _ => None,
            }));
        }
    }
    peers
}

#[test]
fn the_bench_fleet_slices_decide_sampled_requests_and_connections_as_the_whole_does() {
    let (segments, rules) = size();
    let generated = fleet_gen::Fleet::new(segments, rules);
    let whole = policy::from_text("fleet.yaml", &generated.yaml).unwrap();
    generated.check(&whole);
    let source = || PolicySource::from_texts([("fleet.yaml", generated.yaml.as_str())]).unwrap();
    let fleet = Fleet::check(&source(), policy::unix_now()).unwrap();
    let mut draw = Draw(0x51ce);
    let (mut checked, mut by_rule, mut slice_rules) = (0, 0, Vec::new());
    for _ in 0..OWNS {
        let own = SpiffeId::parse(&member(&whole, draw.below(segments) as u32)).unwrap();
        let slice = fleet
            .compile(source(), &Scope::identity(own.clone()))
            .unwrap();
        slice_rules.push(slice.rules().len());
        for inbound in [true, false] {
            let peers = peers(&whole, &own, inbound);
            for _ in 0..REQUESTS {
                let peer = SpiffeId::parse(&peers[draw.below(peers.len())]).unwrap();
                let (from, to) = if inbound {
                    (&peer, &own)
                } else {
                    (&own, &peer)
                };
                let path = normalize(PATHS[draw.below(PATHS.len())]).unwrap();
                let method = METHODS[draw.below(METHODS.len())];
                let request = Request {
                    source: from,
                    destination: to,
                    method,
                    path: &path,
                };
                assert_eq!(
                    slice.decide(&request),
                    whole.decide(&request),
                    "{from} -> {to} {method} {path:?}"
                );
                assert_eq!(
                    slice.decide_connection(from, to),
                    whole.decide_connection(from, to),
                    "{from} -> {to}"
                );
                checked += 1;
                by_rule += usize::from(whole.decide(&request).rule.is_some());
            }
        }
    }
    assert!(checked >= 4_000, "{checked}");
    // A rule (not the default deny or a revocation) decided a fair share of them.
    assert!(
        by_rule * 10 > checked,
        "{by_rule} of {checked} decided by a rule"
    );
    slice_rules.sort_unstable();
    let (median, max) = (slice_rules[OWNS / 2], slice_rules[OWNS - 1]);
    println!(
        "fleet {segments} segments / {} rules: {checked} requests agree ({by_rule} decided by a rule); \
         slice rules median {median}, max {max}",
        whole.rules().len()
    );
    assert!(
        max * 20 < whole.rules().len(),
        "slices are not small: {slice_rules:?}"
    );
}

/// `--per namespace` on the bench fleet's shape (20 namespaces, env- and tier-wide label
/// denies; 1,000 segments and 5,000 rules in a debug build, a tenth of the bench fleet):
/// every namespace gets a slice that compiles, and what it holds as written is only what its
/// rules name or may hold a member of the namespace; every other identity the env- and
/// tier-wide selectors need is in at most five synthesized segments (the non-empty classes
/// of one `env` value and two `tier` values). Sizes are printed; the full fleet's are in
/// docs/performance.md.
#[test]
fn per_namespace_on_the_bench_fleet_writes_every_namespace_compactly() {
    let (segments, rules) = size();
    let generated = fleet_gen::Fleet::new(segments, rules);
    let dir = crate::cli::policy_dir(&[("fleet/fleet.yaml", &generated.yaml)]);

    let out = crate::cli::segward_in(
        dir.path(),
        &[
            "policy",
            "slice",
            "fleet",
            "--per",
            "namespace",
            "--out",
            "ns",
        ],
    );

    assert_eq!(out.code, 0, "{out:?}");
    let mut sizes = Vec::new();
    for k in 0..20 {
        let folder = dir.path().join(format!("ns/ns-{k}"));
        let texts = PolicySource::read(&folder).unwrap();
        // What the ConfigMap holds: the files as written (gzip-compressed when their YAML
        // is over 1 MiB, docs/fleet.md "Slices over 1 MiB").
        let on_disk: u64 = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= 1024 * 1024, "ns-{k}: {on_disk} bytes");
        let yaml = texts.iter().map(|(_, t)| t.len()).sum::<usize>();
        sizes.push((on_disk, yaml));
        let slice = policy::compile(
            &PolicySource::from_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str()))).unwrap(),
        )
        .unwrap();
        let named: Vec<u32> = slice
            .rules()
            .iter()
            .flat_map(|r| r.from.iter().chain(&r.to))
            .filter_map(|t| match t {
                Target::Segment(s) => Some(*s),
                _ => None,
            })
            .collect();
        let namespace = format!("spiffe://fleet.org/ns/ns-{k}/");
        let mut synthesized = 0;
        for (s, segment) in slice.segments().iter().enumerate() {
            if segment.name.starts_with("slice.") {
                synthesized += 1;
                continue;
            }
            let member = segment.identities[0].to_string().starts_with(&namespace);
            assert!(
                member || named.contains(&(s as u32)),
                "ns-{k}: {} kept as written",
                segment.name
            );
        }
        assert!((1..=5).contains(&synthesized), "ns-{k}: {synthesized}");
    }
    sizes.sort_unstable();
    println!(
        "--per namespace of {segments} segments / {rules} rules: bytes written p50 {} max {} \
         (YAML {} / {})",
        sizes[10].0, sizes[19].0, sizes[10].1, sizes[19].1
    );
}

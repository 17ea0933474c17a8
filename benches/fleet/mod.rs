//! The benchmark fleet shared by `decide` and `compile` (docs/performance.md): `N` workload
//! segments `svc-{i}` over 20 namespaces, a few `**` namespace segments, and `R` rules —
//! mostly one workload to another with methods and paths, ~5 % deny, a handful of label and
//! `"*"` rules. Written as YAML text, so benches compile what an operator would write.
//! Lives in `benches/fleet/` so Cargo does not take it for a bench target of its own.

use std::collections::HashSet;
use std::fmt::Write as _;

use segward::identity::SpiffeId;
use segward::path::{NormalizedPath, normalize};
use segward::policy::{CompiledPolicy, Decision, Request};

/// Namespaces the workloads are spread over.
const NAMESPACES: usize = 20;
/// Namespaces that also have a `ns-{k}-all` segment (`spiffe://fleet.org/ns/ns-{k}/**`).
const NAMESPACE_SEGMENTS: usize = 4;
const RESOURCES: [&str; 8] = [
    "orders", "charges", "users", "items", "invoices", "accounts", "sessions", "reports",
];
const METHODS: [Option<&str>; 6] = [
    Some("[GET]"),
    Some("[GET, HEAD]"),
    Some("[GET, POST]"),
    Some("[POST]"),
    Some("[PUT, DELETE]"),
    None,
];

/// A generated policy and two requests whose verdicts are known.
pub struct Fleet {
    /// The whole policy as one YAML file.
    pub yaml: String,
    /// Matches an allow rule between two workloads (`POST /v1/charges/ch_123`).
    pub allowed: Probe,
    /// Two workloads no rule connects: default-deny.
    pub unmatched: Probe,
    /// A request from an identity matched only by a `**` pattern (`ns-0-all`), allowed
    /// by the `"*"`-destination rule `ns-0-scrapes-metrics`.
    pub wildcard: Probe,
}

/// A request, parsed the way the proxy holds it: IDs once per connection, path once.
pub struct Probe {
    source: SpiffeId,
    destination: SpiffeId,
    method: &'static str,
    path: NormalizedPath,
}

impl Fleet {
    /// A fleet of `segments` workloads (at least 10) and about `rules` rules (at least 10).
    pub fn new(segments: usize, rules: usize) -> Self {
        let mut out = String::with_capacity(rules * 140 + segments * 140);
        write_segments(&mut out, segments);
        out.push_str("rules:\n");
        let specials = write_special_rules(&mut out, rules / 2);
        // The allowed probe's rule, written like every other workload rule.
        out.push_str("  - name: allow-probe\n    from: [svc-1]\n    to: [svc-2]\n");
        out.push_str("    methods: [GET, POST]\n    paths: [\"/v1/charges\", \"/v1/charges/*\"]\n");
        let mut pairs = HashSet::from([(1, 2)]);
        let mut rng = SplitMix(0x5e9_3a2d);
        for j in specials + 1..rules {
            pairs.insert(write_pair_rule(&mut out, j, segments, &mut rng));
        }
        out.push_str("revoked:\n");
        for k in 0..5 {
            let _ = writeln!(out, "  - spiffe://fleet.org/ns/ns-19/sa/retired-{k}");
        }
        let (s, d) = unconnected_prod_pair(segments, &pairs);
        Self {
            yaml: out,
            allowed: Probe::new(1, 2, "POST", "/v1/charges/ch_123"),
            unmatched: Probe::new(s, d, "GET", "/v1/orders/42"),
            wildcard: Probe {
                source: SpiffeId::parse("spiffe://fleet.org/ns/ns-0/sa/scraper").unwrap(),
                ..Probe::new(0, 2, "GET", "/metrics")
            },
        }
    }

    /// Panics unless `policy` (compiled from [`Self::yaml`]) gives the probes their verdicts.
    pub fn check(&self, policy: &CompiledPolicy) {
        let allowed = policy.decide(&self.allowed.request());
        assert_eq!(
            (allowed.decision, allowed.rule_label()),
            (Decision::Allow, "allow-probe")
        );
        let wildcard = policy.decide(&self.wildcard.request());
        assert_eq!(
            (wildcard.decision, wildcard.rule_label()),
            (Decision::Allow, "ns-0-scrapes-metrics")
        );
        let unmatched = policy.decide(&self.unmatched.request());
        assert_eq!(
            (unmatched.decision, unmatched.rule_label()),
            (Decision::Deny, "default-deny")
        );
    }
}

impl Probe {
    fn new(source: usize, destination: usize, method: &'static str, path: &str) -> Self {
        Self {
            source: SpiffeId::parse(&workload_id(source)).unwrap(),
            destination: SpiffeId::parse(&workload_id(destination)).unwrap(),
            method,
            path: normalize(path).unwrap(),
        }
    }

    /// The request `decide` takes.
    pub fn request(&self) -> Request<'_> {
        Request {
            source: &self.source,
            destination: &self.destination,
            method: self.method,
            path: &self.path,
        }
    }
}

fn workload_id(i: usize) -> String {
    format!("spiffe://fleet.org/ns/ns-{}/sa/svc-{i}", i % NAMESPACES)
}

/// 70 % prod, 30 % staging.
fn is_prod(i: usize) -> bool {
    i % 10 < 7
}

fn tier(i: usize) -> &'static str {
    match i % 8 {
        0 => "critical",
        1..=5 => "web",
        _ => "batch",
    }
}

fn write_segments(out: &mut String, segments: usize) {
    out.push_str("segments:\n");
    for i in 0..segments {
        let env = if is_prod(i) { "prod" } else { "staging" };
        let _ = writeln!(
            out,
            "  svc-{i}:\n    identities: [\"{}\"]\n    labels: {{ env: {env}, tier: {} }}",
            workload_id(i),
            tier(i)
        );
    }
    for k in 0..NAMESPACE_SEGMENTS {
        let _ = writeln!(
            out,
            "  ns-{k}-all:\n    identities: [\"spiffe://fleet.org/ns/ns-{k}/**\"]\n    \
             labels: {{ scope: namespace }}"
        );
    }
}

/// Label-selector and `"*"` rules, at most `max` of them; returns how many were written.
fn write_special_rules(out: &mut String, max: usize) -> usize {
    const SPECIAL: [&str; 5] = [
        "  - name: staging-never-reaches-prod\n    effect: deny\n    \
         from: [{ env: staging }]\n    to: [{ env: prod }]\n",
        "  - name: health-checks\n    from: [\"*\"]\n    to: [\"*\"]\n    \
         methods: [GET]\n    paths: [\"/healthz\"]\n",
        "  - name: no-debug-on-critical\n    effect: deny\n    from: [\"*\"]\n    \
         to: [{ tier: critical }]\n    paths: [\"/debug/**\"]\n",
        "  - name: web-never-reaches-admin\n    effect: deny\n    from: [{ tier: web }]\n    \
         to: [{ tier: critical }]\n    paths: [\"/admin/**\"]\n",
        "  - name: ns-0-scrapes-metrics\n    from: [ns-0-all]\n    to: [\"*\"]\n    \
         methods: [GET]\n    paths: [\"/metrics\"]\n",
    ];
    let n = max.min(SPECIAL.len());
    SPECIAL[..n].iter().for_each(|rule| out.push_str(rule));
    n
}

/// One workload-to-workload rule; returns the (source, destination) pair it connects.
fn write_pair_rule(
    out: &mut String,
    j: usize,
    segments: usize,
    rng: &mut SplitMix,
) -> (usize, usize) {
    let from = rng.below(segments);
    let to = (from + 1 + rng.below(segments - 1)) % segments;
    let deny = rng.below(100) < 5;
    let name = if deny { "deny" } else { "allow" };
    let effect = if deny { "    effect: deny\n" } else { "" };
    let _ = write!(
        out,
        "  - name: {name}-{j}\n{effect}    from: [svc-{from}]\n    to: [svc-{to}]\n"
    );
    if let Some(methods) = METHODS[rng.below(METHODS.len())] {
        let _ = writeln!(out, "    methods: {methods}");
    }
    let resource = RESOURCES[rng.below(RESOURCES.len())];
    let shapes = [
        format!("\"/v1/{resource}\""),
        format!("\"/v1/{resource}/*\""),
        format!("\"/v1/{resource}/**\""),
        format!("\"/v2/{resource}/*/items\""),
    ];
    let first = rng.below(shapes.len());
    let count = 1 + rng.below(3).min(shapes.len() - first - 1);
    let _ = writeln!(
        out,
        "    paths: [{}]",
        shapes[first..first + count].join(", ")
    );
    (from, to)
}

/// The first pair of prod workloads (so no label deny applies) that no rule connects.
fn unconnected_prod_pair(segments: usize, pairs: &HashSet<(usize, usize)>) -> (usize, usize) {
    let prod = || (3..segments).filter(|&i| is_prod(i));
    prod()
        .flat_map(|s| prod().map(move |d| (s, d)))
        .find(|&(s, d)| s != d && !pairs.contains(&(s, d)))
        .unwrap()
}

/// A tiny deterministic generator, so every run benches the same fleet.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

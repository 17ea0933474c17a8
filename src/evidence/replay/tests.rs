//! Replay on a small policy: flips both ways, grouped, and nothing else.

use super::*;
use crate::evidence::observe::Logged;
use crate::policy::from_text;

const POLICY: &str = r#"
segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
rules:
  - name: web-reads-api
    from: [web]
    to: [api]
    methods: [GET]
    paths: ["/v1/**"]
"#;

const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
const API: &str = "spiffe://example.org/ns/prod/sa/api";

fn key<'a>(method: &'a str, path: &'a str, decision: Logged, rule: Option<&'a str>) -> Key<'a> {
    Key {
        direction: Direction::Inbound,
        protocol: Protocol::Http,
        source: WEB,
        destination: API,
        method,
        path,
        decision,
        rule,
        reason: None,
    }
}

fn stats(count: u64, at: i64) -> Stats {
    Stats {
        count,
        first: Some(at),
        last: Some(at),
        sampled: false,
    }
}

#[test]
fn the_same_policy_flips_nothing_and_a_revocation_flips_exactly_its_requests() {
    let before = from_text("p.yaml", POLICY).unwrap();
    let mut obs = Observations::default();
    obs.add(
        &key("GET", "/v1/a", Logged::Allow, Some("web-reads-api")),
        &stats(5, 10),
    );
    obs.add(
        &key("GET", "/v1/b", Logged::Allow, Some("web-reads-api")),
        &stats(2, 20),
    );
    obs.add(&key("POST", "/v1/a", Logged::Deny, None), &stats(3, 30));

    let same = replay(&before, &obs);
    assert_eq!((same.breaks(), same.admits(), same.unchanged), (0, 0, 10));

    let revoked = format!("{POLICY}revoked: [\"{WEB}\"]\n");
    let after = from_text("p.yaml", &revoked).unwrap();
    let r = replay(&after, &obs);
    assert_eq!((r.breaks(), r.admits(), r.unchanged), (7, 0, 3));
    assert_eq!(r.groups.len(), 1);
    let g = &r.groups[0];
    assert_eq!(
        (g.flip, g.source.as_str(), g.destination.as_str()),
        (Flip::AllowToDeny, "web", "api")
    );
    assert_eq!((g.rule.as_str(), g.distinct), ("revoked", 2));
    assert_eq!((g.stats.first, g.stats.last), (Some(10), Some(20)));
    assert_eq!(g.example.now, "deny (revoked)");
}

#[test]
fn audited_would_denies_that_a_new_rule_allows_are_admits_not_breaks() {
    let policy = from_text("p.yaml", POLICY).unwrap();
    let mut obs = Observations::default();
    let mut audited = key("GET", "/v1/a", Logged::WouldDeny, None);
    audited.reason = Some("default-deny");
    obs.add(&audited, &stats(4, 1));
    let mut bad = key("GET", "/v1/a", Logged::Allow, None);
    bad.source = "not-a-spiffe-id";
    obs.add(&bad, &stats(1, 1));

    let r = replay(&policy, &obs);

    assert_eq!((r.breaks(), r.admits(), r.invalid), (0, 4, 1));
    assert_eq!(r.groups[0].rule, "web-reads-api");
}

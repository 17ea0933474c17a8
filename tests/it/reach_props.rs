//! Property tests of the blast-radius answer (docs/blast-radius.md): for random policies and random
//! requests, `decide` lets a request through if and only if the reach answer covers it —
//! asked `--from` the source's ID, a pattern matching it, each of its segments and `*`, and
//! `--to` the destination's ID and segments. Parties are placed in classes with the library's
//! plain pattern matcher (not the trie the reach walk and `decide` share), and revocation is
//! read off the generator's data.

use std::cell::Cell;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use segward::identity::SpiffeId;
use segward::path::normalize;
use segward::policy::pattern::IdentityPattern;
use segward::policy::{self, CompiledPolicy, Request, Selector};

use crate::support::policy_gen::{Id, PolicySpec, RequestSpec, policy, request_draft};

#[test]
fn decide_allows_exactly_what_reach_covers() {
    let cases = (
        policy(),
        vec(request_draft(), 6),
        vec((any::<usize>(), any::<bool>()), 6),
    );
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let (allowed, covered_by_pattern) = (Cell::new(0usize), Cell::new(0usize));
    let result = runner.run(&cases, |(spec, drafts, shapes)| {
        let yaml = spec.to_yaml();
        let compiled = policy::from_text("policy.yaml", &yaml).unwrap();
        for (draft, shape) in drafts.iter().zip(shapes) {
            let req = draft.resolve(&spec);
            let through = lets_through(&compiled, &req);
            allowed.set(allowed.get() + usize::from(through));
            let parties = Parties::of(&spec, &req);
            for (from, to) in queries(&compiled, &req, &parties, shape) {
                let (f, t) = (
                    Selector::parse(&compiled, &from).unwrap(),
                    Selector::parse(&compiled, &to).unwrap(),
                );
                let reach = policy::reach(&compiled, (&from, &f), (&to, &t)).unwrap();
                let path = normalize(&req.path).unwrap();
                let covers = !parties.source_revoked
                    && reach.covers(&parties.source, &parties.destination, req.method, &path);
                if covers && from.contains('*') && from != "*" {
                    covered_by_pattern.set(covered_by_pattern.get() + 1);
                }
                prop_assert_eq!(
                    covers,
                    through,
                    "request {}\nquery --from {} --to {}\nedges: {}\npolicy:\n{}",
                    req,
                    from,
                    to,
                    serde_json::to_string_pretty(&reach).unwrap(),
                    yaml
                );
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must keep producing requests that get through, also by pattern queries.
    let (allowed, by_pattern) = (allowed.get(), covered_by_pattern.get());
    assert!(allowed > 50, "only {allowed} requests were let through");
    assert!(by_pattern > 20, "pattern queries covered {by_pattern}");
}

/// The request's parties as the reach answer names them.
struct Parties {
    source: Vec<&'static str>,
    destination: Vec<&'static str>,
    source_revoked: bool,
}

impl Parties {
    fn of(spec: &PolicySpec, req: &RequestSpec) -> Self {
        Self {
            source: segments_of(spec, &req.source),
            destination: segments_of(spec, &req.destination),
            source_revoked: spec
                .revoked
                .iter()
                .any(|p| pattern(p).matches(&id(&req.source))),
        }
    }
}

/// Names of the segments whose patterns match `who`, sorted (names are `s0`…`s5`).
fn segments_of(spec: &PolicySpec, who: &Id) -> Vec<&'static str> {
    const NAMES: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];
    spec.segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.identities.iter().any(|p| pattern(p).matches(&id(who))))
        .map(|(i, _)| NAMES[i])
        .collect()
}

/// The (--from, --to) pairs asked for one request: every one selects both of its parties.
fn queries(
    compiled: &CompiledPolicy,
    req: &RequestSpec,
    parties: &Parties,
    (shape, globstar): (usize, bool),
) -> Vec<(String, String)> {
    let (src, dst) = (req.source.to_string(), req.destination.to_string());
    let mut froms = vec![
        src.clone(),
        "*".to_owned(),
        source_pattern(&req.source, shape, globstar),
    ];
    froms.extend(parties.source.iter().map(|s| (*s).to_owned()));
    let mut out: Vec<(String, String)> = froms.into_iter().map(|f| (f, dst.clone())).collect();
    out.push(("*".to_owned(), "*".to_owned()));
    out.push((src.clone(), "*".to_owned()));
    out.extend(
        parties
            .destination
            .iter()
            .map(|d| ("*".to_owned(), (*d).to_owned())),
    );
    // A pattern on the destination side as well.
    out.push((src, source_pattern(&req.destination, shape / 7, !globstar)));
    assert!(
        out.iter()
            .all(|(f, t)| Selector::parse(compiled, f).is_ok()
                && Selector::parse(compiled, t).is_ok())
    );
    out
}

/// A pattern matching `who`: one segment made `*`, or a prefix followed by `**`.
fn source_pattern(who: &Id, shape: usize, globstar: bool) -> String {
    let n = who.segments.len();
    let mut parts: Vec<&str> = who.segments.clone();
    if globstar {
        parts.truncate(shape % (n + 1));
        parts.push("**");
    } else {
        parts[shape % n] = "*";
    }
    format!("spiffe://{}/{}", who.trust_domain, parts.join("/"))
}

fn lets_through(compiled: &CompiledPolicy, req: &RequestSpec) -> bool {
    let (source, destination) = (id(&req.source), id(&req.destination));
    let path = normalize(&req.path).unwrap();
    compiled
        .decide(&Request {
            source: &source,
            destination: &destination,
            method: req.method,
            path: &path,
        })
        .lets_through()
}

fn id(who: &Id) -> SpiffeId {
    SpiffeId::parse(&who.to_string()).unwrap()
}

fn pattern(p: &impl std::fmt::Display) -> IdentityPattern {
    IdentityPattern::parse(&p.to_string()).unwrap()
}

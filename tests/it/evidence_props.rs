//! Property: for random policies and random decision logs written as the sidecars write them
//! (decided by that policy, in enforce or audit mode, HTTP requests and TCP connections,
//! both directions), `policy replay` of the same policy reports no flip, and replay of a
//! mutated policy (a rule dropped, an identity pattern revoked) reports exactly the requests
//! whose decision changed — each checked against `decide` and `decide_connection` directly.

use std::collections::BTreeSet;
use std::io::Cursor;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use segward::evidence::Protocol;
use segward::evidence::read::{Read, log_lines};
use segward::evidence::{Observations, replay};
use segward::identity::SpiffeId;
use segward::path::{normalize, upstream_variant};
use segward::policy::{self, CompiledPolicy, Decision, PolicySource, Reason, Request, Verdict};
use serde_json::json;

use crate::support::policy_gen::{
    PolicySpec, RequestDraft, RequestSpec, id_pattern, policy, request_draft,
};

/// One logged request: the request, TCP or not, direction, audit mode.
type Logged = (RequestSpec, bool, bool, bool);

/// A [`Logged`] before its identities are resolved against a policy.
type Drafted = (RequestDraft, bool, bool, bool);

fn verdict<'p>(p: &'p CompiledPolicy, req: &RequestSpec, tcp: bool) -> Verdict<'p> {
    let source = SpiffeId::parse(&req.source.to_string()).unwrap();
    let destination = SpiffeId::parse(&req.destination.to_string()).unwrap();
    if tcp {
        return p.decide_connection(&source, &destination);
    }
    let path = normalize(&req.path).unwrap();
    p.decide(&Request {
        source: &source,
        destination: &destination,
        method: req.method,
        path: &path,
    })
}

/// Let through when enforced: allow, or the would-deny of a dry-run rule.
fn allowed(v: &Verdict<'_>) -> bool {
    v.decision == Decision::Allow
        || (v.decision == Decision::WouldDeny && v.reason == Reason::DryRunDeny)
}

/// The decision-log line a sidecar writes for `logged` decided by `p`.
fn line(p: &CompiledPolicy, (req, tcp, inbound, audit): &Logged) -> String {
    let mut v = verdict(p, req, *tcp);
    if *audit {
        v = v.audited();
    }
    let path = normalize(&req.path).unwrap();
    let mut line = json!({
        "time": "2026-12-07T15:00:00.000001Z",
        "request_id": "r",
        "direction": if *inbound { "inbound" } else { "outbound" },
        "source_id": req.source.to_string(),
        "destination_id": req.destination.to_string(),
        "method": if *tcp { "" } else { req.method },
        "path": if *tcp { "" } else { path.as_str() },
        "decision": v.decision.as_str(),
        "reason": v.reason.as_str(),
        "policy_version": p.version(),
    });
    if let Some(rule) = v.rule {
        line["rule"] = json!(rule);
    }
    if *tcp {
        line["protocol"] = json!("tcp");
        line["event"] = json!("open");
    }
    line.to_string()
}

/// A runner of `cases` cases that writes no regression file.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// The decision-log lines of `drafts` resolved against `spec`, decided by `p`.
fn log_text(p: &CompiledPolicy, spec: &PolicySpec, drafts: &[Drafted]) -> String {
    drafts
        .iter()
        .map(|(d, tcp, inbound, audit)| line(p, &(d.resolve(spec), *tcp, *inbound, *audit)) + "\n")
        .collect()
}

/// What `policy replay` reads from the decision-log `text`, and what reading it went through.
fn observe(text: String) -> (Observations, Read) {
    let mut obs = Observations::default();
    let mut read = Read::default();
    log_lines(
        &mut Cursor::new(text.into_bytes()),
        "log",
        &mut obs,
        &mut read,
    );
    (obs, read)
}

#[test]
fn replay_flips_exactly_the_requests_whose_decision_changed() {
    let logged = (request_draft(), any::<bool>(), any::<bool>(), any::<bool>());
    let cases = (
        policy(),
        vec(logged, 1..24),
        any::<usize>(),
        option::of(id_pattern()),
    );
    let mut runner = runner(256);
    let flips_seen = std::cell::Cell::new(0usize);
    let result = runner.run(&cases, |(spec, drafts, drop, revoke)| {
        let yaml = spec.to_yaml();
        let before = policy::from_text("policy.yaml", &yaml).unwrap();
        let mut mutated = spec.clone();
        if mutated.rules.len() > 1 {
            mutated.rules.remove(drop % mutated.rules.len());
        }
        mutated.revoked.extend(revoke);
        let after = policy::from_text("policy.yaml", &mutated.to_yaml()).unwrap();

        let logged: Vec<Logged> = drafts
            .iter()
            .map(|(d, tcp, inbound, audit)| (d.resolve(&spec), *tcp, *inbound, *audit))
            .collect();
        let text: String = logged.iter().map(|l| line(&before, l) + "\n").collect();
        let (obs, read) = observe(text);
        prop_assert_eq!(read.skipped.total(), 0, "{:?}", read.skipped);

        let same = replay(&before, &obs);
        prop_assert_eq!(
            (same.breaks(), same.admits()),
            (0, 0),
            "{:?}\n{}",
            same,
            yaml
        );
        prop_assert_eq!(same.unchanged, logged.len() as u64);

        let (mut breaks, mut admits) = (0u64, 0u64);
        let mut flipped = BTreeSet::new();
        for l in &logged {
            let (req, tcp, _, _) = l;
            let was = allowed(&verdict(&before, req, *tcp));
            let now = allowed(&verdict(&after, req, *tcp));
            if was != now {
                flipped.insert(line(&before, l));
            }
            breaks += u64::from(was && !now);
            admits += u64::from(!was && now);
        }
        let r = replay(&after, &obs);
        prop_assert_eq!(
            (r.breaks(), r.admits()),
            (breaks, admits),
            "{:?}\nbefore:\n{}\nafter:\n{}",
            r,
            yaml,
            mutated.to_yaml()
        );
        let distinct: usize = r.groups.iter().map(|g| g.distinct).sum();
        prop_assert_eq!(distinct, flipped.len());
        prop_assert_eq!(r.unchanged + breaks + admits, logged.len() as u64);
        flips_seen.set(flips_seen.get() + flipped.len());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        flips_seen.get() > 0,
        "the mutations never changed a decision"
    );
}

#[test]
fn a_learned_policy_allows_everything_that_went_through_and_compiles() {
    let logged = (request_draft(), any::<bool>(), any::<bool>(), any::<bool>());
    let cases = (policy(), vec(logged, 1..32), any::<bool>());
    let mut runner = runner(128);
    let result = runner.run(&cases, |(spec, drafts, reuse)| {
        let yaml = spec.to_yaml();
        let before = policy::from_text("policy.yaml", &yaml).unwrap();
        let text = log_text(&before, &spec, &drafts);
        let (obs, _) = observe(text);

        let mut learned = segward::evidence::learn::learn(&obs, reuse.then_some(&before));
        // As `learn --policy` does: the learned file joins the current policy's.
        let joined: Vec<(&str, String)> = if reuse {
            vec![("policy.yaml", yaml.clone())]
        } else {
            Vec::new()
        };
        let compile = |learned_yaml: &str| {
            let texts = joined
                .iter()
                .map(|(n, t)| (*n, t.as_str()))
                .chain([("learned.yaml", learned_yaml)]);
            PolicySource::from_texts(texts)
                .and_then(|s| policy::compile(&s))
                .map_err(|e| TestCaseError::fail(format!("{e}\n{learned_yaml}")))
        };
        let mut untested = learned.clone();
        untested.rules.iter_mut().for_each(|r| r.samples.clear());
        let merged = compile(&untested.to_yaml("learned"))?;
        learned.keep_allowed_samples(&merged);
        let learned_yaml = learned.to_yaml("learned");
        let compiled = compile(&learned_yaml)?;
        for (key, _) in obs.iter() {
            let ambiguous = key.protocol == Protocol::Http
                && matches!(upstream_variant(key.path), Some(Err(_)));
            // Joined with the current policy, its deny rules still refuse what they refused.
            let must = if reuse {
                key.was_allowed()
            } else {
                key.went_through()
            };
            if !must || ambiguous {
                continue;
            }
            let verdict = segward::evidence::replay::decide_again(&compiled, &key).unwrap();
            prop_assert!(
                segward::evidence::replay::allows(&verdict),
                "{:?} is {} under\n{}",
                key,
                verdict,
                learned_yaml
            );
        }
        prop_assert_eq!(replay(&compiled, &obs).breaks(), 0);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn an_unused_proposal_compiles_and_denies_nothing_that_was_allowed() {
    let logged = (request_draft(), any::<bool>(), any::<bool>(), any::<bool>());
    let cases = (policy(), vec(logged, 1..32));
    let mut runner = runner(128);
    let narrowed_some = std::cell::Cell::new(0usize);
    let result = runner.run(&cases, |(spec, drafts)| {
        let yaml = spec.to_yaml();
        let before = policy::from_text("policy.yaml", &yaml).unwrap();
        let text = log_text(&before, &spec, &drafts);
        let (obs, _) = observe(text);

        let found = segward::evidence::unused::unused(&before, &obs, None, &Default::default());
        narrowed_some.set(narrowed_some.get() + found.narrowed.len());
        let texts = [("policy.yaml".to_owned(), yaml.clone())];
        let rewritten = segward::evidence::unused::rewrite(&before, &texts, &found.narrowed)
            .map_err(TestCaseError::fail)?;
        let after = policy::from_text("policy.yaml", &rewritten[0].1)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", rewritten[0].1)))?;
        let r = replay(&after, &obs);
        prop_assert_eq!(
            r.breaks(),
            0,
            "{:?}\nbefore:\n{}\nafter:\n{}",
            r,
            yaml,
            rewritten[0].1
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(narrowed_some.get() > 0, "no rule was ever narrowed");
}

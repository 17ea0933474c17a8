//! Slices decide as the whole policy does (docs/fleet.md "Slices"): for random policies —
//! ID patterns with `*` and `**`, label selectors, `"*"`, deny and `dry_run` rules, rules
//! whose `expires:` is past or future, revocations by ID, pattern, segment and labels with
//! `since`/`until` — and random requests, `decide` on the whole policy, on the slice of the
//! destination (what its inbound sidecar holds) and on the slice of the source (its
//! outbound sidecar) give the same decision, reason and rule; `decide_connection` too.
//!
//! The same for the slice of an ID pattern (what `policy slice --for PATTERN` and `--per`
//! write), on every request one of whose parties the pattern matches. Label selectors facing
//! any peer make slices classify peers through synthesized segments (docs/fleet.md "What a
//! slice holds"); the test checks that a fair share of slices do.
//!
//! The policies come from `support::policy_gen` (shared with `policy_props`), with the
//! expiries and the map-form `revoked:` entries added here.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt::Write as _;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use segward::identity::SpiffeId;
use segward::path::normalize;
use segward::policy::pattern::IdentityPattern;
use segward::policy::{
    self, CompiledPolicy, Fleet, PolicySource, Reason, Request, Scope, Verdict, unix_now,
};

use crate::support::policy_gen::{
    IdPattern, Labels, PolicySpec, RequestSpec, SEGMENTS, document, id_pattern, policy,
    request_draft,
};

const REQUESTS_PER_POLICY: usize = 8;
const SINCE: &str = "2019-01-01T00:00:00Z";
const PAST: &str = "2020-01-01T00:00:00Z";
const FUTURE: &str = "2099-01-01T00:00:00Z";

/// A `revoked:` map entry: its scope and whether it has `since:` and a past/future `until:`.
#[derive(Debug, Clone)]
enum Entry {
    Identity(IdPattern),
    Segment(usize),
    Labels(Labels),
}

/// The extras a generated policy gets: per rule an optional past/future `expires:`, and
/// map-form revocations with an optional `since:` and an optional past/future `until:`.
#[derive(Debug, Clone)]
struct Extras {
    expires: Vec<Option<bool>>,
    revoked: Vec<(Entry, bool, Option<bool>)>,
}

fn extras() -> impl Strategy<Value = Extras> {
    let labels = prop_oneof![
        Just(vec![("env", "prod")]),
        Just(vec![("env", "staging")]),
        Just(vec![("tier", "critical")]),
    ];
    let entry = prop_oneof![
        id_pattern().prop_map(Entry::Identity),
        (0..SEGMENTS).prop_map(Entry::Segment),
        labels.prop_map(Entry::Labels),
    ];
    let expiry = || option::weighted(0.3, any::<bool>());
    (
        vec(expiry(), 12),
        vec((entry, any::<bool>(), expiry()), 0..=2),
    )
        .prop_map(|(expires, revoked)| Extras { expires, revoked })
}

/// The policy as YAML, with the extras written in.
fn yaml(spec: &PolicySpec, extras: &Extras) -> String {
    let mut text = document(&spec.segments, &spec.rules, &[]);
    for (rule, past) in spec.rules.iter().zip(&extras.expires) {
        let Some(past) = past else { continue };
        let line = format!("  - name: \"{}\"\n", rule.name);
        let at = if *past { PAST } else { FUTURE };
        text = text.replace(&line, &format!("{line}    expires: \"{at}\"\n"));
    }
    let mut revoked = String::new();
    for p in &spec.revoked {
        let _ = writeln!(revoked, "  - \"{p}\"");
    }
    for (entry, since, until) in &extras.revoked {
        let scope = match entry {
            Entry::Identity(p) => format!("identity: \"{p}\""),
            Entry::Segment(s) => format!("segment: s{s}"),
            // An entry whose labels select no segment is invalid: leave it out.
            Entry::Labels(l)
                if !spec
                    .segments
                    .iter()
                    .any(|s| l.iter().all(|kv| s.labels.contains(kv))) =>
            {
                continue;
            }
            Entry::Labels(l) => format!("labels: {{ {}: {} }}", l[0].0, l[0].1),
        };
        let since = if *since {
            format!(", since: \"{SINCE}\"")
        } else {
            String::new()
        };
        let until = until.map_or(String::new(), |past| {
            format!(", until: \"{}\"", if past { PAST } else { FUTURE })
        });
        let _ = writeln!(revoked, "  - {{ {scope}{since}{until} }}");
    }
    if !revoked.is_empty() {
        text.push_str("revoked:\n");
        text.push_str(&revoked);
    }
    text
}

/// The slice of `yaml` for `own`, compiled as a sidecar compiles it.
fn slice_for(yaml: &str, own: &SpiffeId) -> Result<CompiledPolicy, TestCaseError> {
    slice_of(yaml, &Scope::identity(own.clone()))
}

/// The slice of `yaml` for `scope`, compiled as a sidecar compiles it (streamed,
/// `Fleet::compile_texts`), checked against the slice of the whole parsed and checked first:
/// the same version, rules, segments and tests.
fn slice_of(yaml: &str, scope: &Scope) -> Result<CompiledPolicy, TestCaseError> {
    let now = unix_now();
    let source = PolicySource::from_texts([("policy.yaml", yaml)]).map_err(|e| fail(&e, yaml))?;
    let fleet = Fleet::check(&source, now).map_err(|e| fail(&e, yaml))?;
    let whole = fleet.compile(source, scope).map_err(|e| fail(&e, yaml))?;
    let texts = [("policy.yaml".to_owned(), yaml.to_owned())];
    let streamed = Fleet::compile_texts(&texts, scope, now).map_err(|e| fail(&e, yaml))?;
    let shape = |p: &CompiledPolicy| {
        let rules: Vec<_> = p.rules().iter().map(|r| (&r.name, r.at)).collect();
        let segments: Vec<_> = p.segments().iter().map(|s| (&s.name, &s.labels)).collect();
        let counts = (p.fleet_rules(), p.test_count(), p.next_change());
        format!("{} {counts:?} {rules:?} {segments:?}", p.version())
    };
    prop_assert_eq!(shape(&streamed), shape(&whole), "{}", yaml);
    Ok(streamed)
}

/// Whether a slice classifies some peers through synthesized segments.
fn compact(slice: &CompiledPolicy) -> bool {
    slice
        .segments()
        .iter()
        .any(|s| s.name.starts_with("slice."))
}

fn fail(e: &dyn std::fmt::Display, context: &str) -> TestCaseError {
    TestCaseError::fail(format!("generated policy rejected: {e}\n{context}"))
}

fn ids(req: &RequestSpec) -> (SpiffeId, SpiffeId) {
    let id = |i: &dyn ToString| SpiffeId::parse(&i.to_string()).unwrap();
    (id(&req.source), id(&req.destination))
}

/// What is compared: decision, reason, rule.
fn seen(v: Verdict<'_>) -> (policy::Decision, Reason, Option<String>) {
    (v.decision, v.reason, v.rule.map(str::to_owned))
}

#[test]
fn the_slice_of_either_party_decides_every_request_and_connection_as_the_whole_does() {
    let cases = (
        policy(),
        extras(),
        vec(request_draft(), REQUESTS_PER_POLICY),
        id_pattern(),
    );
    let reasons = std::cell::RefCell::new(BTreeSet::new());
    let (smaller, total) = (Cell::new(0usize), Cell::new(0usize));
    let (compacted, by_pattern) = (Cell::new(0usize), Cell::new(0usize));
    let result = runner(384).run(&cases, |(spec, extras, drafts, scope)| {
        let text = yaml(&spec, &extras);
        let whole = policy::from_text("policy.yaml", &text).map_err(|e| fail(&e, &text))?;
        let pattern = IdentityPattern::parse(&scope.to_string()).unwrap();
        let of_pattern = slice_of(&text, &Scope::pattern(pattern.clone()))?;
        for req in drafts.iter().map(|d| d.resolve(&spec)) {
            let (source, destination) = ids(&req);
            let path = normalize(&req.path).unwrap();
            let request = Request {
                source: &source,
                destination: &destination,
                method: req.method,
                path: &path,
            };
            let want = seen(whole.decide(&request));
            let want_l4 = seen(whole.decide_connection(&source, &destination));
            reasons.borrow_mut().insert(want.1.as_str());
            if pattern.matches(&source) || pattern.matches(&destination) {
                by_pattern.set(by_pattern.get() + 1);
                let got = seen(of_pattern.decide(&request));
                prop_assert_eq!(&got, &want, "slice of {}: {}\n{}", scope, req, text);
                let got_l4 = seen(of_pattern.decide_connection(&source, &destination));
                prop_assert_eq!(
                    &got_l4,
                    &want_l4,
                    "slice of {}, L4: {}\n{}",
                    scope,
                    req,
                    text
                );
            }
            for (side, own) in [("inbound", &destination), ("outbound", &source)] {
                let slice = slice_for(&text, own)?;
                total.set(total.get() + 1);
                compacted.set(compacted.get() + usize::from(compact(&slice)));
                if slice.rules().len() < whole.rules().len() {
                    smaller.set(smaller.get() + 1);
                }
                prop_assert_eq!(slice.version(), whole.version());
                let got = seen(slice.decide(&request));
                prop_assert_eq!(&got, &want, "{} slice of {}: {}\n{}", side, own, req, text);
                let got_l4 = seen(slice.decide_connection(&source, &destination));
                prop_assert_eq!(&got_l4, &want_l4, "{} slice, L4: {}\n{}", side, req, text);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Every step decided some request, and slices did leave rules out.
    let reasons = reasons.into_inner();
    for reason in [
        "revoked",
        "deny-rule",
        "allow-rule",
        "dry-run-deny",
        "default-deny",
        "rule-expired",
    ] {
        assert!(
            reasons.contains(reason),
            "{reason} never decided: {reasons:?}"
        );
    }
    assert!(
        smaller.get() * 4 > total.get(),
        "slices rarely smaller: {} of {}",
        smaller.get(),
        total.get()
    );
    // The compact form and the pattern slices were exercised, not just compiled. (A class
    // of one segment carrying exactly the class's labels, frequent in these small policies,
    // keeps that segment as written: ~9 % of slices synthesize one.)
    assert!(
        compacted.get() * 20 > total.get(),
        "slices rarely compact: {} of {}",
        compacted.get(),
        total.get()
    );
    assert!(
        by_pattern.get() > 100,
        "{} pattern requests",
        by_pattern.get()
    );
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

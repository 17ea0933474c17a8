//! Property tests of the policy engine (docs/policy-language.md): random policies, written as YAML and
//! run through parse → compile → decide, agree with a naive reference evaluator — for
//! requests, and for TCP connections (§11: allow rules naming methods or paths never match,
//! deny rules always do), where `explain --tcp`'s verdict must agree too; and the decision
//! never depends on rule order, segment order or how rules are split over files.
//!
//! The reference below works on the generator's data, not on the YAML, and shares no code
//! with `src/policy`: its own pattern matcher, segment membership, selectors and order, its
//! own method comparison and its own upstream spelling of a path (README "Policy language");
//! only the final normalization of that spelling is `segward::path::normalize`.

use std::cell::Cell;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use segward::identity::SpiffeId;
use segward::path::normalize;
use segward::policy::{self, CompiledPolicy, Decision, PolicySource, Request};

use crate::support::policy_gen::{
    Id, IdPattern, MAX_RULES, Part, PolicySpec, RequestSpec, RuleSpec, SEGMENTS, SegmentSpec,
    Selector, document, permutation, policy, request_draft,
};

/// Requests checked against each generated policy.
const REQUESTS_PER_POLICY: usize = 8;

#[test]
fn decide_agrees_with_a_naive_reading_of_section_3() {
    let cases = (policy(), vec(request_draft(), REQUESTS_PER_POLICY));
    // How often each §3 step decided, so a generator drift into trivial cases is caught; and
    // how often a rule decided only thanks to the upstream spelling or to the method's case.
    let steps: [Cell<usize>; STEPS] = Default::default();
    let count = |i: usize| steps[i].set(steps[i].get() + 1);
    let result = runner(512).run(&cases, |(spec, drafts)| {
        let yaml = spec.to_yaml();
        let compiled = compile_one(&yaml)?;
        for req in drafts.iter().map(|d| d.resolve(&spec)) {
            let want = reference(&spec, &req);
            count(step_of(&want));
            if let Some(rule) = spec.rules.iter().find(|r| r.name == want.1) {
                let path = normalize(&req.path).unwrap();
                if !rule_matches(&spec, rule, &req, path.as_str(), None) {
                    count(VIA_UPSTREAM_SPELLING);
                }
                if rule
                    .methods
                    .as_ref()
                    .is_some_and(|m| !m.contains(&req.method))
                {
                    count(VIA_METHOD_CASE);
                }
            }
            let got = engine(&compiled, &req);
            prop_assert_eq!(&got, &want, "request {}\npolicy:\n{}", req, yaml);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let steps = steps.map(Cell::into_inner);
    // Steps: 1 revoked, ambiguous-path, 2 deny rule, 3 allow, 3 would-deny, 4 default-deny;
    // then rules deciding only via the upstream spelling, or only via the method's case.
    assert!(
        steps.iter().all(|&n| n > 0),
        "a §3 step never decided: {steps:?}"
    );
}

#[test]
fn connections_agree_with_a_naive_reading_of_section_11_and_explain_agrees() {
    // docs/l4.md: "allow rules that name `methods` or `paths` do not match a TCP
    // connection; deny rules that name them do" — steps 1–4 otherwise as for requests.
    let cases = (policy(), vec(request_draft(), REQUESTS_PER_POLICY));
    let steps: [Cell<usize>; STEPS] = Default::default();
    let result = runner(256).run(&cases, |(spec, drafts)| {
        let yaml = spec.to_yaml();
        let compiled = compile_one(&yaml)?;
        for req in drafts.iter().map(|d| d.resolve(&spec)) {
            let want = connection_reference(&spec, &req);
            let i = step_of(&want);
            steps[i].set(steps[i].get() + 1);
            let source = SpiffeId::parse(&req.source.to_string()).unwrap();
            let destination = SpiffeId::parse(&req.destination.to_string()).unwrap();
            let verdict = compiled.decide_connection(&source, &destination);
            let got = (verdict.decision, verdict.rule_label().to_owned());
            prop_assert_eq!(&got, &want, "connection {}\npolicy:\n{}", req, yaml);
            let root = segward::path::NormalizedPath::root();
            let explained = compiled.explain_connection_rules(&Request {
                source: &source,
                destination: &destination,
                method: "",
                path: &root,
            });
            prop_assert_eq!(
                explained.verdict,
                verdict,
                "explain --tcp, policy:\n{}",
                yaml
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let steps = steps.map(Cell::into_inner);
    // Revoked, deny rule, allow, would-deny and default-deny all decided some connection
    // (a connection has no path, so never `ambiguous-path`).
    for step in [0, 2, 3, 4, 5] {
        assert!(steps[step] > 0, "a §11 outcome never decided: {steps:?}");
    }
}

/// Coverage counters: the six outcomes of [`step_of`], then these two.
const STEPS: usize = 8;
/// A deny or would-deny rule decided that does not match the normalized path itself.
const VIA_UPSTREAM_SPELLING: usize = 6;
/// The deciding rule lists methods, none spelled as the request's method.
const VIA_METHOD_CASE: usize = 7;

#[test]
fn deny_overrides_allow_whatever_the_rule_order_and_file_split() {
    let cases = (
        policy(),
        permutation(MAX_RULES),
        permutation(SEGMENTS),
        select(&Layout::ALL[..]),
        0..=MAX_RULES,
        vec(request_draft(), REQUESTS_PER_POLICY),
    );
    let result = runner(256).run(
        &cases,
        |(spec, rule_keys, segment_keys, layout, split, drafts)| {
            let shuffled = PolicySpec {
                segments: reorder(&spec.segments, &segment_keys),
                rules: reorder(&spec.rules, &rule_keys),
                revoked: spec.revoked.clone(),
            };
            let files = layout.files(&shuffled, split.min(shuffled.rules.len()));
            let requests: Vec<RequestSpec> = drafts.iter().map(|d| d.resolve(&spec)).collect();
            same_decisions_as_one_file(&spec, &files, &requests)
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The policy written as `files` decides every request as `spec` in one file does, has its
/// version, and denies whenever a (non-dry-run) deny rule matches.
fn same_decisions_as_one_file(
    spec: &PolicySpec,
    [first, second]: &[String; 2],
    requests: &[RequestSpec],
) -> Result<(), TestCaseError> {
    let yaml = spec.to_yaml();
    let original = compile_one(&yaml)?;
    let context = format!("policy:\n{yaml}\nreordered:\n--- one\n{first}--- two\n{second}");
    let texts = [("one.yaml", first.as_str()), ("two.yaml", second.as_str())];
    let source = PolicySource::from_texts(texts).map_err(|e| fail(&e, &context))?;
    let reordered = policy::compile(&source).map_err(|e| fail(&e, &context))?;
    prop_assert_eq!(original.version(), reordered.version(), "{}", context);
    for req in requests {
        let after = engine(&reordered, req);
        prop_assert_eq!(
            &after,
            &engine(&original, req),
            "request {}\n{}",
            req,
            context
        );
        // "Deny always overrides allow; the order of rules never matters." An ambiguous
        // upstream spelling is denied whatever the rules say.
        let denied = match upstream_spelling_checked(req) {
            Err(()) => true,
            Ok(variant) => matching_rules(spec, req, variant.as_deref())
                .iter()
                .any(|r| r.deny && !r.dry_run),
        };
        if denied {
            prop_assert_eq!(after.0, Decision::Deny, "request {}\n{}", req, context);
        }
    }
    Ok(())
}

/// `items` ordered by their keys (`keys` is a permutation at least as long as `items`).
fn reorder<T: Clone>(items: &[T], keys: &[usize]) -> Vec<T> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    order.into_iter().map(|i| items[i].clone()).collect()
}

/// How a shuffled policy is spread over two files.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Segments and revoked in the first file, every rule in the second.
    RulesInSecondFile,
    /// Segments and the first rules in one file, the other rules and revoked in the next.
    SplitSegmentsFirst,
    /// Rules split over both files, segments defined in the second (after their use).
    SplitSegmentsLast,
}

impl Layout {
    const ALL: [Self; 3] = [
        Self::RulesInSecondFile,
        Self::SplitSegmentsFirst,
        Self::SplitSegmentsLast,
    ];

    fn files(self, p: &PolicySpec, split: usize) -> [String; 2] {
        let (head, tail) = p.rules.split_at(split);
        match self {
            Self::RulesInSecondFile => [
                document(&p.segments, &[], &p.revoked),
                document(&[], &p.rules, &[]),
            ],
            Self::SplitSegmentsFirst => [
                document(&p.segments, head, &[]),
                document(&[], tail, &p.revoked),
            ],
            Self::SplitSegmentsLast => [
                document(&[], head, &p.revoked),
                document(&p.segments, tail, &[]),
            ],
        }
    }
}

// ---- the reference evaluator: docs/policy-language.md, read literally ----

/// The decision and its label (rule name, `revoked`, `ambiguous-path` or `default-deny`) by
/// §3 steps 1–4.
fn reference(policy: &PolicySpec, req: &RequestSpec) -> (Decision, String) {
    // Step 1: "source revoked → deny (`revoked`)".
    if policy.revoked.iter().any(|p| id_matches(p, &req.source)) {
        return (Decision::Deny, "revoked".to_owned());
    }
    // "a path whose upstream spelling climbs above the root (`/..;/admin`) is denied as
    // `ambiguous-path`" — whatever the rules say, but after the revoked check.
    let Ok(variant) = upstream_spelling_checked(req) else {
        return (Decision::Deny, "ambiguous-path".to_owned());
    };
    steps_2_to_4(&matching_rules(policy, req, variant.as_deref()))
}

/// §3 steps 2–4 over the matching rules, sorted by name.
fn steps_2_to_4(matching: &[&RuleSpec]) -> (Decision, String) {
    let first = |wanted: fn(&RuleSpec) -> bool| matching.iter().find(|r| wanted(r));
    // Step 2: "any matching `effect: deny` rule → deny (that rule)"; dry_run ones do not decide.
    if let Some(deny) = first(|r| r.deny && !r.dry_run) {
        return (Decision::Deny, deny.name.clone());
    }
    // Step 3: "any matching allow rule → allow (that rule)", unless a dry-run deny would deny.
    if let Some(allow) = first(|r| !r.deny) {
        return match first(|r| r.deny && r.dry_run) {
            Some(dry) => (Decision::WouldDeny, dry.name.clone()),
            None => (Decision::Allow, allow.name.clone()),
        };
    }
    // Step 4: "otherwise → deny (`default-deny`)".
    (Decision::Deny, "default-deny".to_owned())
}

/// §3 steps for a TCP connection: a rule matches when its `from` and `to` select the parties,
/// and, for an allow rule, it names neither methods nor paths.
fn connection_reference(policy: &PolicySpec, req: &RequestSpec) -> (Decision, String) {
    if policy.revoked.iter().any(|p| id_matches(p, &req.source)) {
        return (Decision::Deny, "revoked".to_owned());
    }
    let mut matching: Vec<&RuleSpec> = policy
        .rules
        .iter()
        .filter(|r| r.from.iter().any(|s| selects(policy, s, &req.source)))
        .filter(|r| r.to.iter().any(|s| selects(policy, s, &req.destination)))
        .filter(|r| r.deny || (r.methods.is_none() && r.paths.is_none()))
        .collect();
    matching.sort_by(|a, b| a.name.cmp(&b.name));
    steps_2_to_4(&matching)
}

/// Every rule matching the request, sorted by name (the tie-break between deciding rules).
/// `variant` is the upstream spelling of the path, which deny rules match too.
fn matching_rules<'p>(
    policy: &'p PolicySpec,
    req: &RequestSpec,
    variant: Option<&str>,
) -> Vec<&'p RuleSpec> {
    let path = normalize(&req.path).unwrap();
    let mut out: Vec<&RuleSpec> = policy
        .rules
        .iter()
        .filter(|r| rule_matches(policy, r, req, path.as_str(), variant))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether `rule` matches the request with normalized path `path`; a deny rule (dry-run or
/// not) also matches when its paths match `variant`, an allow rule never by `variant`.
fn rule_matches(
    policy: &PolicySpec,
    rule: &RuleSpec,
    req: &RequestSpec,
    path: &str,
    variant: Option<&str>,
) -> bool {
    let on_path = |p: &str| {
        rule.paths
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|pattern| path_matches(pattern, p)))
    };
    rule.from.iter().any(|s| selects(policy, s, &req.source))
        && rule.to.iter().any(|s| selects(policy, s, &req.destination))
        && rule
            .methods
            .as_ref()
            .is_none_or(|m| m.iter().any(|m| method_matches(m, req.method)))
        && (on_path(path) || (rule.deny && variant.is_some_and(on_path)))
}

/// "A request's method matches ignoring ASCII case"; rule methods are upper case.
fn method_matches(rule_method: &str, request_method: &str) -> bool {
    rule_method.len() == request_method.len()
        && rule_method
            .bytes()
            .zip(request_method.bytes())
            .all(|(r, q)| r == q.to_ascii_uppercase())
}

/// The request path as a lenient upstream routes it, normalized (`Ok(None)` when that is
/// the normalized path itself), or `Err` when normalization rejects that spelling.
fn upstream_spelling_checked(req: &RequestSpec) -> Result<Option<String>, ()> {
    let path = normalize(&req.path).unwrap();
    let raw = upstream_spelling(path.as_str());
    let variant = normalize(&raw).map_err(|_| ())?.into_string();
    Ok((variant != path.as_str()).then_some(variant))
}

/// "`;parameters` cut from each segment (from a raw `;` to the next `/`), and escapes `%XX`
/// decoding to one of `:@!$&'()*+,;=` decoded (so `%3B` also starts parameters)" — before
/// normalization, which the caller applies.
fn upstream_spelling(path: &str) -> String {
    const DECODED: &str = ":@!$&'()*+,;=";
    let mut out = String::new();
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let mut rest = segment;
        while let Some(c) = rest.chars().next() {
            let escaped = rest
                .strip_prefix('%')
                .and_then(|hex| hex.get(..2))
                .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .map(char::from)
                .filter(|c| DECODED.contains(*c));
            let (c, len) = escaped.map_or((c, c.len_utf8()), |e| (e, 3));
            if c == ';' {
                break; // parameters run to the end of the segment
            }
            out.push(c);
            rest = &rest[len..];
        }
    }
    out
}

/// "a segment name; a label map (matches every segment carrying all those labels); `"*"` —
/// any authenticated identity" (even one in no segment).
fn selects(policy: &PolicySpec, selector: &Selector, id: &Id) -> bool {
    let member = |s: &&_| in_segment(s, id);
    match selector {
        Selector::Any => true,
        Selector::Segment(name) => policy
            .segments
            .iter()
            .filter(member)
            .any(|s| &s.name == name),
        Selector::Labels(want) => policy
            .segments
            .iter()
            .filter(member)
            .any(|s| want.iter().all(|label| s.labels.contains(label))),
    }
}

fn in_segment(segment: &SegmentSpec, id: &Id) -> bool {
    segment.identities.iter().any(|p| id_matches(p, id))
}

/// "`*` matches exactly one path segment; `**` (only as the last segment) matches the prefix
/// itself and everything below it. The trust domain is always literal."
fn id_matches(p: &IdPattern, id: &Id) -> bool {
    let depth_ok = if p.globstar {
        id.segments.len() >= p.parts.len()
    } else {
        id.segments.len() == p.parts.len()
    };
    p.trust_domain == id.trust_domain
        && depth_ok
        && p.parts
            .iter()
            .zip(&id.segments)
            .all(|(part, seg)| match part {
                Part::Literal(lit) => lit == seg,
                Part::Star => !seg.is_empty(),
            })
}

/// Exact, `*` for one segment, trailing `**` for the prefix and any depth below; one
/// trailing slash of the request path is ignored, and `/` is matched only by `/` and `/**`.
fn path_matches(pattern: &str, path: &str) -> bool {
    let path = match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    };
    let want = path_segments(pattern);
    let have = path_segments(path);
    let (prefix, globstar) = match want.split_last() {
        Some((&"**", prefix)) => (prefix, true),
        _ => (&want[..], false),
    };
    let depth_ok = if globstar {
        have.len() >= prefix.len()
    } else {
        have.len() == prefix.len()
    };
    depth_ok
        && prefix
            .iter()
            .zip(&have)
            .all(|(w, h)| (*w == "*" && !h.is_empty()) || w == h)
}

/// `/` has no segments; `/a/b` has `a` and `b`.
fn path_segments(path: &str) -> Vec<&str> {
    match path {
        "/" => Vec::new(),
        _ => path[1..].split('/').collect(),
    }
}

// ---- driving the engine ----

fn engine(policy: &CompiledPolicy, req: &RequestSpec) -> (Decision, String) {
    let source = SpiffeId::parse(&req.source.to_string()).unwrap();
    let destination = SpiffeId::parse(&req.destination.to_string()).unwrap();
    let path = normalize(&req.path).unwrap();
    let verdict = policy.decide(&Request {
        source: &source,
        destination: &destination,
        method: req.method,
        path: &path,
    });
    (verdict.decision, verdict.rule_label().to_owned())
}

fn compile_one(yaml: &str) -> Result<CompiledPolicy, TestCaseError> {
    policy::from_text("policy.yaml", yaml).map_err(|e| fail(&e, yaml))
}

fn fail(e: &dyn std::fmt::Display, context: &str) -> TestCaseError {
    TestCaseError::fail(format!("generated policy rejected: {e}\n{context}"))
}

/// Index of the §3 step (and outcome) that decided, for the coverage count.
fn step_of((decision, label): &(Decision, String)) -> usize {
    match (decision, label.as_str()) {
        (Decision::Deny, "revoked") => 0,
        (Decision::Deny, "ambiguous-path") => 1,
        (Decision::Deny, "default-deny") => 5,
        (Decision::Deny, _) => 2,
        (Decision::Allow, _) => 3,
        (Decision::WouldDeny, _) => 4,
    }
}

/// A runner that writes no regression files (`PROPTEST_RNG_SEED` replays a run).
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

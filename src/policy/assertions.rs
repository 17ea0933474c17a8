//! The policy's own assertions: runs its `tests:` against the compiled policy (docs/policy-language.md: "a policy whose
//! tests fail is invalid — rejected at start-up and on reload alike").

use super::compiled::CompiledPolicy;
use super::decide::{Decision, Request};
use super::error::{PolicyError, PolicyErrorKind};
use super::load::PolicySource;
use super::method::MethodSet;
use super::source::{Expect, Spanned, TestDoc};
use crate::identity::SpiffeId;
use crate::path::normalize;

/// What the `tests:` gave: every failing or malformed test, and the suspended ones.
pub struct TestOutcome {
    /// Failing or malformed tests, at their file:line:col.
    pub failures: Vec<PolicyError>,
    /// Tests not run because an in-force containment with `suspend_tests` revokes their
    /// source: (file:line:col, the containment's scope).
    pub suspended: Vec<(String, String)>,
}

/// Runs every test, suspending those whose source a `suspend_tests` containment revokes.
pub fn run_tests(policy: &CompiledPolicy, source: &PolicySource) -> TestOutcome {
    let mut outcome = TestOutcome {
        failures: Vec::new(),
        suspended: Vec::new(),
    };
    let suspending: Vec<_> = policy
        .revocations()
        .iter()
        .filter(|r| r.suspend_tests && !r.lifted)
        .collect();
    for file in &source.files {
        for test in &file.doc.tests {
            let at = test.referenced;
            let from = SpiffeId::parse(&test.value.from.value).ok();
            let by = from.as_ref().and_then(|id| {
                suspending
                    .iter()
                    .find(|r| r.patterns.iter().any(|p| p.matches(id)))
            });
            if let Some(containment) = by {
                let place = format!("{}:{}:{}", file.name, at.line(), at.column());
                outcome.suspended.push((place, containment.scope.clone()));
                continue;
            }
            if let Err((at, kind)) = run_one(policy, test) {
                let (line, col) = (at.line(), at.column());
                outcome
                    .failures
                    .push(PolicyError::at(&file.name, line, col, kind));
            }
        }
    }
    outcome
}

type Failure = (super::source::Location, PolicyErrorKind);

fn run_one(policy: &CompiledPolicy, spanned: &Spanned<TestDoc>) -> Result<(), Failure> {
    let test = &spanned.value;
    let id = |s: &Spanned<String>| {
        SpiffeId::parse(&s.value)
            .map_err(|e| (s.referenced, PolicyErrorKind::BadTestId(e.to_string())))
    };
    let (source, destination) = (id(&test.from)?, id(&test.to)?);
    let path = match &test.path {
        Some(p) => normalize(&p.value)
            .map_err(|e| (p.referenced, PolicyErrorKind::BadTestPath(e.to_string())))?,
        None => normalize("/").map_err(|e| {
            (
                spanned.referenced,
                PolicyErrorKind::BadTestPath(e.to_string()),
            )
        })?,
    };
    let method = test.method.as_ref().map_or("GET", |m| m.value.as_str());
    if let Some(m) = &test.method
        && let Err(hint) = MethodSet::default().insert(&m.value)
    {
        return Err((
            m.referenced,
            PolicyErrorKind::BadMethod(m.value.clone(), hint),
        ));
    }
    let req = Request {
        source: &source,
        destination: &destination,
        method,
        path: &path,
    };
    let verdict = policy.decide(&req);
    let want = match test.expect {
        Expect::Allow => Decision::Allow,
        Expect::Deny => Decision::Deny,
        Expect::WouldDeny => Decision::WouldDeny,
    };
    let rule_ok = test
        .rule
        .as_deref()
        .is_none_or(|r| r == verdict.rule_label());
    if verdict.decision == want && rule_ok {
        return Ok(());
    }
    let expected = match &test.rule {
        Some(rule) => format!("{} (rule {rule})", want.as_str()),
        None => want.as_str().to_owned(),
    };
    let got = verdict.to_string();
    Err((
        spanned.referenced,
        PolicyErrorKind::TestFailed { expected, got },
    ))
}

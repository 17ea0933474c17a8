//! Runs a policy's own `tests:` against the compiled policy (PRODUCT.md §3: "a policy whose
//! tests fail is invalid — rejected at start-up and on reload alike").

use super::compiled::CompiledPolicy;
use super::decide::{Decision, Request};
use super::error::{PolicyError, PolicyErrorKind};
use super::load::PolicySource;
use super::method::MethodSet;
use super::source::{Expect, Spanned, TestDoc};
use crate::identity::SpiffeId;
use crate::path::normalize;

/// Every failing or malformed test, at its file:line:col.
pub fn run_tests(policy: &CompiledPolicy, source: &PolicySource) -> Vec<PolicyError> {
    let mut errors = Vec::new();
    for file in &source.files {
        for test in &file.doc.tests {
            if let Err((at, kind)) = run_one(policy, test) {
                let (line, col) = (at.line(), at.column());
                errors.push(PolicyError::at(&file.name, line, col, kind));
            }
        }
    }
    errors
}

type Failure = (serde_saphyr::Location, PolicyErrorKind);

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

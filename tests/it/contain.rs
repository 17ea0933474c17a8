//! `policy contain` and `policy release` through the real binary (docs/runbook.md): a leaked
//! credential's scope is cut off by one new file in a copy of `policies/`, the folder still
//! checks, the scope reaches nothing, and release gives back exactly the reach there was. Every
//! refusal leaves the folder byte for byte as it was.
//!
//! Tests marked `// needs the revoked-entry map syntax` write `{ identity | segment | labels,
//! reason, since, until }` entries, which the policy loader accepts from issue 15 part 2 on.

use std::fs;
use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::cli::{Output, json, policy_dir, segward_in};

const STAGING: &str = "spiffe://example.org/ns/staging/**";

/// The shipped policy's text.
fn fleet() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/fleet.yaml")).unwrap()
}

/// The shipped policy without its two `tests:` entries about the staging CI runner, which
/// (rightly) refuse any containment of it.
fn fleet_without_ci_runner_tests() -> String {
    let mut out = String::new();
    let mut lines = fleet()
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter();
    while let Some(line) = lines.next() {
        if line.starts_with("  - { from: spiffe://example.org/ns/staging/sa/ci-runner,") {
            lines.next(); // the entry's second line
            continue;
        }
        out.push_str(&line);
        out.push('\n');
    }
    assert_ne!(out, fleet());
    out
}

/// A temporary folder holding `policies/fleet.yaml` with `text`; commands run in it.
fn policies(text: &str) -> TempDir {
    policy_dir(&[("policies/fleet.yaml", text)])
}

/// `segward policy contain policies ARGS…`, run in `dir`.
fn contain(dir: &TempDir, args: &[&str]) -> Output {
    let mut all = vec!["policy", "contain", "policies"];
    all.extend_from_slice(args);
    segward_in(dir.path(), &all)
}

/// `segward policy release policies ID`, run in `dir`.
fn release(dir: &TempDir, id: &str) -> Output {
    segward_in(dir.path(), &["policy", "release", "policies", id])
}

/// `policy reach policies --from FROM --json`.
fn reach_from(dir: &TempDir, from: &str) -> Value {
    let out = segward_in(
        dir.path(),
        &["policy", "reach", "policies", "--from", from, "--json"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    json(&out.stdout)
}

/// Every file of the policy folder, by name, with its content.
fn snapshot(dir: &TempDir) -> Vec<(String, String)> {
    let mut files: Vec<_> = fs::read_dir(dir.path().join("policies"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// 1-based `line:col` of the first occurrence of `needle` in `text`.
fn at(text: &str, needle: &str) -> String {
    text.lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| format!("{}:{}", i + 1, c + 1)))
        .unwrap_or_else(|| panic!("`{needle}` is not in the policy"))
}

/// Asserts a refusal: exit code 1, `stderr` containing `needle`, the folder unchanged.
fn assert_refused(dir: &TempDir, before: &[(String, String)], out: &Output, needle: &str) {
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains(needle), "no `{needle}` in {out:?}");
    assert_eq!(snapshot(dir), before, "a refusal writes nothing");
}

#[test]
fn containing_a_leaked_staging_pattern_writes_one_file_after_which_it_reaches_nothing() {
    // needs the revoked-entry map syntax
    let dir = policies(&fleet_without_ci_runner_tests());
    let before = snapshot(&dir);
    assert!(
        !reach_from(&dir, STAGING)["edges"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let out = contain(
        &dir,
        &[
            "--identity",
            STAGING,
            "--reason",
            "leaked CI token INC-42",
            "--until",
            "24h",
        ],
    );

    assert_eq!(out.code, 0, "{out:?}");
    let (id, file) = out
        .stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("contained "))
        .and_then(|l| l.split_once(": wrote "))
        .unwrap_or_else(|| panic!("no `contained ID: wrote FILE` line: {out:?}"));
    assert_eq!(file, format!("policies/contain-{id}.yaml"));
    let after = snapshot(&dir);
    assert_eq!(after.len(), before.len() + 1, "exactly one new file");
    let (name, text) = &after[0];
    assert_eq!(name, &format!("contain-{id}.yaml"));
    assert!(text.contains("revoked:\n  - { identity: \"spiffe://example.org/ns/staging/**\""));
    assert!(text.contains(&format!("segward policy release policies {id}")));
    for line in [
        "hits:     ci-runner+staging-workloads, staging-workloads",
        "removed:  ci-runner+staging-workloads -> staging-workloads: * /**",
        "every sidecar watching this folder applies it within 2 s; release with: segward \
         policy release policies ",
    ] {
        assert!(out.stdout.contains(line), "no `{line}` in {out:?}");
    }
    let check = segward_in(dir.path(), &["policy", "check", "policies"]);
    assert_eq!(check.code, 0, "{check:?}");
    let reach = reach_from(&dir, STAGING);
    assert_eq!(reach["edges"], Value::Array(vec![]), "{reach}");
    assert!(!reach["revoked_sources"].as_array().unwrap().is_empty());
}

#[test]
fn release_restores_exactly_the_reach_the_containment_removed() {
    // needs the revoked-entry map syntax
    let dir = policies(&fleet_without_ci_runner_tests());
    let (files, reach) = (snapshot(&dir), reach_from(&dir, STAGING));
    let out = contain(
        &dir,
        &["--identity", STAGING, "--reason", "INC-42", "--json"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let contained = json(&out.stdout);
    let id = contained["containment_id"].as_str().unwrap();
    assert_eq!(contained["until"], Value::Null);
    let removed = contained["removed"].as_array().unwrap();
    assert!(!removed.is_empty(), "{contained}");
    assert!(
        removed.iter().all(|c| c["change"] == "removed"),
        "{contained}"
    );

    let out = release(&dir, id);

    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("restored: ci-runner+staging-workloads -> staging-workloads: * /**"),
        "{out:?}"
    );
    assert_eq!(snapshot(&dir), files);
    assert_eq!(
        reach_from(&dir, STAGING),
        reach,
        "the reach JSON is the one before"
    );
    let again = release(&dir, id);
    assert_eq!(again.code, 1, "released twice: {again:?}");
}

#[test]
fn containing_a_scope_the_policy_tests_expect_to_work_is_refused_at_those_tests() {
    // needs the revoked-entry map syntax
    let text = fleet();
    let dir = policies(&text);
    let before = snapshot(&dir);

    let out = contain(&dir, &["--identity", STAGING, "--reason", "INC-42"]);

    // The runner's allowed deploy, and its guard-rail denial (now decided by `revoked`).
    let deploy = at(
        &text,
        "{ from: spiffe://example.org/ns/staging/sa/ci-runner, to: spiffe://example.org/ns/staging/sa/api",
    );
    let guard = at(
        &text,
        "{ from: spiffe://example.org/ns/staging/sa/ci-runner, to: spiffe://example.org/ns/prod/sa/payments",
    );
    for place in [&deploy, &guard] {
        let problem = format!("policies/fleet.yaml:{place}: test failed");
        assert_refused(&dir, &before, &out, &problem);
    }
    assert!(out.stderr.contains("nothing was written"), "{out:?}");
    assert!(
        out.stderr.contains("--suspend-tests"),
        "the refusal says the way out: {out:?}"
    );

    // Asked to, the containment suspends those two tests instead; every other test runs.
    let out = contain(
        &dir,
        &[
            "--identity",
            STAGING,
            "--reason",
            "INC-42",
            "--suspend-tests",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let check = segward_in(dir.path(), &["policy", "check", "policies"]);
    assert_eq!(check.code, 0, "{check:?}");
    for place in [&deploy, &guard] {
        let suspended = format!("policies/fleet.yaml:{place}: warning[test-suspended]");
        assert!(check.stdout.contains(&suspended), "{check:?}");
    }
    assert!(check.stdout.contains("12 tests passed"), "{check:?}");
}

#[test]
fn containing_by_segment_or_labels_revokes_every_class_of_those_segments() {
    // needs the revoked-entry map syntax
    let dir = policies(&fleet_without_ci_runner_tests());

    let out = contain(
        &dir,
        &["--labels", "risk=ci", "--reason", "INC-43", "--json"],
    );

    assert_eq!(out.code, 0, "{out:?}");
    let contained = json(&out.stdout);
    assert_eq!(
        contained["scope"],
        serde_json::json!({"labels": {"risk": "ci"}})
    );
    assert_eq!(contained["segments"], serde_json::json!(["ci-runner"]));
    assert_eq!(
        contained["hits"],
        serde_json::json!(["ci-runner+staging-workloads"])
    );
    assert_eq!(reach_from(&dir, "ci-runner")["edges"], Value::Array(vec![]));
    let out = contain(
        &dir,
        &[
            "--segment",
            "ci-runner",
            "--reason",
            "INC-43",
            "--until",
            "1h",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("segments: ci-runner"), "{out:?}");
    assert!(
        out.stdout.contains("removed:  nothing"),
        "already contained: {out:?}"
    );
    assert_eq!(snapshot(&dir).len(), 3);
}

#[test]
fn containing_an_unknown_segment_is_refused_with_the_closest_name() {
    let dir = policies(&fleet());
    let before = snapshot(&dir);

    let out = contain(&dir, &["--segment", "ci-runnr", "--reason", "INC-42"]);

    assert_refused(&dir, &before, &out, "did you mean `ci-runner`?");
}

#[test]
fn containing_until_a_time_already_past_is_refused() {
    let dir = policies(&fleet());
    let before = snapshot(&dir);
    let until = "2020-01-01T00:00:00Z";

    let out = contain(
        &dir,
        &["--segment", "ci-runner", "--reason", "x", "--until", until],
    );

    assert_refused(&dir, &before, &out, "not in the future");
    let out = contain(
        &dir,
        &["--segment", "ci-runner", "--reason", "x", "--until", "0h"],
    );
    assert_refused(&dir, &before, &out, "--until");
}

#[test]
fn containing_a_malformed_scope_or_outside_a_folder_is_refused() {
    let dir = policies(&fleet());
    let before = snapshot(&dir);
    for (args, needle) in [
        (vec!["--identity", "spiffe://example.org/**/ci"], "`**`"),
        (vec!["--identity", "ci-runner"], "--segment"),
        (vec!["--labels", "risk"], "is not `key=value"),
        (vec!["--labels", "risk=cj"], "`risk` is one of"),
        (
            vec!["--segment", "ci-runner", "--reason", " "],
            "--reason is empty",
        ),
    ] {
        let mut all = args.clone();
        if !all.contains(&"--reason") {
            all.extend(["--reason", "x"]);
        }
        let out = contain(&dir, &all);
        assert_refused(&dir, &before, &out, needle);
    }
    let file = segward_in(
        dir.path(),
        &[
            "policy",
            "contain",
            "policies/fleet.yaml",
            "--segment",
            "ci-runner",
            "--reason",
            "x",
        ],
    );
    assert_refused(&dir, &before, &file, "is not a folder");
    let two_scopes = contain(
        &dir,
        &[
            "--segment",
            "ci-runner",
            "--labels",
            "risk=ci",
            "--reason",
            "x",
        ],
    );
    assert_eq!(two_scopes.code, 2, "a usage error: {two_scopes:?}");
}

#[test]
fn releasing_an_unknown_or_malformed_id_is_refused_and_removes_nothing() {
    let dir = policies(&fleet());
    let before = snapshot(&dir);

    let unknown = release(&dir, "c-20261203-1330-7f3a");

    assert_refused(
        &dir,
        &before,
        &unknown,
        "no containment c-20261203-1330-7f3a in policies",
    );
    for id in [
        "../policies/fleet",
        "fleet",
        "c-20261203-1330-7f3a/../../fleet",
    ] {
        let out = release(&dir, id);
        assert_refused(&dir, &before, &out, "is not a containment id");
    }
}

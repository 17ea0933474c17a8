//! `segward policy check` and `segward policy explain` (docs/cli.md, §3); the other
//! `policy` subcommands (reach, diff, report, contain, release) live in `policy/`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::Outcome;
use crate::policy::analysis::lint::{self, LintOptions};
use crate::policy::{self, CompiledPolicy, PolicyErrors, PolicySource};

mod compare;
mod contain;
mod diff;
mod evidence;
mod explain;
mod learn;
mod log_line;
mod reach;
mod replay;
mod report;
mod sign;
mod slice;
mod unused;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file or folder: syntax, names, patterns, `tests:`, then lints.
    ///
    /// Exit code 0 when valid (warnings included), 1 when invalid; errors are printed as
    /// file:line:col: message.
    #[command(
        after_help = "Docs: docs/cli.md#segward-policy-check; the language and its lints: docs/policy-language.md"
    )]
    Check {
        /// A policy file, or a folder whose *.yaml / *.yml files are merged.
        path: PathBuf,
        /// Treat lint warnings as errors (exit code 1).
        #[arg(long)]
        strict: bool,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// The label whose values are the segmentation boundaries, for the segmentation lints
        /// (`identity-spans-boundary`).
        #[arg(long, value_name = "LABEL", default_value = lint::DEFAULT_BOUNDARY_LABEL)]
        boundary_label: String,
        /// Warn about exceptions (rules with `expires:`) that stop matching within this long
        /// (`30m`, `24h`, `7d`).
        #[arg(long, value_name = "DURATION", default_value = "7d")]
        warn_within: String,
        /// Also require a valid signature (policy.sig in a folder, FILE.sig beside a file) by
        /// this Ed25519 public key (SPKI PEM); repeatable, any one of them will do. A missing,
        /// invalid or unknown-key signature exits 1.
        #[arg(long, value_name = "PUB")]
        verify_key: Vec<PathBuf>,
    },
    /// Decide one request and show why: decision, deciding rule, reason, and every candidate
    /// rule with whether it matched and why not.
    ///
    /// The request comes from --from/--to (with --method, --path), from one decision-log line
    /// (--log-line), or from the line of a log file with a given request id (--request-id with
    /// --log). A logged request is re-evaluated against this policy and compared with what was
    /// logged. Exit code 0 when explained, 1 when the policy, an ID, the path or the log line
    /// is invalid.
    #[command(
        after_help = "Docs: docs/cli.md#segward-policy-explain; the decision order: docs/policy-language.md#decision-order"
    )]
    Explain(explain::ExplainArgs),
    /// Blast radius: every request the identities of --from may make to those of --to, as
    /// edges between identity classes (segments), exactly as `run` decides them.
    ///
    /// Each edge is methods × path patterns minus the patterns deny rules carve out, with the
    /// rules that grant and carve; revoked sources reach nothing; `dry_run` denies are listed
    /// but do not carve. Exit code 0 whether or not anything is reachable, 1 when the policy
    /// is invalid, 2 when a selector is malformed or names no segment.
    #[command(after_help = "Docs: docs/blast-radius.md")]
    Reach(reach::ReachArgs),
    /// The blast-radius effect of a policy change: every pair of identity classes whose reach
    /// was added, removed, widened or narrowed between OLD and NEW.
    ///
    /// Exit code 0, or 3 with --fail-on-widen when any reach grew (for CI gates); 1 when
    /// either policy is invalid.
    #[command(after_help = "Docs: docs/blast-radius.md")]
    Diff(diff::DiffArgs),
    /// Write one self-contained HTML file (no network): the segment graph grouped by the
    /// boundary label, an edge per allowed reach, a search box that highlights an identity's
    /// or segment's blast radius and its callers, and the lint findings.
    ///
    /// Exit code 0 when written, 1 when the policy is invalid or the file cannot be written.
    #[command(after_help = "Docs: docs/blast-radius.md")]
    Report(report::ReportArgs),
    /// Incident containment: revoke an identity, ID pattern, segment or label scope fleet-wide
    /// by writing one containment file (`contain-<ID>.yaml`) into the policy folder.
    ///
    /// The policy with the new file is compiled first, `tests:` included; if it would be
    /// invalid nothing is written. Prints the containment id, the identity classes it hits and
    /// the reach it removes. Exit code 0 when written, 1 when refused (bad scope, `--until` in
    /// the past, invalid policy) — nothing is written then.
    #[command(
        after_help = "Docs: docs/runbook.md (a leaked credential, step by step); docs/cli.md#segward-policy-contain"
    )]
    Contain(contain::ContainArgs),
    /// Lift a containment: remove its `contain-<ID>.yaml` from the policy folder, after
    /// checking that the rest of the policy compiles, and print the reach it restores.
    ///
    /// Exit code 0 when removed, 1 when refused (no such containment, or the policy without it
    /// would be invalid) — nothing is removed then.
    #[command(after_help = "Docs: docs/runbook.md; docs/cli.md#segward-policy-release")]
    Release(contain::ReleaseArgs),
    /// Sign a policy for sidecars that set `policy_verify`: a detached Ed25519 signature over
    /// the policy files' names and bytes, written as policy.sig into a folder (FILE.sig beside
    /// a single file).
    ///
    /// The policy is compiled first, `tests:` included; an invalid policy is not signed.
    /// Exit code 0 when signed, 1 when the policy or the key is invalid.
    #[command(after_help = "Docs: docs/fleet.md#signed-policy; docs/cli.md#segward-policy-sign")]
    Sign(sign::SignArgs),
    /// Write the slice of a policy for a selector (`--for`), or one per namespace, segment or
    /// label value (`--per`, with a kustomization making one ConfigMap per slice), as ordinary
    /// policy folders holding each kept item's original text.
    ///
    /// Output is deterministic: an unchanged slice is byte-identical. A slice whose YAML is
    /// over 1 MiB (what a ConfigMap holds) is written gzip-compressed (`*.yaml.gz`, which
    /// every command and the sidecar read inflated). Exit code 0 when written, 1 when the
    /// policy is invalid, a slice is over 1 MiB as written or cannot be written, 2 when the
    /// selector or --per names nothing or --out would replace a file being sliced.
    #[command(after_help = "Docs: docs/fleet.md#slices")]
    Slice(slice::SliceArgs),
    /// Decide every observed request and connection again under a policy (as of --at) and
    /// report the flips: allow -> deny (the change breaks observed traffic) and deny -> allow
    /// (it admits observed attempts), grouped by direction, source and destination segments
    /// and the deciding rule, with counts, first/last seen and an example.
    ///
    /// Skipped input lines are counted and named by file and line. Exit code 0, or 3 with
    /// --fail-on-break when anything breaks; 1 when the policy is invalid, an input cannot be
    /// read or holds no decision at all; 2 on a bad --at.
    #[command(after_help = "Docs: docs/least-privilege.md#replay")]
    Replay(replay::ReplayArgs),
    /// Propose allow rules from observed traffic: every request and connection that went
    /// through (allow, and audit mode's would-deny), at segment granularity, with the methods
    /// seen and path patterns generalized only where a position varies (ids, UUIDs, hex or
    /// opaque tokens, many distinct values -> `*`; `**` only where depth varies).
    ///
    /// The learned policy is compiled with its `tests:` (observed samples) and the evidence
    /// replayed under it before it is shown. Exit code 0; 1 when the current policy is
    /// invalid, an input cannot be read or holds no decision, or the check finds a break; 2
    /// when --out holds other policy files.
    #[command(after_help = "Docs: docs/least-privilege.md#learn")]
    Learn(learn::LearnArgs),
    /// Report what of a policy the evidence never used: allow rules that decided nothing
    /// (rule-unused), rules granting methods, path patterns or segments never used
    /// (rule-wider-than-used), segment members never seen (identity-unseen).
    ///
    /// --propose DIR writes the policy narrowed to its use (checked: it compiles with its
    /// tests: and replays the evidence with no allow -> deny) and prints the reach it
    /// removes. Exit code 0; 1 when the policy is invalid, an input cannot be read or holds no
    /// decision, or the proposal fails its checks (nothing written); 2 on a bad --since or
    /// --propose folder.
    #[command(after_help = "Docs: docs/least-privilege.md#unused")]
    Unused(unused::UnusedArgs),
}

/// Runs a `policy` subcommand.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<Outcome> {
    match cmd {
        PolicyCommand::Check {
            path,
            strict,
            json,
            boundary_label,
            warn_within,
            verify_key,
        } => {
            let Ok(within) = crate::certs::parse_ttl(&warn_within) else {
                eprintln!(
                    "error: --warn-within {warn_within}: give a duration such as 30m, 24h or 7d"
                );
                return Ok(Outcome::Usage);
            };
            let options = LintOptions {
                boundary_label,
                warn_within_secs: i64::try_from(within.as_secs()).unwrap_or(i64::MAX),
                ..LintOptions::default()
            };
            check(&path, strict, json, &options, &verify_key)
        }
        PolicyCommand::Explain(args) => explain::run(args),
        PolicyCommand::Reach(args) => reach::run(args),
        PolicyCommand::Diff(args) => diff::run(args),
        PolicyCommand::Report(args) => report::run(args),
        PolicyCommand::Contain(args) => contain::contain(args),
        PolicyCommand::Release(args) => contain::release(args),
        PolicyCommand::Sign(args) => sign::run(args),
        PolicyCommand::Slice(args) => slice::run(args),
        PolicyCommand::Replay(args) => replay::run(args),
        PolicyCommand::Learn(args) => learn::run(args),
        PolicyCommand::Unused(args) => unused::run(args),
    }
}

fn check(
    path: &std::path::Path,
    strict: bool,
    json: bool,
    options: &LintOptions,
    verify_keys: &[PathBuf],
) -> anyhow::Result<Outcome> {
    // Read once: the signature is checked over the very texts compiled, as a sidecar does.
    let texts = match PolicySource::read(path) {
        Ok(texts) => texts,
        Err(errors) => return Ok(report_invalid(&errors, json)),
    };
    let signer = match sign::verify(path, &texts, verify_keys, json) {
        Ok(signer) => signer,
        Err(outcome) => return Ok(outcome),
    };
    let compiled = match sign::compile_texts(&texts) {
        Ok(compiled) => compiled,
        Err(errors) => return Ok(report_invalid(&errors, json)),
    };
    let warnings = lint::lint_with(&compiled, options);
    let failed = strict && !warnings.is_empty();
    if json {
        let warnings: Vec<_> = warnings
            .iter()
            .map(|w| json!({"kind": w.kind, "at": w.at, "message": w.message}))
            .collect();
        let mut out = summary(&compiled);
        out["valid"] = json!(!failed);
        if let Some(key) = signer {
            out["signature"] = json!({"key": key.to_string()});
        }
        out["errors"] = json!([]);
        out["warnings"] = json!(warnings);
        out["exceptions"] = json!(exceptions_json(&compiled));
        out["revocations"] = json!(revocations_json(&compiled));
        out["tripwires"] = json!(tripwires_json(&compiled));
        println!("{out}");
    } else {
        warnings.iter().for_each(|w| println!("{w}"));
        print!("{}", exceptions_text(&compiled));
        print!("{}", tripwires_text(&compiled));
        if let Some(key) = signer {
            println!("signature: ok, by key {key}");
        }
        let word = if failed { "invalid (--strict)" } else { "ok" };
        println!(
            "{word}: {} — {} segments, {} rules, {} revoked, {} tests passed, {} warnings, version {}",
            path.display(),
            compiled.segments().len(),
            compiled.rules().len(),
            compiled.revoked().len(),
            compiled.test_count(),
            warnings.len(),
            compiled.version()
        );
    }
    Ok(if failed {
        Outcome::Invalid
    } else {
        Outcome::Success
    })
}

/// Every rule with `expires:` — the time-boxed exceptions — for `--json`.
fn exceptions_json(p: &CompiledPolicy) -> Vec<serde_json::Value> {
    p.rules()
        .iter()
        .filter(|r| r.is_exception())
        .map(|r| {
            json!({
                "rule": r.name,
                "at": p.locate(r.at),
                "expires": r.expires.map(policy::format_time),
                "expired": r.expired,
                "owner": r.owner,
                "ticket": r.ticket,
                "reason": r.reason,
            })
        })
        .collect()
}

/// Every `tripwire: true` rule (docs/probes.md#tripwires), for `--json`.
fn tripwires_json(p: &CompiledPolicy) -> Vec<serde_json::Value> {
    p.rules()
        .iter()
        .filter(|r| r.tripwire)
        .map(|r| json!({"rule": r.name, "at": p.locate(r.at), "expired": r.expired}))
        .collect()
}

/// The tripwire rules, one line each (nothing when none).
fn tripwires_text(p: &CompiledPolicy) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let tripwires: Vec<_> = p.rules().iter().filter(|r| r.tripwire).collect();
    if !tripwires.is_empty() {
        let _ = writeln!(out, "tripwires ({}):", tripwires.len());
    }
    for r in tripwires {
        let state = if r.expired { "  (expired)" } else { "" };
        let _ = writeln!(out, "  {:<32} {}{state}", r.name, p.locate(r.at));
    }
    out
}

/// Every `revoked:` entry with its scope and containment record, for `--json`.
fn revocations_json(p: &CompiledPolicy) -> Vec<serde_json::Value> {
    p.revocations()
        .iter()
        .map(|r| {
            json!({
                "scope": r.scope,
                "at": p.locate(r.at),
                "reason": r.reason,
                "since": r.since.map(policy::format_time),
                "until": r.until.map(policy::format_time),
                "lifted": r.lifted,
            })
        })
        .collect()
}

/// The exceptions and the containments with an end, one line each (nothing when none).
fn exceptions_text(p: &CompiledPolicy) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let exceptions: Vec<_> = p.rules().iter().filter(|r| r.is_exception()).collect();
    if !exceptions.is_empty() {
        let _ = writeln!(out, "exceptions ({}):", exceptions.len());
    }
    for r in exceptions {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "  {:<32} {} {:<22} owner {:<12} ticket {:<12} {}  {}",
            r.name,
            if r.expired { "expired" } else { "expires" },
            r.expires.map(policy::format_time).unwrap_or_default(),
            dash(&r.owner),
            dash(&r.ticket),
            dash(&r.reason),
            p.locate(r.at)
        );
    }
    let contained: Vec<_> = p
        .revocations()
        .iter()
        .filter(|r| r.reason.is_some() || r.until.is_some())
        .collect();
    if !contained.is_empty() {
        let _ = writeln!(out, "containments ({}):", contained.len());
    }
    for r in contained {
        let until = match (r.until, r.lifted) {
            (Some(t), true) => format!("lifted {}", policy::format_time(t)),
            (Some(t), false) => format!("until {}", policy::format_time(t)),
            (None, _) => "until released".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:<40} {until:<28} {}  {}",
            r.scope,
            r.reason.as_deref().unwrap_or("-"),
            p.locate(r.at)
        );
    }
    out
}

fn summary(p: &CompiledPolicy) -> serde_json::Value {
    json!({
        "version": p.version(),
        "files": p.files(),
        "segments": p.segments().len(),
        "rules": p.rules().len(),
        "revoked": p.revoked().len(),
        "tests": p.test_count(),
    })
}

pub(super) fn report_invalid(errors: &PolicyErrors, json: bool) -> Outcome {
    if json {
        let list: Vec<_> = errors
            .0
            .iter()
            .map(|e| json!({"file": e.file, "line": e.line, "col": e.col, "message": e.kind.to_string()}))
            .collect();
        println!(
            "{}",
            json!({"valid": false, "errors": list, "warnings": []})
        );
    } else {
        eprintln!("{errors}");
        eprintln!("invalid: {} error(s)", errors.0.len());
    }
    Outcome::Invalid
}

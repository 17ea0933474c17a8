//! `segward policy check` and `segward policy explain` (PRODUCT.md §1, §3).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::Outcome;
use crate::identity::SpiffeId;
use crate::path::normalize;
use crate::policy::{self, CompiledPolicy, Explanation, PolicyErrors, Request, lint::lint};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file or folder: syntax, names, patterns, `tests:`, then lints.
    ///
    /// Exit code 0 when valid (warnings included), 1 when invalid; errors are printed as
    /// file:line:col: message.
    Check {
        /// A policy file, or a folder whose *.yaml / *.yml files are merged.
        path: PathBuf,
        /// Treat lint warnings as errors (exit code 1).
        #[arg(long)]
        strict: bool,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Decide one request and show why: decision, deciding rule, reason, matching rules.
    Explain {
        /// A policy file or folder.
        path: PathBuf,
        /// Source SPIFFE ID (the caller).
        #[arg(long, value_name = "ID")]
        from: String,
        /// Destination SPIFFE ID (the workload called).
        #[arg(long, value_name = "ID")]
        to: String,
        /// HTTP method, case-sensitive as on the wire.
        #[arg(long, default_value = "GET")]
        method: String,
        /// Request path; normalized exactly as the proxy does; the query is ignored.
        #[arg(long = "path", value_name = "PATH", default_value = "/")]
        request_path: String,
        /// Print the decision as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `policy` subcommand.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<Outcome> {
    match cmd {
        PolicyCommand::Check { path, strict, json } => check(&path, strict, json),
        PolicyCommand::Explain {
            path,
            from,
            to,
            method,
            request_path,
            json,
        } => explain(&path, &from, &to, &method, &request_path, json),
    }
}

fn check(path: &std::path::Path, strict: bool, json: bool) -> anyhow::Result<Outcome> {
    let compiled = match policy::load(path) {
        Ok(p) => p,
        Err(errors) => return Ok(report_invalid(&errors, json)),
    };
    let warnings = lint(&compiled);
    let failed = strict && !warnings.is_empty();
    if json {
        let warnings: Vec<_> = warnings
            .iter()
            .map(|w| json!({"kind": w.kind, "at": w.at, "message": w.message}))
            .collect();
        let mut out = summary(&compiled);
        out["valid"] = json!(!failed);
        out["errors"] = json!([]);
        out["warnings"] = json!(warnings);
        println!("{out}");
    } else {
        warnings.iter().for_each(|w| println!("{w}"));
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

fn report_invalid(errors: &PolicyErrors, json: bool) -> Outcome {
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

fn explain(
    path: &std::path::Path,
    from: &str,
    to: &str,
    method: &str,
    request_path: &str,
    json: bool,
) -> anyhow::Result<Outcome> {
    let compiled = match policy::load(path) {
        Ok(p) => p,
        Err(errors) => return Ok(report_invalid(&errors, json)),
    };
    let source = SpiffeId::parse(from).with_context(|| format!("--from `{from}`"))?;
    let destination = SpiffeId::parse(to).with_context(|| format!("--to `{to}`"))?;
    let without_query = request_path.split('?').next().unwrap_or(request_path);
    let normalized = normalize(without_query)
        .with_context(|| format!("--path `{request_path}` would be refused with 400"))?;
    let req = Request {
        source: &source,
        destination: &destination,
        method,
        path: &normalized,
    };
    let explanation = compiled.explain(&req);
    if json {
        println!("{}", explain_json(&compiled, &req, &explanation));
    } else {
        print!("{}", explain_text(&compiled, &req, &explanation));
    }
    Ok(Outcome::Success)
}

fn explain_json(p: &CompiledPolicy, req: &Request<'_>, e: &Explanation<'_>) -> serde_json::Value {
    let matched: Vec<_> = e
        .matched
        .iter()
        .map(|r| json!({"name": r.name, "effect": effect(r), "at": p.locate(r.at)}))
        .collect();
    json!({
        "decision": e.verdict.decision.as_str(),
        "rule": e.verdict.rule_label(),
        "reason": e.verdict.reason.as_str(),
        "policy_version": p.version(),
        "source_id": req.source.as_str(),
        "destination_id": req.destination.as_str(),
        "method": req.method,
        "path": req.path.as_str(),
        "source_segments": e.source_segments,
        "destination_segments": e.destination_segments,
        "matched_rules": matched,
    })
}

fn explain_text(p: &CompiledPolicy, req: &Request<'_>, e: &Explanation<'_>) -> String {
    let segs = |s: &[&str]| {
        if s.is_empty() {
            "no segment".to_owned()
        } else {
            s.join(", ")
        }
    };
    let mut out = format!(
        "decision:       {}\nrule:           {}\nreason:         {}\nsource:         {} ({})\ndestination:    {} ({})\nrequest:        {} {}\npolicy version: {}\n",
        e.verdict.decision.as_str(),
        e.verdict.rule_label(),
        e.verdict.reason.as_str(),
        req.source,
        segs(&e.source_segments),
        req.destination,
        segs(&e.destination_segments),
        req.method,
        req.path,
        p.version(),
    );
    if e.matched.is_empty() {
        out.push_str("matching rules: none\n");
    } else {
        out.push_str("matching rules:\n");
        for r in &e.matched {
            out.push_str(&format!(
                "  {:<15} {:<40} {}\n",
                effect(r),
                r.name,
                p.locate(r.at)
            ));
        }
    }
    out
}

fn effect(rule: &policy::Rule) -> &'static str {
    match (rule.effect, rule.dry_run) {
        (policy::source::Effect::Allow, _) => "allow",
        (policy::source::Effect::Deny, false) => "deny",
        (policy::source::Effect::Deny, true) => "deny (dry run)",
    }
}

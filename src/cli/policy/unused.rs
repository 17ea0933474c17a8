//! `segward policy unused POLICY --log FILE... [--since 30d] [--propose DIR]`
//! (docs/least-privilege.md#unused): the allow rules the evidence never used or used more
//! narrowly than granted, the segment members never seen; `--propose DIR` writes the policy
//! narrowed to its use (checked: it compiles with its `tests:` and replays the evidence with
//! no allow -> deny) and prints the reach it removes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};

use super::evidence::{self, Evidence, Inputs};
use super::{Outcome, report_invalid};
use crate::atomic_file::AtomicWrite;
use crate::evidence::replay::replay;
use crate::evidence::unused::{Unused, asserted_rules, rewrite, unused};
use crate::policy::analysis::{Change, Diff, Layout, changes_text, diff};
use crate::policy::{self, CompiledPolicy, PolicySource};

/// `policy unused` arguments.
#[derive(Debug, Args)]
pub struct UnusedArgs {
    /// The policy to examine (file or folder).
    policy: PathBuf,
    #[command(flatten)]
    inputs: Inputs,
    /// Count only evidence last seen within this long before now (`30d`, `12h`); evidence
    /// without a time counts.
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Write the policy narrowed to its use into DIR (one file per policy file, comments
    /// kept; DIR must hold no policy file) and print the reach it removes.
    #[arg(long, value_name = "DIR")]
    propose: Option<PathBuf>,
    /// Print `{policy_version, findings: [{kind, subject, at, message}], considered,
    /// not_allowed, older, proposal}` as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// A proposal that was checked and written.
struct Proposal {
    dir: PathBuf,
    diff: Diff,
    replayed: u64,
}

/// Runs `policy unused`.
pub(super) fn run(args: UnusedArgs) -> anyhow::Result<Outcome> {
    let since = match args
        .since
        .as_deref()
        .map(crate::certs::parse_ttl)
        .transpose()
    {
        Ok(d) => d.map(|d| policy::unix_now() - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)),
        Err(e) => {
            eprintln!("error: --since: {e}");
            return Ok(Outcome::Usage);
        }
    };
    if let Some(dir) = &args.propose
        && let Some(problem) = unfit_out(dir, &args.policy)
    {
        eprintln!("error: --propose {}: {problem}", dir.display());
        return Ok(Outcome::Usage);
    }
    let compiled = match evidence::load_policy(&args.policy, None, args.json) {
        Ok(p) => p,
        Err(outcome) => return Ok(outcome),
    };
    let evidence = match args.inputs.read() {
        Ok(e) => e,
        Err(outcome) => return Ok(outcome),
    };
    let keep = match PolicySource::load(&args.policy) {
        Ok(source) => asserted_rules(&compiled, &source),
        Err(errors) => return Ok(report_invalid(&errors, args.json)),
    };
    let found = unused(&compiled, &evidence.observations, since, &keep);
    let proposal = match &args.propose {
        Some(dir) => match propose(&args.policy, &compiled, &found, &evidence, dir, args.json)? {
            Ok(p) => Some(p),
            Err(outcome) => return Ok(outcome),
        },
        None => None,
    };
    if args.json {
        println!(
            "{}",
            to_json(&compiled, &found, proposal.as_ref(), &evidence)
        );
    } else {
        eprint!("{}", evidence::notes(&evidence));
        print!("{}", text(&args, &compiled, &found, proposal.as_ref()));
    }
    Ok(Outcome::Success)
}

/// Why `dir` cannot receive the proposal, if it cannot.
fn unfit_out(dir: &Path, policy: &Path) -> Option<String> {
    let same = |a: &Path, b: &Path| {
        a.canonicalize()
            .ok()
            .zip(b.canonicalize().ok())
            .is_some_and(|(a, b)| a == b)
    };
    if same(dir, policy)
        || policy
            .parent()
            .is_some_and(|p| policy.is_file() && same(dir, p))
    {
        return Some("it is the policy being examined; give another folder".to_owned());
    }
    let entries = std::fs::read_dir(dir).ok()?;
    let other = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))?;
    Some(format!(
        "it holds {}; give an empty or new folder",
        other.display()
    ))
}

/// Rewrites, checks and writes the narrowed policy.
fn propose(
    path: &Path,
    compiled: &CompiledPolicy,
    found: &Unused,
    evidence: &Evidence,
    dir: &Path,
    json: bool,
) -> anyhow::Result<Result<Proposal, Outcome>> {
    let texts = match PolicySource::read(path) {
        Ok(t) => t,
        Err(errors) => return Ok(Err(report_invalid(&errors, json))),
    };
    let rewritten = match rewrite(compiled, &texts, &found.narrowed) {
        Ok(r) => r,
        Err(why) => {
            eprintln!("error: --propose: {why}");
            return Ok(Err(Outcome::Invalid));
        }
    };
    let named: Vec<(String, String)> = rewritten
        .into_iter()
        .map(|(name, text)| {
            let base = Path::new(&name)
                .file_name()
                .map_or(name.clone(), |b| b.to_string_lossy().into_owned());
            (base, text)
        })
        .collect();
    let source = PolicySource::from_texts(named.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    let narrowed = match source.and_then(|s| policy::compile(&s)) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!(
                "error: --propose: the narrowed policy is invalid (its tests: may assert access the \
                 evidence never used); nothing written:\n{errors}"
            );
            return Ok(Err(Outcome::Invalid));
        }
    };
    let check = replay(&narrowed, &evidence.observations);
    if check.breaks() > 0 {
        eprintln!(
            "error: --propose: the narrowed policy would deny {} observed request(s) (older \
             than --since?); nothing written",
            check.breaks()
        );
        return Ok(Err(Outcome::Invalid));
    }
    let old = policy::reach_texts(compiled, "*", "*").map_err(|e| anyhow::anyhow!("{e}"))?;
    let new = policy::reach_texts(&narrowed, "*", "*").map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(dir)?;
    for (name, text) in &named {
        AtomicWrite::new()
            .write(&dir.join(name), text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", dir.join(name).display()))?;
    }
    Ok(Ok(Proposal {
        dir: dir.to_owned(),
        diff: diff(&old, &new),
        replayed: check.replayed,
    }))
}

fn text(
    args: &UnusedArgs,
    compiled: &CompiledPolicy,
    found: &Unused,
    proposal: Option<&Proposal>,
) -> String {
    let mut out = format!(
        "unused in {} ({}): {} observed request(s) and connection(s) that went through decided under it",
        args.policy.display(),
        compiled.version(),
        found.considered
    );
    if found.older > 0 {
        let _ = write!(out, ", {} older than --since left out", found.older);
    }
    out.push('\n');
    if found.not_allowed > 0 {
        let _ = writeln!(
            out,
            "  {} of them this policy does not allow (see `policy replay`)",
            found.not_allowed
        );
    }
    if found.findings.is_empty() {
        out.push_str("every allow rule, method, path pattern and segment member was used\n");
    }
    for f in &found.findings {
        let _ = writeln!(
            out,
            "{:<21} {}  ({}): {}",
            f.kind, f.subject, f.at, f.message
        );
    }
    if found.sampled {
        out.push_str("some lines were sampled: \"never used\" means never seen in the sample\n");
    }
    if let Some(p) = proposal {
        let _ = writeln!(
            out,
            "proposal written to {}: replays the evidence with 0 allow -> deny ({} replayed); reach it removes: {} removed, {} narrowed",
            p.dir.display(),
            p.replayed,
            p.diff.count(Change::Removed),
            p.diff.count(Change::Narrowed)
        );
        out.push_str(&changes_text(&p.diff, Layout::Review));
    }
    out
}

fn to_json(
    compiled: &CompiledPolicy,
    found: &Unused,
    proposal: Option<&Proposal>,
    evidence: &Evidence,
) -> Value {
    let findings: Vec<Value> = found
        .findings
        .iter()
        .map(|f| json!({"kind": f.kind, "subject": f.subject, "at": f.at, "message": f.message}))
        .collect();
    json!({
        "policy_version": compiled.version(),
        "findings": findings,
        "considered": found.considered,
        "not_allowed": found.not_allowed,
        "older": found.older,
        "counts_are_lower_bounds": found.sampled,
        "proposal": proposal.map(|p| json!({
            "dir": p.dir.display().to_string(),
            "replayed": p.replayed,
            "breaks": 0,
            "changes": p.diff.changes,
        })),
        "input": evidence::input_json(evidence),
    })
}

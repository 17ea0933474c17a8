//! `segward policy learn --log FILE... [--policy CURRENT] [--out DIR]`
//! (docs/least-privilege.md#learn): allow rules proposed from the traffic that went through,
//! as `learned.yaml` — with --policy, a file that joins the current policy (its segments
//! reused, not repeated) and `--out` writes both as one valid policy folder. Checked before
//! it is shown: the joined policy compiles with every `tests:` (the learned ones are the
//! observed samples it allows), and replaying the evidence under it flips no allow to deny.
//! With --policy, the reach `diff` from the current policy to the joined one: what learning
//! grants.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};

use super::evidence::{self, Evidence, Inputs};
use super::{Outcome, report_invalid};
use crate::atomic_file::AtomicWrite;
use crate::evidence::learn::{Joined, Learned, join, learn};
use crate::evidence::replay::{Replay, replay};
use crate::policy::analysis::{Diff, Layout, changes_text, diff};
use crate::policy::{self, CompiledPolicy, PolicySource};

/// The file `--out` writes.
pub const LEARNED_FILE: &str = "learned.yaml";

/// `policy learn` arguments.
#[derive(Debug, Args)]
pub struct LearnArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// The policy in force (file or folder): its segments are reused for the identities they
    /// hold, what it already allows is not learned again, learned.yaml joins its files, and
    /// the reach diff from it to the joined policy is printed.
    #[arg(long, value_name = "CURRENT")]
    policy: Option<PathBuf>,
    /// Write a policy folder ready to enforce: learned.yaml, beside a copy of the --policy
    /// files it joins (DIR is created; it must hold no policy file). Without it, learned.yaml
    /// goes to stdout and the summary to stderr.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print `{rules, segments, covered, unusable, check, diff, yaml}` as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `policy learn`.
pub(super) fn run(args: LearnArgs) -> anyhow::Result<Outcome> {
    let current = match &args.policy {
        Some(path) => match evidence::load_policy(path, None, args.json) {
            Ok(p) => Some(p),
            Err(outcome) => return Ok(outcome),
        },
        None => None,
    };
    if let Some(dir) = &args.out
        && let Some(other) = other_policy_file(dir)
    {
        eprintln!(
            "error: --out {}: it holds {}, which a policy folder would merge with the learned \
             rules; give an empty or new folder",
            dir.display(),
            other.display()
        );
        return Ok(Outcome::Usage);
    }
    let evidence = match args.inputs.read() {
        Ok(e) => e,
        Err(outcome) => return Ok(outcome),
    };
    // The files the learned rules join: the current policy's (their names without folders).
    let joined: Vec<(String, String)> = match &args.policy {
        Some(path) => match PolicySource::read(path) {
            Ok(texts) => texts
                .into_iter()
                .map(|(name, text)| (base_name(&name), text))
                .collect(),
            Err(errors) => return Ok(report_invalid(&errors, args.json)),
        },
        None => Vec::new(),
    };
    if joined.iter().any(|(name, _)| name == LEARNED_FILE) {
        eprintln!(
            "error: --policy already holds a {LEARNED_FILE}: fold it in (or rename it) first"
        );
        return Ok(Outcome::Usage);
    }
    let mut learned = learn(&evidence.observations, current.as_ref());
    let header = header(&evidence, &learned);
    let Joined {
        yaml,
        policy: compiled,
        dropped,
    } = match join(&mut learned, &header, &joined, LEARNED_FILE) {
        Ok(j) => j,
        Err(errors) => {
            eprintln!(
                "error: the learned policy does not compile (a bug: please report it):\n{errors}"
            );
            return Ok(Outcome::Invalid);
        }
    };
    let check = replay(&compiled, &evidence.observations);
    let reach_diff = match &current {
        Some(current) => Some(reach_diff(current, &compiled)?),
        None => None,
    };
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let files = joined.iter().map(|(n, t)| (n.as_str(), t.as_str()));
        for (name, text) in files.chain([(LEARNED_FILE, yaml.as_str())]) {
            AtomicWrite::new()
                .write(&dir.join(name), text)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", dir.join(name).display()))?;
        }
    }
    if args.json {
        println!(
            "{}",
            to_json(&learned, &yaml, &check, reach_diff.as_ref(), &evidence)
        );
    } else {
        let summary = summary(
            &args,
            &learned,
            &check,
            reach_diff.as_ref(),
            &evidence,
            dropped,
        );
        if args.out.is_some() {
            print!("{summary}");
        } else {
            print!("{yaml}");
            eprint!("{summary}");
        }
    }
    Ok(if check.breaks() > 0 {
        Outcome::Invalid
    } else {
        Outcome::Success
    })
}

/// A `*.yaml`/`*.yml` in `dir` other than the learned file.
fn other_policy_file(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
        let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
        yaml && p.file_name().is_some_and(|n| n != LEARNED_FILE)
    })
}

/// The last part of a path, as the file's name in a written folder.
fn base_name(name: &str) -> String {
    Path::new(name)
        .file_name()
        .map_or_else(|| name.to_owned(), |b| b.to_string_lossy().into_owned())
}

fn header(evidence: &Evidence, learned: &Learned) -> String {
    let bound = if learned.sampled {
        " (sampled lines: counts are lower bounds)"
    } else {
        ""
    };
    format!(
        "Learned by `segward policy learn` from {} observed request(s) and connection(s) that went \
         through ({} distinct){bound}.\nReview before enforcing: every rule allows what was seen, at segment granularity.",
        learned.covered,
        evidence.observations.len()
    )
}

fn reach_diff(current: &CompiledPolicy, learned: &CompiledPolicy) -> anyhow::Result<Diff> {
    let old = policy::reach_texts(current, "*", "*").map_err(|e| anyhow::anyhow!("{e}"))?;
    let new = policy::reach_texts(learned, "*", "*").map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(diff(&old, &new))
}

fn summary(
    args: &LearnArgs,
    learned: &Learned,
    check: &Replay,
    reach: Option<&Diff>,
    evidence: &Evidence,
    dropped: usize,
) -> String {
    let mut out = evidence::notes(evidence);
    let _ = writeln!(
        out,
        "learned {} rule(s) over {} segment(s) from {} request(s) and connection(s) that went through",
        learned.rules.len(),
        learned.segments.len(),
        learned.covered
    );
    if learned.already_allowed > 0 {
        let _ = writeln!(
            out,
            "{} request(s) and connection(s) the current policy already allows: nothing to learn",
            learned.already_allowed
        );
    }
    if learned.unusable > 0 {
        let _ = writeln!(
            out,
            "not learned from: {} with an ID that is not a SPIFFE ID, a method that is not a token or a path no rule can allow (ambiguous-path)",
            learned.unusable
        );
    }
    if dropped > 0 {
        let _ = writeln!(
            out,
            "{dropped} sample(s) stay refused by the current policy's deny rules: not written as tests"
        );
    }
    let _ = writeln!(
        out,
        "check: replaying the evidence under the learned policy: {} allow -> deny",
        check.breaks()
    );
    if let Some(dir) = &args.out {
        let _ = writeln!(out, "wrote {}", dir.join(LEARNED_FILE).display());
    }
    if let (Some(d), Some(path)) = (reach, &args.policy) {
        let _ = writeln!(
            out,
            "reach from {} to the learned policy: {} added, {} removed, {} widened, {} narrowed, {} changed",
            path.display(),
            d.count(crate::policy::analysis::Change::Added),
            d.count(crate::policy::analysis::Change::Removed),
            d.count(crate::policy::analysis::Change::Widened),
            d.count(crate::policy::analysis::Change::Narrowed),
            d.count(crate::policy::analysis::Change::Changed),
        );
        out.push_str(&changes_text(d, Layout::Review));
    }
    out
}

fn to_json(
    learned: &Learned,
    yaml: &str,
    check: &Replay,
    reach: Option<&Diff>,
    evidence: &Evidence,
) -> Value {
    let rules: Vec<Value> = learned
        .rules
        .iter()
        .map(|r| {
            let paths = r.paths.as_ref().map(|ps| {
                ps.iter()
                    .map(|p| {
                        json!({
                            "pattern": p.pattern,
                            "count": p.stats.count,
                            "distinct": p.distinct,
                            "first_seen": evidence::time_json(p.stats.first),
                            "last_seen": evidence::time_json(p.stats.last),
                            "sample": p.sample,
                        })
                    })
                    .collect::<Vec<_>>()
            });
            json!({
                "name": r.name,
                "from": r.from,
                "to": r.to,
                "methods": r.methods,
                "paths": paths,
                "count": r.stats.count,
                "first_seen": evidence::time_json(r.stats.first),
                "last_seen": evidence::time_json(r.stats.last),
            })
        })
        .collect();
    let segments: Vec<Value> = learned
        .segments
        .iter()
        .map(|s| json!({"name": s.name, "identities": s.identities, "labels": s.labels, "reused": s.reused}))
        .collect();
    json!({
        "rules": rules,
        "segments": segments,
        "covered": learned.covered,
        "already_allowed": learned.already_allowed,
        "unusable": learned.unusable,
        "counts_are_lower_bounds": learned.sampled,
        "check": {"breaks": check.breaks(), "replayed": check.replayed},
        "diff": reach.map(|d| json!({"grows": d.grows(), "changes": d.changes})),
        "input": evidence::input_json(evidence),
        "yaml": yaml,
    })
}

//! The inputs `policy replay`, `learn` and `unused` share (docs/least-privilege.md#inputs):
//! `--log FILE...` (decision logs: many files, gzip, `-` for stdin) and `--observations
//! FILE...` (JSON lines or CSV), read into one [`Observations`]; the skipped lines reported
//! on stderr (text) or in the `--json` answer, never passed over in silence.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};

use super::{Outcome, report_invalid};
use crate::evidence::read::{self, Read};
use crate::evidence::{Observations, time};
use crate::policy::{self, CompiledPolicy, PolicySource};

/// Where the evidence comes from: at least one of --log / --observations.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Inputs {
    /// Decision-log files as the sidecars write them (JSON lines; gzip too, `-` for stdin).
    /// Several may follow one --log, and --log may be repeated.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    log: Vec<PathBuf>,
    /// Observations aggregated elsewhere (JSON lines or CSV with the columns source_id,
    /// destination_id, direction, protocol, method, path, decision, rule, reason, count,
    /// first_seen, last_seen, sampled).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    observations: Vec<PathBuf>,
}

/// The observations of every input, and what reading them went through.
pub(super) struct Evidence {
    pub observations: Observations,
    pub read: Read,
}

impl Inputs {
    /// Reads every input; an input that cannot be opened, or inputs holding no decision at
    /// all, are an error (exit 1): an empty answer must never pass for a clean one.
    pub(super) fn read(&self) -> Result<Evidence, Outcome> {
        let mut observations = Observations::default();
        let mut read = Read::default();
        let opened = read::read_logs(&self.log, &mut observations, &mut read).and_then(|()| {
            read::read_observations(&self.observations, &mut observations, &mut read)
        });
        if let Err(e) = opened {
            eprintln!("error: {e}");
            return Err(Outcome::Invalid);
        }
        if observations.is_empty() && observations.refused == 0 {
            eprintln!(
                "error: no decision-log line or observation in the {} input(s) ({} line(s) read, \
                 {} skipped): nothing to work from{}",
                read.files,
                read.lines,
                read.skipped.total(),
                skipped_text(&read)
                    .map(|t| format!("\n{t}"))
                    .unwrap_or_default()
            );
            return Err(Outcome::Invalid);
        }
        Ok(Evidence { observations, read })
    }
}

/// `skipped N line(s): 2 not-json, 1 truncated; first at FILE:LINE (reason), …`, if any.
pub(super) fn skipped_text(read: &Read) -> Option<String> {
    let skipped = &read.skipped;
    if skipped.total() == 0 {
        return None;
    }
    let reasons: Vec<String> = skipped
        .counts
        .iter()
        .map(|(why, n)| format!("{n} {why}"))
        .collect();
    let mut out = format!(
        "skipped {} of {} line(s) (not counted): {}",
        skipped.total(),
        read.lines,
        reasons.join(", ")
    );
    for (file, line, why) in &skipped.examples {
        let _ = write!(out, "\n  {file}:{line}: {why}");
    }
    if skipped.total() > skipped.examples.len() as u64 {
        out.push_str("\n  …");
    }
    Some(out)
}

/// The `input` object of a `--json` answer.
pub(super) fn input_json(evidence: &Evidence) -> Value {
    let read = &evidence.read;
    let first: Vec<Value> = read
        .skipped
        .examples
        .iter()
        .map(|(file, line, why)| json!({"file": file, "line": line, "reason": why}))
        .collect();
    json!({
        "files": read.files,
        "lines": read.lines,
        "observations": evidence.observations.counted,
        "distinct": evidence.observations.len(),
        "refused_before_decision": evidence.observations.refused,
        "sampled": evidence.observations.sampled,
        "skipped": {
            "total": read.skipped.total(),
            "by_reason": read.skipped.counts,
            "first": first,
        },
    })
}

/// What the text answers say before anything else: the inputs, the skipped lines, and that
/// counts are lower bounds when lines were sampled.
pub(super) fn notes(evidence: &Evidence) -> String {
    let mut out = String::new();
    if let Some(text) = skipped_text(&evidence.read) {
        out.push_str(&text);
        out.push('\n');
    }
    if evidence.observations.sampled {
        out.push_str(
            "note: some decision lines were sampled (decision_log: allowed_sample_rate or \
             allowed_per_second): every count is a lower bound\n",
        );
    }
    out
}

/// `a .. b` of first/last seen, or `-`.
pub(super) fn seen(first: Option<i64>, last: Option<i64>) -> String {
    match (first, last) {
        (Some(a), Some(b)) => format!("{} .. {}", time::format(a), time::format(b)),
        _ => "-".to_owned(),
    }
}

/// The RFC 3339 of a time, or null.
pub(super) fn time_json(t: Option<i64>) -> Value {
    t.map_or(Value::Null, |t| Value::String(time::format(t)))
}

/// Compiles the policy at `path` as of `at` (unix seconds; now when `None`): its `tests:`
/// run, expiries count.
pub(super) fn load_policy(
    path: &Path,
    at: Option<i64>,
    json: bool,
) -> Result<CompiledPolicy, Outcome> {
    let compiled = PolicySource::load(path)
        .and_then(|source| policy::compile_at(&source, at.unwrap_or_else(policy::unix_now)));
    compiled.map_err(|errors| {
        eprintln!("{}:", path.display());
        report_invalid(&errors, json)
    })
}

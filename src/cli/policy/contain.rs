//! `segward policy contain` and `segward policy release` (docs/runbook.md): the arguments,
//! and the display of what [`crate::containment`] planned, wrote or released — the blast
//! radius removed or restored, as text or `--json`. Exit 0 done, 1 refused.

use std::fs;
use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::{Outcome, report_invalid};
use crate::containment::{self, Asked, ContainError, Containment, Order, Plan};
use summary::{ContainReport, ReleaseReport};

mod summary;

/// `policy contain` arguments: exactly one scope, and a reason.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["identity", "segment", "labels"])))]
pub struct ContainArgs {
    /// The policy folder every sidecar watches; the containment file is written into it.
    dir: PathBuf,
    /// Revoke a SPIFFE ID, or every ID an ID pattern matches
    /// (`spiffe://example.org/ns/staging/**`).
    #[arg(long, value_name = "ID_OR_PATTERN")]
    identity: Option<String>,
    /// Revoke every identity of a segment.
    #[arg(long, value_name = "NAME")]
    segment: Option<String>,
    /// Revoke every identity of the segments carrying all these labels (`risk=ci,env=staging`).
    #[arg(long, value_name = "K=V[,K=V]")]
    labels: Option<String>,
    /// Why (an incident or ticket), recorded in the file.
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// When the containment lifts itself: a duration from now (30m, 24h, 7d) or an RFC 3339
    /// time; omitted, it lasts until released.
    #[arg(long, value_name = "DURATION|RFC3339")]
    until: Option<String>,
    /// Suspend the policy's `tests:` whose source the containment revokes (they assert the
    /// identity's normal access) instead of refusing; `policy check` lists them while it lasts.
    #[arg(long)]
    suspend_tests: bool,
    /// Print `{containment_id, file, scope, reason, since, until, hits, segments, removed, …}`
    /// as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// `policy release` arguments.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The policy folder holding the containment file.
    dir: PathBuf,
    /// The id `policy contain` printed, e.g. c-20261203-1330-7f3a.
    id: String,
    /// Print `{released, file, restored, old_version, new_version}` as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `policy contain`.
pub(super) fn contain(args: ContainArgs) -> anyhow::Result<Outcome> {
    let order = Order {
        scope: asked(&args),
        reason: args.reason.clone(),
        until: args.until.clone(),
        suspend_tests: args.suspend_tests,
        writer: Containment::POLICY_CONTAIN,
        author: author(),
    };
    let plan = match Plan::new(&args.dir, &order, containment::now()) {
        Ok(plan) => plan,
        Err(e) => return refused(e, args.json, args.suspend_tests),
    };
    let written = match plan.write() {
        Ok(written) => written,
        Err(e) => return refused(e, args.json, args.suspend_tests),
    };
    let report = ContainReport {
        containment: &plan.containment,
        dir: &plan.dir,
        file: &written.file.display().to_string(),
        segments: plan.segments.clone(),
        change: &plan.change,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(Outcome::Success)
}

/// Runs `policy release`.
pub(super) fn release(args: ReleaseArgs) -> anyhow::Result<Outcome> {
    let released = match containment::release(&args.dir, &args.id) {
        Ok(released) => released,
        Err(e) => return refused(e, args.json, false),
    };
    let report = ReleaseReport {
        id: &released.id,
        file: &released.file.display().to_string(),
        after: &released.after,
        restored: released.restored.as_ref(),
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(Outcome::Success)
}

/// The scope flag given (clap requires exactly one).
fn asked(args: &ContainArgs) -> Asked {
    match (&args.identity, &args.segment, &args.labels) {
        (Some(id), _, _) => Asked::Identity(id.clone()),
        (_, Some(name), _) => Asked::Segment(name.clone()),
        (_, _, labels) => Asked::Labels(labels.clone().unwrap_or_default()),
    }
}

/// Prints why nothing was changed; exit 1, or an error (exit 1 too) when the file system or
/// the reach walk failed.
fn refused(e: ContainError, json: bool, suspend_tests: bool) -> anyhow::Result<Outcome> {
    match &e {
        ContainError::PolicyInvalid(errors) => Ok(report_invalid(errors, json)),
        ContainError::InvalidWith {
            errors,
            tests_failed,
            ..
        } => {
            let outcome = report_invalid(errors, json);
            eprintln!("refused: {e}");
            if *tests_failed && !suspend_tests {
                eprintln!(
                    "hint: those tests assert the contained identities' normal access; add \
                     --suspend-tests to suspend them while the containment lasts"
                );
            }
            Ok(outcome)
        }
        ContainError::InvalidWithout(_, _, errors) => {
            let outcome = report_invalid(errors, json);
            eprintln!("refused: {e}");
            Ok(outcome)
        }
        ContainError::Reach(_) | ContainError::NoScopes | ContainError::Io(..) => Err(e.into()),
        _ => {
            eprintln!("error: {e}");
            eprintln!("refused: nothing was changed");
            Ok(Outcome::Invalid)
        }
    }
}

/// `user@host` from the environment, for the file's header.
fn author() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("{user}@{host}")
}

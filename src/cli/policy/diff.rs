//! `segward policy diff OLD NEW` (docs/blast-radius.md): a policy change's blast-radius effect, for
//! review and CI gates — every pair of identity classes whose reach was added, removed,
//! widened or narrowed. `--fail-on-widen` exits 3 when any reach grew.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{Outcome, report_invalid};
use crate::policy::analysis::{Change, Diff, Layout, changes_text, diff};
use crate::policy::{self};

/// `policy diff` arguments.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The policy before the change (file or folder).
    old: PathBuf,
    /// The policy after the change (file or folder).
    new: PathBuf,
    /// Print `{old_version, new_version, grows, changes: [{change, source, destination,
    /// old, new}]}` as JSON on stdout (`old`/`new` are edges as `policy reach --json`).
    #[arg(long)]
    json: bool,
    /// Exit with code 3 when any reach grew (an edge added, widened or changed).
    #[arg(long)]
    fail_on_widen: bool,
}

/// Runs `policy diff`.
pub(super) fn run(args: DiffArgs) -> anyhow::Result<Outcome> {
    let mut reaches = Vec::with_capacity(2);
    for path in [&args.old, &args.new] {
        let compiled = match policy::load(path) {
            Ok(p) => p,
            Err(errors) => {
                eprintln!("{}:", path.display());
                return Ok(report_invalid(&errors, args.json));
            }
        };
        match policy::reach_texts(&compiled, "*", "*") {
            Ok(r) => reaches.push(r),
            Err(message) => anyhow::bail!("{}: {message}", path.display()),
        }
    }
    let result = diff(&reaches[0], &reaches[1]);
    if args.json {
        let out = json!({
            "old_version": result.old_version,
            "new_version": result.new_version,
            "grows": result.grows(),
            "changes": result.changes,
        });
        println!("{out}");
    } else {
        print!("{}", text(&args, &result));
    }
    Ok(if args.fail_on_widen && result.grows() {
        Outcome::Widened
    } else {
        Outcome::Success
    })
}

/// One line per changed pair, with what it may do now and what it could do before.
fn text(args: &DiffArgs, d: &Diff) -> String {
    let mut out = format!(
        "policy diff {} ({}) -> {} ({}): {} added, {} removed, {} widened, {} narrowed, {} changed\n",
        args.old.display(),
        d.old_version,
        args.new.display(),
        d.new_version,
        d.count(Change::Added),
        d.count(Change::Removed),
        d.count(Change::Widened),
        d.count(Change::Narrowed),
        d.count(Change::Changed),
    );
    out.push_str(&changes_text(d, Layout::Review));
    if d.grows() {
        out.push_str("reach grew: review the lines marked + and ~ (widened/changed)\n");
    }
    out
}

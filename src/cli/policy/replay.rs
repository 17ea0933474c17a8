//! `segward policy replay NEW_POLICY --log FILE...` (docs/least-privilege.md#replay): every
//! observed request and connection decided again under NEW_POLICY, the flips grouped and
//! counted with an example each. `--fail-on-break` exits 3 on any allow → deny: the CI gate
//! beside `diff --fail-on-widen`.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use super::Outcome;
use super::evidence::{self, Evidence, Inputs};
use crate::evidence::replay::{Flip, Group, Replay, replay};
use crate::evidence::time;
use crate::policy;

/// `policy replay` arguments.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The policy to replay under (file or folder); its `tests:` run as `check` runs them.
    new_policy: PathBuf,
    #[command(flatten)]
    inputs: Inputs,
    /// Decide as of this instant (RFC 3339, e.g. 2026-12-31T18:00:00Z): rules past their
    /// `expires:` match nothing, revocations past their `until:` revoke nothing. Default: now.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Print `{policy_version, at, replayed, unchanged, breaks, admits, invalid, input,
    /// flips: [{flip, direction, source, destination, rule, count, distinct, first_seen,
    /// last_seen, example}]}` as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Exit with code 3 when any observed allowed request or connection would be denied.
    #[arg(long)]
    fail_on_break: bool,
}

/// Runs `policy replay`.
pub(super) fn run(args: ReplayArgs) -> anyhow::Result<Outcome> {
    let at = match args.at.as_deref().map(policy::parse_time).transpose() {
        Ok(at) => at,
        Err(why) => {
            eprintln!(
                "error: --at {}: {why}; give RFC 3339 such as 2026-12-31T18:00:00Z",
                args.at.unwrap_or_default()
            );
            return Ok(Outcome::Usage);
        }
    };
    let compiled = match evidence::load_policy(&args.new_policy, at, args.json) {
        Ok(p) => p,
        Err(outcome) => return Ok(outcome),
    };
    let evidence = match args.inputs.read() {
        Ok(e) => e,
        Err(outcome) => return Ok(outcome),
    };
    let result = replay(&compiled, &evidence.observations);
    let at = at.unwrap_or_else(policy::unix_now);
    if args.json {
        println!("{}", to_json(&result, &evidence, at));
    } else {
        eprint!("{}", evidence::notes(&evidence));
        print!("{}", text(&args, &result, at));
    }
    Ok(if args.fail_on_break && result.breaks() > 0 {
        Outcome::Broke
    } else {
        Outcome::Success
    })
}

fn to_json(r: &Replay, evidence: &Evidence, at: i64) -> Value {
    let flips: Vec<Value> = r
        .groups
        .iter()
        .map(|g| {
            json!({
                "flip": g.flip.as_str(),
                "direction": g.direction.as_str(),
                "source": g.source,
                "destination": g.destination,
                "rule": g.rule,
                "count": g.stats.count,
                "distinct": g.distinct,
                "first_seen": evidence::time_json(g.stats.first),
                "last_seen": evidence::time_json(g.stats.last),
                "example": {
                    "source_id": g.example.source,
                    "destination_id": g.example.destination,
                    "protocol": g.example.protocol.as_str(),
                    "method": g.example.method,
                    "path": g.example.path,
                    "logged": g.example.logged,
                    "now": g.example.now,
                },
            })
        })
        .collect();
    json!({
        "policy_version": r.policy_version,
        "at": time::format(at),
        "replayed": r.replayed,
        "unchanged": r.unchanged,
        "breaks": r.breaks(),
        "admits": r.admits(),
        "invalid": r.invalid,
        "counts_are_lower_bounds": r.sampled,
        "input": evidence::input_json(evidence),
        "flips": flips,
    })
}

fn text(args: &ReplayArgs, r: &Replay, at: i64) -> String {
    let mut out = format!(
        "replay under {} ({}) as of {}: {} observed request(s) and connection(s), {} distinct\n",
        args.new_policy.display(),
        r.policy_version,
        time::format(at),
        r.replayed,
        r.distinct,
    );
    let _ = writeln!(
        out,
        "  allow -> deny: {} (breaks observed traffic)\n  deny -> allow: {} (admits observed attempts)\n  unchanged:     {}",
        r.breaks(),
        r.admits(),
        r.unchanged
    );
    if r.refused > 0 || r.invalid > 0 {
        let _ = writeln!(
            out,
            "  not replayed:  {} refused before a decision, {} with an invalid ID or path",
            r.refused, r.invalid
        );
    }
    for (flip, title) in [
        (
            Flip::AllowToDeny,
            "allow -> deny (the change breaks this observed traffic)",
        ),
        (
            Flip::DenyToAllow,
            "deny -> allow (the change admits these observed attempts)",
        ),
    ] {
        let groups: Vec<&Group> = r.groups.iter().filter(|g| g.flip == flip).collect();
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}:");
        for g in groups {
            let _ = writeln!(
                out,
                "  {:<8} {} -> {}  decided by {}: {} ({} distinct), seen {}",
                g.direction.as_str(),
                g.source,
                g.destination,
                g.rule,
                g.stats.count,
                g.distinct,
                evidence::seen(g.stats.first, g.stats.last)
            );
            let e = &g.example;
            let what = if e.method.is_empty() {
                "tcp connection".to_owned()
            } else {
                format!("{} {}", e.method, e.path)
            };
            let _ = writeln!(
                out,
                "           e.g. {what} from {} to {}: logged {}, now {}",
                e.source, e.destination, e.logged, e.now
            );
        }
    }
    if r.sampled {
        out.push_str("counts are lower bounds: some lines were sampled\n");
    }
    out
}

//! `segward policy contain` and `segward policy release` (PRODUCT.md §10): cut a leaked
//! identity, segment or label scope off fleet-wide by writing one containment file into the
//! policy folder the sidecars watch, and lift it again. Nothing is written or removed unless the
//! resulting policy compiles, `tests:` included; both print the blast radius they remove or
//! restore (`policy reach --from <scope>` before vs. after). Exit 0 done, 1 refused.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{ArgGroup, Args};
use time::OffsetDateTime;

use super::containment::{parse_until, write_new};
use super::{Outcome, report_invalid};
use crate::policy::analysis::{Diff, diff};
use crate::policy::containment::{Containment, ContainmentId, Scope, scopes_in};
use crate::policy::{self, CompiledPolicy, Edge, PolicyErrors, PolicySource, Reach, Selector};
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
    // 1. Read: the folder, its policy as it stands, the scope and the end time.
    let texts = match policy_texts(&args.dir, args.json) {
        Ok(t) => t,
        Err(outcome) => return Ok(outcome),
    };
    let before = match compile(&texts) {
        Ok(p) => p,
        Err(errors) => return Ok(report_invalid(&errors, args.json)),
    };
    let now = now();
    let containment = match containment_of(&args, &before, now) {
        Ok(c) => c,
        Err(message) => return Ok(refuse(&message)),
    };
    // 2. Check: the policy with the new file, compiled in memory, `tests:` included.
    let dir_text = args.dir.display().to_string();
    let file = args.dir.join(containment.id.file_name());
    let yaml = containment.to_yaml(&dir_text);
    let mut with = texts.clone();
    with.push((file.display().to_string(), yaml.clone()));
    with.sort();
    let after = match compile(&with) {
        Ok(p) => p,
        Err(errors) => {
            let outcome = report_invalid(&errors, args.json);
            eprintln!(
                "refused: with this containment the policy in {dir_text} would be invalid (see \
                 above); nothing was written"
            );
            let tests_fail = errors
                .0
                .iter()
                .any(|e| matches!(e.kind, policy::PolicyErrorKind::TestFailed { .. }));
            if tests_fail && !args.suspend_tests {
                eprintln!(
                    "hint: those tests assert the contained identities' normal access; add \
                     --suspend-tests to suspend them while the containment lasts"
                );
            }
            return Ok(outcome);
        }
    };
    let selector = containment.scope.selector_text();
    let removed = reach_change(&before, &after, &[selector])?;
    // 3. Write, then report.
    write_new(&args.dir, &containment.id.file_name(), &yaml)
        .with_context(|| format!("writing {}", file.display()))?;
    let report = ContainReport {
        containment: &containment,
        dir: &dir_text,
        file: &file.display().to_string(),
        segments: scope_segments(&before, &containment.scope),
        change: &removed,
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
    let id = match ContainmentId::parse(&args.id) {
        Ok(id) => id,
        Err(message) => return Ok(refuse(&message)),
    };
    let texts = match policy_texts(&args.dir, args.json) {
        Ok(t) => t,
        Err(outcome) => return Ok(outcome),
    };
    let dir_text = args.dir.display().to_string();
    let file = args.dir.join(id.file_name());
    let name = file.display().to_string();
    let Some((_, contained)) = texts.iter().find(|(n, _)| *n == name) else {
        return Ok(refuse(&format!(
            "no containment {} in {dir_text} (no file {name})",
            id.as_str()
        )));
    };
    let rest: Vec<(String, String)> = texts.iter().filter(|(n, _)| *n != name).cloned().collect();
    if rest.is_empty() {
        return Ok(refuse(&format!(
            "{name} is the only policy file in {dir_text}; releasing it would leave no policy"
        )));
    }
    let after = match compile(&rest) {
        Ok(p) => p,
        Err(errors) => {
            let outcome = report_invalid(&errors, args.json);
            eprintln!(
                "refused: without {name} the policy in {dir_text} is invalid (see above); \
                 nothing was removed"
            );
            return Ok(outcome);
        }
    };
    let scopes = scopes_in(contained).unwrap_or_else(|| vec!["*".to_owned()]);
    // The policy as it stands may itself be invalid (then sidecars kept their last good one,
    // and what the release restores cannot be computed from it).
    let restored = match compile(&texts) {
        Ok(before) => Some(reach_change(&before, &after, &scopes)?),
        Err(_) => None,
    };
    fs::remove_file(&file).with_context(|| format!("removing {name}"))?;
    fs::File::open(&args.dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {dir_text}"))?;
    let report = ReleaseReport {
        id: &id,
        file: &name,
        after: &after,
        restored: restored.as_ref(),
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(Outcome::Success)
}

/// The reach of some scopes under two policies: what changed, and the classes now revoked.
struct ReachChange {
    diff: Diff,
    /// Classes the scopes cover that the new policy revokes.
    revoked_after: Vec<String>,
    /// Classes the scopes cover that the old policy already revoked.
    revoked_before: Vec<String>,
}

/// `policy reach --from <scope>` under `before` and `after`, for each scope, diffed.
fn reach_change(
    before: &CompiledPolicy,
    after: &CompiledPolicy,
    scopes: &[String],
) -> anyhow::Result<ReachChange> {
    let mut old = reach_from(before, scopes)?;
    let mut new = reach_from(after, scopes)?;
    let revoked = |r: &mut Reach| std::mem::take(&mut r.revoked_sources);
    Ok(ReachChange {
        revoked_before: revoked(&mut old),
        revoked_after: revoked(&mut new),
        diff: diff(&old, &new),
    })
}

/// The union of `reach --from S` for every scope `S` (edges deduplicated).
fn reach_from(policy: &CompiledPolicy, scopes: &[String]) -> anyhow::Result<Reach> {
    let mut all: Option<Reach> = None;
    for scope in scopes {
        let reach = policy::reach_texts(policy, scope, "*").map_err(|m| anyhow::anyhow!("{m}"))?;
        match &mut all {
            None => all = Some(reach),
            Some(r) => {
                let fresh: Vec<Edge> = reach
                    .edges
                    .into_iter()
                    .filter(|e| !r.edges.contains(e))
                    .collect();
                r.edges.extend(fresh);
                r.revoked_sources.extend(reach.revoked_sources);
                r.revoked_sources.sort_unstable();
                r.revoked_sources.dedup();
            }
        }
    }
    all.context("a containment file with no entry")
}

/// The containment `args` ask for, checked against the policy as it stands.
fn containment_of(
    args: &ContainArgs,
    policy: &CompiledPolicy,
    now: OffsetDateTime,
) -> Result<Containment, String> {
    let scope = scope_of(args, policy)?;
    let reason = args.reason.trim();
    if reason.is_empty() {
        return Err("--reason is empty; say why (an incident or ticket)".to_owned());
    }
    let until = args
        .until
        .as_deref()
        .map(|u| parse_until(u, now))
        .transpose()?;
    let id = fresh_id(&args.dir, now)?;
    Ok(Containment {
        id,
        scope,
        reason: reason.to_owned(),
        since: now,
        until,
        writer: Containment::POLICY_CONTAIN,
        author: author(),
        suspend_tests: args.suspend_tests,
    })
}

/// The scope of `--identity`, `--segment` or `--labels`, as `policy reach` reads selectors.
fn scope_of(args: &ContainArgs, policy: &CompiledPolicy) -> Result<Scope, String> {
    let parse = |flag: &str, text: &str| {
        Selector::parse(policy, text).map_err(|e| format!("--{flag} {text}: {e}"))
    };
    if let Some(text) = &args.identity {
        if !text.trim().starts_with("spiffe://") {
            return Err(format!(
                "--identity {text}: give a SPIFFE ID or ID pattern (spiffe://…); for a segment \
                 use --segment, for labels --labels"
            ));
        }
        parse("identity", text)?;
        return Ok(Scope::Identity(text.trim().to_owned()));
    }
    if let Some(text) = &args.segment {
        return match parse("segment", text)? {
            Selector::Segment(s) => Ok(Scope::Segment(policy.segments()[s as usize].name.clone())),
            _ => Err(format!(
                "--segment {text}: give a segment name; for an ID use --identity, for labels \
                 --labels"
            )),
        };
    }
    let text = args.labels.as_deref().unwrap_or_default();
    if !text.contains('=') {
        return Err(format!(
            "--labels {text}: `{text}` is not `key=value[,key=value]`"
        ));
    }
    match parse("labels", text)? {
        Selector::Labels(labels, _) => Ok(Scope::Labels(labels)),
        _ => Err(format!("--labels {text}: give `key=value[,key=value]`")),
    }
}

/// The segments a segment or label scope names (none for an identity scope).
fn scope_segments(policy: &CompiledPolicy, scope: &Scope) -> Vec<String> {
    match scope {
        Scope::Identity(_) => Vec::new(),
        Scope::Segment(name) => vec![name.clone()],
        Scope::Labels(labels) => policy
            .segments()
            .iter()
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.name.clone())
            .collect(),
    }
}

/// An id whose file does not exist yet in `dir`.
fn fresh_id(dir: &Path, now: OffsetDateTime) -> Result<ContainmentId, String> {
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..16 {
        let mut random = [0u8; 2];
        ring::rand::SecureRandom::fill(&rng, &mut random)
            .map_err(|_| "the system random source failed".to_owned())?;
        let id = ContainmentId::new(now, random);
        if !dir.join(id.file_name()).exists() {
            return Ok(id);
        }
    }
    Err(format!(
        "no free containment id in {} this minute",
        dir.display()
    ))
}

/// The policy files of `dir`, which must be a folder (the sidecars watch a folder).
fn policy_texts(dir: &Path, json: bool) -> Result<Vec<(String, String)>, Outcome> {
    if !dir.is_dir() {
        return Err(refuse(&format!(
            "{} is not a folder; contain and release work on the policy folder the sidecars \
             watch",
            dir.display()
        )));
    }
    PolicySource::read(dir).map_err(|errors| report_invalid(&errors, json))
}

fn compile(texts: &[(String, String)]) -> Result<CompiledPolicy, PolicyErrors> {
    let source = PolicySource::from_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))?;
    policy::compile(&source)
}

fn refuse(message: &str) -> Outcome {
    eprintln!("error: {message}");
    eprintln!("refused: nothing was changed");
    Outcome::Invalid
}

/// Now, in UTC, at whole seconds (the precision of `since`).
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
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

//! The leaked CI token, contained (PRODUCT.md §10, ISSUE 15): the demo plays the operator of
//! `segward policy contain --identity 'spiffe://example.org/ns/staging/**' --until 1h
//! --suspend-tests`. It makes the same containment file, with [`crate::policy::containment`],
//! checks it by compiling the folder with it, and writes it into the live policy folder
//! atomically (a temporary file, then a rename). Then it shows what every sidecar does with
//! it: the CI runner's next request on its open connection is refused, the frontend and the
//! agent carry on over theirs without a failed request (and payments' sidecar closes none of
//! its connections), and once the file is removed the runner works again on a new
//! connection. The blast radius the containment removed is `policy reach --from` the scope,
//! before vs. after, diffed.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use time::OffsetDateTime;

use super::Capture;
use super::blast::{LEAKED, change_line};
use super::scenarios::{Row, connect, send, wait_for};
use super::topology::{FLEET_POLICY, Fleet};
use crate::policy::analysis::diff;
use crate::policy::containment::{Containment, ContainmentId, Scope};
use crate::policy::{self, CompiledPolicy, PolicySource, Reach, Selector};

/// The request the runner normally makes: deploy to staging (`ci-deploys-to-staging`).
const RUNNER: (&str, &str, &str, &str) = (
    "ci-runner",
    "PUT",
    "http://staging-api/deploy",
    "ci-deploys-to-staging",
);

/// Callers outside the contained scope, each with a request the policy allows it.
const BYSTANDERS: [(&str, &str, &str, &str); 2] = [
    (
        "frontend",
        "POST",
        "http://payments/v1/charges",
        "frontend-creates-charges",
    ),
    (
        "agent-read",
        "GET",
        "http://payments/v1/charges/ch_1",
        "agents-read-charges-and-entries",
    ),
];

/// Requests each bystander sends before the containment, and again after.
const ROUNDS: usize = 3;

/// Why, as the operator would say it.
const REASON: &str = "the staging CI runner's token leaked (demo)";

/// Who writes the file, for its header.
const WRITER: &str = "segward demo";

/// What the containment scenario printed: its rows, and the block naming what it hit and the
/// reach it removed.
pub struct Contained {
    /// The table rows (they count toward the demo's failures).
    pub rows: Vec<Row>,
    /// The printed block.
    pub text: String,
}

/// Plays the containment, on the shipped policy (put back first: the story's last edit left
/// the folder unloadable, and a folder that does not compile applies no containment).
///
/// # Errors
/// A step that cannot even be attempted: files, a sidecar not answering, a policy that does
/// not compile.
pub async fn play(fleet: &Fleet, capture: &Capture) -> anyhow::Result<Contained> {
    let dir = fleet
        .policy_file
        .parent()
        .context("the policy file has a folder")?;
    super::replace_file(&fleet.policy_file, FLEET_POLICY)?;
    let shipped = compile(&[("fleet.yaml", FLEET_POLICY)])?;
    let restored = applied(fleet, &shipped).await;

    // Open connections, and what they get before.
    let (caller, method, target, _) = RUNNER;
    let mut runner = connect(fleet, caller).await?;
    let runner_before = send(&mut runner, method, target, false).await?;
    let mut bystanders = Vec::new();
    for (caller, method, target, _) in BYSTANDERS {
        let mut conn = connect(fleet, caller).await?;
        let before = statuses(&mut conn, method, target).await?;
        bystanders.push((conn, before));
    }
    let cut_before = cut_total(fleet, "payments").await?;

    // Contain: the file `policy contain` would write, checked, then written atomically.
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let pid = std::process::id().to_be_bytes();
    let containment = Containment {
        id: ContainmentId::new(now, [pid[2], pid[3]]),
        scope: Scope::Identity(LEAKED.to_owned()),
        reason: REASON.to_owned(),
        since: now,
        until: Some(now + time::Duration::hours(1)),
        writer: WRITER,
        author: "operator@demo".to_owned(),
        suspend_tests: true,
    };
    let name = containment.id.file_name();
    let yaml = containment.to_yaml(&dir.display().to_string());
    let contained = compile(&[("fleet.yaml", FLEET_POLICY), (&name, &yaml)])?;
    let started = Instant::now();
    write_atomically(dir, &name, &yaml)?;
    let in_force = applied(fleet, &contained).await;
    let took = started.elapsed();

    // The runner's next request on its open connection; then the bystanders'.
    let runner_after = send(&mut runner, method, target, false).await.ok();
    let mut rows = vec![runner_row(
        capture,
        &runner_before,
        runner_after.as_ref(),
        restored && in_force,
    )];
    let cut = cut_total(fleet, "payments").await? - cut_before;
    for ((caller, method, target, rule), (mut conn, before)) in
        BYSTANDERS.into_iter().zip(bystanders)
    {
        let after = statuses(&mut conn, method, target).await?;
        let (decided, reason) = after.last().map_or_else(
            || (String::new(), String::new()),
            |(_, id)| capture.decision_of(id),
        );
        let all_ok = |s: &[(StatusCode, String)]| {
            s.len() == ROUNDS && s.iter().all(|(status, _)| *status == StatusCode::OK)
        };
        rows.push(Row {
            what: format!(
                "contain ns/staging/**: {caller} → {method} {}",
                short(target)
            ),
            expected: format!("{ROUNDS}×200, same connection: {ROUNDS}×200, 0 cut"),
            got: format!(
                "{}, then {}, {cut} cut (payments)",
                summary(&before),
                summary(&after)
            ),
            ok: in_force
                && all_ok(&before)
                && all_ok(&after)
                && cut == 0
                && decided.starts_with(rule),
            rule: decided,
            reason,
            request_id: after.last().map(|(_, id)| id.clone()).unwrap_or_default(),
        });
    }

    // Release: remove the file; the runner works again, on a new connection.
    std::fs::remove_file(dir.join(&name)).with_context(|| format!("removing {name}"))?;
    let released = applied(fleet, &shipped).await;
    let mut fresh = connect(fleet, caller).await?;
    let again = send(&mut fresh, method, target, false).await?;
    let (rule, reason) = capture.decision_of(&again.request_id);
    rows.push(Row {
        what: format!(
            "release ns/staging/**: {caller} → {method} {}",
            short(target)
        ),
        expected: "file removed, new connection: 200".to_owned(),
        got: format!("removed, {}", again.status.as_u16()),
        ok: released && again.status == StatusCode::OK && rule.starts_with(RUNNER.3),
        rule,
        reason,
        request_id: again.request_id,
    });

    let text = report(&containment, &name, &shipped, &contained, took)?;
    Ok(Contained { rows, text })
}

/// The runner's row: 200 before; after, 403 `revoked` on the same connection, or the
/// connection closed.
fn runner_row(
    capture: &Capture,
    before: &super::scenarios::Reply,
    after: Option<&super::scenarios::Reply>,
    in_force: bool,
) -> Row {
    let (caller, method, target, rule) = RUNNER;
    let (decided, reason) = after.map_or_else(
        || ("(connection closed)".to_owned(), "revoked".to_owned()),
        |a| capture.decision_of(&a.request_id),
    );
    let refused = after.is_none_or(|a| a.status == StatusCode::FORBIDDEN && reason == "revoked");
    let before_rule = capture.decision_of(&before.request_id).0;
    Row {
        what: format!(
            "contain ns/staging/**: {caller} → {method} {}",
            short(target)
        ),
        expected: "200, contain, same connection: 403 revoked or closed".to_owned(),
        got: format!(
            "{}, then {}",
            before.status.as_u16(),
            after.map_or("closed".to_owned(), |a| a.status.as_u16().to_string())
        ),
        ok: in_force && before.status == StatusCode::OK && before_rule.starts_with(rule) && refused,
        rule: decided,
        reason,
        request_id: after.map(|a| a.request_id.clone()).unwrap_or_default(),
    }
}

/// The printed block: the file, the classes it hit, the reach it removed, the versions.
fn report(
    containment: &Containment,
    name: &str,
    before: &CompiledPolicy,
    after: &CompiledPolicy,
    took: Duration,
) -> anyhow::Result<String> {
    let (old, new) = (leaked_reach(before)?, leaked_reach(after)?);
    let change = diff(&old, &new);
    let mut out = format!(
        "containment of the leaked CI token: policy contain --identity '{LEAKED}' --until 1h \
         --suspend-tests\n"
    );
    let _ = writeln!(
        out,
        "  wrote policies/{name} (temp + rename), in force on every sidecar in {} ms:",
        took.as_millis()
    );
    if let Some(entry) = containment_entry(containment) {
        let _ = writeln!(out, "    {entry}");
    }
    let _ = writeln!(out, "  hits: {}", new.revoked_sources.join(", "));
    out.push_str("  removed (policy reach --from the scope, before → after):\n");
    for pair in &change.changes {
        let _ = writeln!(out, "    {}", change_line(pair));
    }
    let _ = writeln!(
        out,
        "  policy {} → {}; {} test(s) suspended while it lasts (policy check lists them)",
        change.old_version,
        change.new_version,
        after.suspended_tests().len()
    );
    let _ = writeln!(
        out,
        "  released by removing the file (segward policy release policies/ {}): policy back to {}",
        containment.id.as_str(),
        change.old_version
    );
    Ok(out)
}

/// The file's `revoked:` entry line.
fn containment_entry(containment: &Containment) -> Option<String> {
    containment
        .to_yaml("")
        .lines()
        .find(|l| l.trim_start().starts_with("- {"))
        .map(|l| l.trim().to_owned())
}

/// Everything [`LEAKED`] can reach, to anyone.
fn leaked_reach(policy: &CompiledPolicy) -> anyhow::Result<Reach> {
    let from = Selector::parse(policy, LEAKED)?;
    Ok(policy::reach(
        policy,
        (LEAKED, &from),
        ("*", &Selector::Any),
    )?)
}

fn compile(texts: &[(&str, &str)]) -> anyhow::Result<CompiledPolicy> {
    let source = PolicySource::from_texts(texts.iter().copied())?;
    policy::compile(&source).map_err(|e| anyhow::anyhow!("the contained policy is invalid:\n{e}"))
}

/// Waits until every sidecar enforces `policy` (by version) with no reload error.
async fn applied(fleet: &Fleet, policy: &CompiledPolicy) -> bool {
    let version = policy.version();
    wait_for(fleet, |s| {
        s.live().policy().version() == version && s.reload_status().policy_error.is_none()
    })
    .await
}

/// `ROUNDS` requests on `conn`: (status, request id) each.
async fn statuses(
    conn: &mut SendRequest<Full<Bytes>>,
    method: &str,
    target: &str,
) -> anyhow::Result<Vec<(StatusCode, String)>> {
    let mut out = Vec::new();
    for _ in 0..ROUNDS {
        let reply = send(conn, method, target, false).await?;
        out.push((reply.status, reply.request_id));
    }
    Ok(out)
}

/// `3×200`, or the statuses one by one when they differ.
fn summary(statuses: &[(StatusCode, String)]) -> String {
    let codes: Vec<String> = statuses
        .iter()
        .map(|(s, _)| s.as_u16().to_string())
        .collect();
    match codes.first() {
        Some(first) if codes.iter().all(|c| c == first) => format!("{}×{first}", codes.len()),
        _ => codes.join(","),
    }
}

/// `host/path` without the scheme.
fn short(target: &str) -> &str {
    target.strip_prefix("http://").unwrap_or(target)
}

/// The file as an operator's tool writes it: a temporary file beside it, named with a
/// leading `.` so the policy loader skips it, then a rename.
fn write_atomically(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, dir.join(name))
}

/// `segward_connections_cut_total` of `name`'s sidecar, from its admin `/metrics`.
async fn cut_total(fleet: &Fleet, name: &str) -> anyhow::Result<u64> {
    let admin = fleet
        .sidecar(name)
        .with_context(|| format!("no sidecar {name}"))?
        .admin_addr();
    let tcp = tokio::net::TcpStream::connect(admin).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let request = Request::get("/metrics")
        .header("host", admin.to_string())
        .body(Full::new(Bytes::new()))?;
    let body = sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    Ok(text
        .lines()
        .filter(|l| l.starts_with("segward_connections_cut_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

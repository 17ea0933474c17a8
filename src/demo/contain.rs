//! The leaked CI token, contained (docs/runbook.md, ISSUE 15): the demo plays the operator of
//! `segward policy contain --identity 'spiffe://example.org/ns/staging/**' --until 1h
//! --suspend-tests`. It plans, writes and releases the containment with the same library
//! calls as that command ([`crate::containment`]): the file checked by compiling the folder
//! with it, written into the live policy folder atomically. Then it shows what every sidecar does with
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

use super::Capture;
use super::act::{Conn, Reply, Row, connect, send, wait_for, write_policy};
use super::blast::LEAKED;
use super::topology::{FLEET_POLICY, Fleet};
use crate::containment::{self, Asked, Order, Plan};
use crate::policy::CompiledPolicy;
use crate::policy::analysis::{Layout, change_line};

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
    write_policy(fleet, FLEET_POLICY)?;
    // The file `policy contain` would write, checked against the folder.
    let plan = Plan::new(dir, &order(), containment::now()).context("planning the containment")?;
    let restored = applied(fleet, &plan.before).await;
    let open = Open::connect(fleet).await?;
    // Contain: written atomically, then in force on every sidecar.
    let started = Instant::now();
    let written = plan.write().context("writing the containment")?;
    let in_force = applied(fleet, &plan.after).await;
    let took = started.elapsed();
    let mut rows = open.after(fleet, capture, restored, in_force).await?;
    rows.push(release(fleet, capture, dir, &plan).await?);
    let name = written
        .file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy();
    let text = report(&plan, &name, took);
    Ok(Contained { rows, text })
}

/// What the operator asks `policy contain` for.
fn order() -> Order {
    Order {
        scope: Asked::Identity(LEAKED.to_owned()),
        reason: REASON.to_owned(),
        until: Some("1h".to_owned()),
        suspend_tests: true,
        writer: WRITER,
        author: "operator@demo".to_owned(),
    }
}

/// The connections open before the containment, and what they got.
struct Open {
    runner: Conn,
    runner_before: Reply,
    bystanders: Vec<(Conn, Vec<(StatusCode, String)>)>,
    cut_before: u64,
}

impl Open {
    /// Opens the runner's and the bystanders' connections and sends their requests.
    async fn connect(fleet: &Fleet) -> anyhow::Result<Open> {
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
        Ok(Open {
            runner,
            runner_before,
            bystanders,
            cut_before,
        })
    }

    /// The runner's next request on its open connection; then the bystanders'.
    async fn after(
        mut self,
        fleet: &Fleet,
        capture: &Capture,
        restored: bool,
        in_force: bool,
    ) -> anyhow::Result<Vec<Row>> {
        let (_, method, target, _) = RUNNER;
        let runner_after = send(&mut self.runner, method, target, false).await.ok();
        let mut rows = vec![runner_row(
            capture,
            &self.runner_before,
            runner_after.as_ref(),
            restored && in_force,
        )];
        let cut = cut_total(fleet, "payments").await? - self.cut_before;
        for (bystander, (mut conn, before)) in BYSTANDERS.into_iter().zip(self.bystanders) {
            let after = statuses(&mut conn, bystander.1, bystander.2).await?;
            rows.push(bystander_row(
                capture, bystander, &before, &after, cut, in_force,
            ));
        }
        Ok(rows)
    }
}

/// A bystander's row: all 200 before and after on the same connection, none cut.
fn bystander_row(
    capture: &Capture,
    (caller, method, target, rule): (&str, &str, &str, &str),
    before: &[(StatusCode, String)],
    after: &[(StatusCode, String)],
    cut: u64,
    in_force: bool,
) -> Row {
    let (decided, reason) = after.last().map_or_else(
        || (String::new(), String::new()),
        |(_, id)| capture.decision_of(id),
    );
    let all_ok = |s: &[(StatusCode, String)]| {
        s.len() == ROUNDS && s.iter().all(|(status, _)| *status == StatusCode::OK)
    };
    Row {
        what: format!(
            "contain ns/staging/**: {caller} → {method} {}",
            short(target)
        ),
        expected: format!("{ROUNDS}×200, same connection: {ROUNDS}×200, 0 cut"),
        got: format!(
            "{}, then {}, {cut} cut (payments)",
            summary(before),
            summary(after)
        ),
        ok: in_force && all_ok(before) && all_ok(after) && cut == 0 && decided.starts_with(rule),
        rule: decided,
        reason,
        request_id: after.last().map(|(_, id)| id.clone()).unwrap_or_default(),
    }
}

/// Release, as `policy release` does it: the file removed; the runner works again, on a new
/// connection.
async fn release(fleet: &Fleet, capture: &Capture, dir: &Path, plan: &Plan) -> anyhow::Result<Row> {
    let (caller, method, target, rule) = RUNNER;
    containment::release(dir, plan.containment.id.as_str()).context("releasing")?;
    let released = applied(fleet, &plan.before).await;
    let mut fresh = connect(fleet, caller).await?;
    let again = send(&mut fresh, method, target, false).await?;
    let (decided, reason) = capture.decision_of(&again.request_id);
    Ok(Row {
        what: format!(
            "release ns/staging/**: {caller} → {method} {}",
            short(target)
        ),
        expected: "file removed, new connection: 200".to_owned(),
        got: format!("removed, {}", again.status.as_u16()),
        ok: released && again.status == StatusCode::OK && decided.starts_with(rule),
        rule: decided,
        reason,
        request_id: again.request_id,
    })
}

/// The runner's row: 200 before; after, 403 `revoked` on the same connection, or the
/// connection closed.
fn runner_row(capture: &Capture, before: &Reply, after: Option<&Reply>, in_force: bool) -> Row {
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
fn report(plan: &Plan, name: &str, took: Duration) -> String {
    let change = &plan.change.diff;
    let mut out = format!(
        "containment of the leaked CI token: policy contain --identity '{LEAKED}' --until 1h \
         --suspend-tests\n"
    );
    let _ = writeln!(
        out,
        "  wrote policies/{name} (temp + rename), in force on every sidecar in {} ms:",
        took.as_millis()
    );
    if let Some(entry) = revoked_entry(&plan.yaml) {
        let _ = writeln!(out, "    {entry}");
    }
    let _ = writeln!(out, "  hits: {}", plan.change.revoked_after.join(", "));
    out.push_str("  removed (policy reach --from the scope, before → after):\n");
    for pair in &change.changes {
        let _ = writeln!(out, "    {}", change_line(pair, Layout::Story));
    }
    let _ = writeln!(
        out,
        "  policy {} → {}; {} test(s) suspended while it lasts (policy check lists them)",
        change.old_version,
        change.new_version,
        plan.after.suspended_tests().len()
    );
    let _ = writeln!(
        out,
        "  released by removing the file (segward policy release policies/ {}): policy back to {}",
        plan.containment.id.as_str(),
        change.old_version
    );
    out
}

/// The file's `revoked:` entry line.
fn revoked_entry(yaml: &str) -> Option<String> {
    yaml.lines()
        .find(|l| l.trim_start().starts_with("- {"))
        .map(|l| l.trim().to_owned())
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
    conn: &mut Conn,
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

//! The demo's story (docs/demo.md, ISSUE 7): each step is a real HTTP request from a
//! caller's app to its outbound sidecar, over mTLS to the callee's inbound sidecar, to the
//! workload. What happened is read from the response and from the decision log line with the
//! response's `x-request-id` — the same way an operator goes from a 403 to its reason.

use http::StatusCode;

use super::Capture;
use super::act::{Row, connect, publish, send, wait_for, write_policy};
use super::blast::BlastRadius;
use super::topology::{Fleet, id_of_any as id_of};

/// A request step: `caller` sends `method url` through its outbound sidecar.
struct Step {
    caller: &'static str,
    method: &'static str,
    target: &'static str,
    forged: bool,
    status: u16,
    rule: &'static str,
}

const STEPS: &[(&str, Step)] = &[
    (
        "allowed call",
        Step {
            caller: "frontend",
            method: "POST",
            target: "http://payments/v1/charges",
            forged: false,
            status: 200,
            rule: "frontend-creates-charges",
        },
    ),
    (
        "cross-segment call",
        Step {
            caller: "frontend",
            method: "GET",
            target: "http://ledger/v1/entries",
            forged: false,
            status: 403,
            rule: "default-deny",
        },
    ),
    (
        "staging → prod",
        Step {
            caller: "ci-runner",
            method: "GET",
            target: "http://payments/v1/charges",
            forged: false,
            status: 403,
            rule: "staging-never-reaches-prod",
        },
    ),
    (
        "agent read id writes",
        Step {
            caller: "agent-read",
            method: "POST",
            target: "http://payments/v1/refunds",
            forged: false,
            status: 403,
            rule: "agent-read-is-read-only",
        },
    ),
    (
        "agent write id writes",
        Step {
            caller: "agent-write",
            method: "POST",
            target: "http://payments/v1/refunds",
            forged: false,
            status: 200,
            rule: "agents-issue-refunds",
        },
    ),
    (
        "path trick (%2e%2e)",
        Step {
            caller: "agent-read",
            method: "GET",
            target: "http://payments/v1/charges/%2e%2e/%2e%2e/admin/keys",
            forged: false,
            status: 403,
            rule: "no-admin-api",
        },
    ),
    (
        "path trick (%2f)",
        Step {
            caller: "agent-read",
            method: "GET",
            target: "http://payments/v1/charges/..%2f..%2fadmin",
            forged: false,
            status: 400,
            rule: "encoded-slash",
        },
    ),
    (
        "forged x-spiffe-id",
        Step {
            caller: "partner",
            method: "POST",
            target: "http://payments/v1/webhooks/partner",
            forged: true,
            status: 200,
            rule: "partner-sends-webhooks",
        },
    ),
    (
        "third party → ledger",
        Step {
            caller: "partner",
            method: "GET",
            target: "http://ledger/v1/entries",
            forged: false,
            status: 403,
            rule: "third-parties-never-touch-the-ledger",
        },
    ),
];

/// The step whose refusal the blast radius of the leaked staging token explains.
const STAGING_STEP: &str = "staging → prod";

/// Plays every step in order; one row each, and after the `staging → prod` step the row
/// that checks the blast radius of the leaked staging token against it.
///
/// # Errors
/// A step that cannot even be attempted (a sidecar not answering at all).
pub async fn play(
    fleet: &Fleet,
    capture: &Capture,
    blast: &BlastRadius,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (title, step) in STEPS {
        let row = request_step(fleet, capture, title, step).await?;
        let staging = (*title == STAGING_STEP).then(|| {
            let version = capture.policy_version_of(&row.request_id);
            blast.row(&row, version.as_deref())
        });
        rows.push(row);
        rows.extend(staging);
    }
    rows.push(revocation(fleet, capture).await?);
    rows.push(broken_edit(fleet, capture).await?);
    Ok(rows)
}

async fn request_step(
    fleet: &Fleet,
    capture: &Capture,
    title: &str,
    step: &Step,
) -> anyhow::Result<Row> {
    let mut conn = connect(fleet, step.caller).await?;
    let reply = send(&mut conn, step.method, step.target, step.forged).await?;
    let (rule, reason) = capture.decision_of(&reply.request_id);
    let mut ok = reply.status == step.status && rule.starts_with(step.rule);
    let mut got = reply.status.as_u16().to_string();
    if step.forged {
        // The workload must see the caller's real ID, not the one it claimed.
        let real = id_of(step.caller);
        let seen = reply.seen_id.unwrap_or_default();
        ok &= seen == real;
        got = format!(
            "{got}, workload saw {}",
            seen.rsplit('/').next().unwrap_or("")
        );
    }
    Ok(Row {
        what: format!(
            "{title}: {} → {} {}",
            step.caller,
            step.method,
            short(step.target, 34)
        ),
        expected: format!("{} {}", step.status, step.rule),
        got,
        rule,
        reason,
        ok,
        request_id: reply.request_id,
    })
}

/// Revokes `partner-2` by editing the policy file while its connection stays open.
async fn revocation(fleet: &Fleet, capture: &Capture) -> anyhow::Result<Row> {
    let target = "http://payments/v1/webhooks/partner";
    let mut conn = connect(fleet, "partner-2").await?;
    let before = send(&mut conn, "POST", target, false).await?;
    let revoked = super::topology::FLEET_POLICY.replace(
        "revoked:\n",
        &format!("revoked:\n  - {}\n", id_of("partner-2")),
    );
    let reloaded = publish(fleet, &revoked).await?;
    let after = send(&mut conn, "POST", target, false).await?;
    let (rule, reason) = capture.decision_of(&after.request_id);
    Ok(Row {
        what: "live revocation: partner-2 → POST payments/v1/webhooks/…".to_owned(),
        expected: "200, edit policy, same connection: 403 revoked".to_owned(),
        got: format!("{}, then {}", before.status.as_u16(), after.status.as_u16()),
        ok: reloaded
            && before.status == StatusCode::OK
            && after.status == StatusCode::FORBIDDEN
            && reason == "revoked",
        rule,
        reason,
        request_id: after.request_id,
    })
}

/// Breaks the policy file; every sidecar must refuse it and keep serving the last good one.
async fn broken_edit(fleet: &Fleet, capture: &Capture) -> anyhow::Result<Row> {
    let broken = format!(
        "{}\nrules: [ {{ name: oops\n",
        super::topology::FLEET_POLICY
    );
    write_policy(fleet, &broken)?;
    let rejected = wait_for(fleet, |s| s.reload_status().policy_error.is_some()).await;
    let mut conn = connect(fleet, "frontend").await?;
    let reply = send(&mut conn, "POST", "http://payments/v1/charges", false).await?;
    let (rule, _) = capture.decision_of(&reply.request_id);
    let error = fleet
        .sidecar("payments")
        .and_then(|s| s.reload_status().policy_error)
        .map(|error| error.to_string())
        .unwrap_or_default();
    let first_error = error.lines().next().unwrap_or("").to_owned();
    let at = first_error.rsplit('/').next().unwrap_or("").to_owned();
    Ok(Row {
        what: "broken policy edit: frontend → POST payments/v1/charges".to_owned(),
        expected: "edit rejected, 200".to_owned(),
        got: format!("rejected, {}", reply.status.as_u16()),
        ok: rejected && reply.status == StatusCode::OK,
        rule,
        reason: at,
        request_id: reply.request_id,
    })
}

/// `host/path` without the scheme, clipped to `max` characters.
fn short(target: &str, max: usize) -> String {
    super::clip(target.strip_prefix("http://").unwrap_or(target), max)
}

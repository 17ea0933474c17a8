//! A leaked credential probing, contained at the sidecar (docs/probes.md, issue 29): the AI
//! agent's write identity — allowed one thing, `POST payments /v1/refunds` — starts
//! enumerating what else it can reach. Its own outbound sidecar denies each request and,
//! with `detect.probe` (`distinct_denied: 5`, `action: contain`), contains the identity at
//! the fifth distinct denied target: even its one allowed request is refused
//! (`probe-contained`) while the frontend, on its open keep-alive connection, carries on
//! without a failed request. `/probes` prints the fleet-wide `policy contain` command; the
//! operator releases the local containment (`POST /probes/release`) and the agent works again.

use http::StatusCode;
use serde_json::Value;

use super::Capture;
use super::act::{Row, connect, send};
use super::topology::{Fleet, id_of_any};

/// The `detect:` block every demo sidecar runs with.
pub const DETECT: &str =
    "detect:\n  probe: { distinct_denied: 5, window: 60s, action: contain, contain_for: 15m }\n";

/// The leaked identity's workload.
const AGENT: &str = "agent-write";
/// What the agent may do.
const REFUNDS: &str = "http://payments/v1/refunds";
/// What it tries instead: five distinct targets it may not reach.
const PROBES: [&str; 5] = [
    "http://payments/admin/keys",
    "http://payments/v1/charges",
    "http://payments/v1/export/all",
    "http://ledger/v1/entries",
    "http://payments/.env",
];
/// The bystander's allowed request.
const FRONTEND: (&str, &str) = ("frontend", "http://payments/v1/charges");

/// Plays the probe: four rows that count toward the demo's failures.
///
/// # Errors
/// A step that cannot even be attempted (a sidecar not answering at all).
pub async fn play(fleet: &Fleet, capture: &Capture) -> anyhow::Result<Vec<Row>> {
    let agent_id = id_of_any(AGENT);
    let mut agent = connect(fleet, AGENT).await?;
    let mut frontend = connect(fleet, FRONTEND.0).await?;
    let agent_before = send(&mut agent, "POST", REFUNDS, false).await?;
    let frontend_before = send(&mut frontend, "POST", FRONTEND.1, false).await?;

    // The probe: five distinct denied targets; the fifth contains the identity.
    let mut statuses = Vec::new();
    for target in PROBES {
        statuses.push(send(&mut agent, "GET", target, false).await?.status);
    }
    let detected = probe_line(capture, agent_id);
    let all_denied = statuses.iter().all(|s| *s == StatusCode::FORBIDDEN);
    let targets = detected
        .as_ref()
        .and_then(|l| l["targets_seen"].as_u64())
        .unwrap_or(0);
    let mut rows = vec![Row {
        what: format!("probe: {AGENT} → GET 5 paths it may not reach"),
        expected: "5×403, contained at the 5th".to_owned(),
        got: format!(
            "{}×403, {}",
            statuses
                .iter()
                .filter(|s| **s == StatusCode::FORBIDDEN)
                .count(),
            if detected.is_some() {
                format!("contained after {targets} targets")
            } else {
                "not detected".to_owned()
            }
        ),
        ok: all_denied && targets == 5,
        rule: "probe-detected (outbound)".to_owned(),
        reason: "probe-detected".to_owned(),
        request_id: String::new(),
    }];

    // Contained: even the request the policy allows is refused, on the same connection.
    let agent_after = send(&mut agent, "POST", REFUNDS, false).await?;
    let (rule, reason) = capture.decision_of(&agent_after.request_id);
    rows.push(Row {
        what: format!("contained: {AGENT} → POST payments/v1/refunds"),
        expected: "200 before, 403 probe-contained".to_owned(),
        got: format!(
            "{}, then {}",
            agent_before.status.as_u16(),
            agent_after.status.as_u16()
        ),
        ok: agent_before.status == StatusCode::OK
            && agent_after.status == StatusCode::FORBIDDEN
            && reason == "probe-contained",
        rule,
        reason,
        request_id: agent_after.request_id,
    });

    // The bystander carried on over its open connection.
    let frontend_after = send(&mut frontend, "POST", FRONTEND.1, false).await?;
    let (rule, reason) = capture.decision_of(&frontend_after.request_id);
    rows.push(Row {
        what: format!("while contained: {} → POST payments/v1/charges", FRONTEND.0),
        expected: "200, same connection: 200".to_owned(),
        got: format!(
            "{}, then {}",
            frontend_before.status.as_u16(),
            frontend_after.status.as_u16()
        ),
        ok: frontend_before.status == StatusCode::OK && frontend_after.status == StatusCode::OK,
        rule,
        reason,
        request_id: frontend_after.request_id,
    });

    // The operator looks at /probes (the fleet-wide command is there) and releases it here.
    let sidecar = fleet.sidecar(AGENT);
    let command = sidecar
        .map(|s| s.probes().report(s.live().policy().own_id().as_str()))
        .and_then(|r| {
            r["contained"][0]["fleet_command"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let released = sidecar.is_some_and(|s| s.probes().release(agent_id));
    let agent_back = send(&mut agent, "POST", REFUNDS, false).await?;
    let (rule, reason) = capture.decision_of(&agent_back.request_id);
    rows.push(Row {
        what: format!("released (POST /probes/release): {AGENT} → POST refunds"),
        expected: "fleet command shown, released, 200".to_owned(),
        got: format!(
            "{}{}, {}",
            if command.starts_with("segward policy contain") {
                "command, "
            } else {
                "no command, "
            },
            if released { "released" } else { "not released" },
            agent_back.status.as_u16()
        ),
        ok: released
            && command.starts_with("segward policy contain")
            && agent_back.status == StatusCode::OK,
        rule,
        reason,
        request_id: agent_back.request_id,
    });
    Ok(rows)
}

/// The `probe-detected` line of `source`, if one was written.
fn probe_line(capture: &Capture, source: &str) -> Option<Value> {
    capture
        .lines()
        .into_iter()
        .find(|l| l["reason"] == "probe-detected" && l["source_id"] == source)
}

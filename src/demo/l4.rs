//! The L4 act (docs/l4.md, ISSUE 16): "production database access is isolated from
//! staging, so a leaked token from a test environment cannot be reused to reach live
//! records". The ledger writes and reads back a row in its database (`ledger_db.rs`) through
//! TCP sidecars; the staging CI runner's connection is closed before the database sees it;
//! then the ledger's identity is revoked by a policy edit and its open session is closed
//! within 1 s. The shipped policy is put back after.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::Capture;
use super::act::{Row, publish};
use super::ledger_db::{DESTINATION, LedgerDb};
use super::topology::{DATABASE, FLEET_POLICY, Fleet, id_of_any};

/// "those now denied are closed within 1 s" (docs/l4.md).
const CUT_WITHIN: Duration = Duration::from_secs(1);

/// How long one database exchange may take before the demo calls it a failure.
const EXCHANGE_WITHIN: Duration = Duration::from_secs(5);

/// A database session from `app`'s side: a plain TCP connection to its sidecar's `local:`
/// port for the database.
struct Session {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Session {
    async fn open(fleet: &Fleet, app: &str) -> anyhow::Result<Session> {
        let local = fleet
            .sidecar(app)
            .and_then(|s| s.tcp_local_addr(DESTINATION))
            .with_context(|| format!("{app}'s sidecar has no {DESTINATION} destination"))?;
        let (read, write) = TcpStream::connect(local).await?.into_split();
        Ok(Session {
            lines: BufReader::new(read).lines(),
            write,
        })
    }

    /// Sends `command`; its reply line, or `None` once the connection was closed.
    async fn ask(&mut self, command: &str) -> Option<String> {
        self.write
            .write_all(format!("{command}\n").as_bytes())
            .await
            .ok()?;
        self.next_line(EXCHANGE_WITHIN).await
    }

    /// The next line within `within`; `None` if the connection closed (or nothing came).
    async fn next_line(&mut self, within: Duration) -> Option<String> {
        tokio::time::timeout(within, self.lines.next_line())
            .await
            .ok()?
            .ok()?
    }

    /// Whether the connection is closed within `within` (EOF or reset, no reply).
    async fn closed_within(&mut self, within: Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.lines.next_line()).await,
            Ok(Ok(None) | Err(_))
        )
    }
}

/// Plays the act; one row per step.
///
/// # Errors
/// A step that cannot even be attempted (a sidecar not listening, a policy edit refused).
pub async fn play(fleet: &Fleet, capture: &Capture) -> anyhow::Result<Vec<Row>> {
    // The story so far left a broken edit in the folder: start from the shipped policy.
    publish(fleet, FLEET_POLICY).await?;
    let db = fleet.database.as_ref().context("the demo database")?;
    Ok(vec![
        ledger_writes(fleet, capture).await?,
        runner_refused(fleet, capture, db).await?,
        revocation(fleet, capture).await?,
    ])
}

async fn ledger_writes(fleet: &Fleet, capture: &Capture) -> anyhow::Result<Row> {
    let mut session = Session::open(fleet, "ledger").await?;
    let inserted = session.ask("INSERT charge ch_1 42.00 EUR").await;
    let selected = session.ask("SELECT").await;
    let ok = inserted.as_deref() == Some("INSERT 0 1")
        && selected
            .as_deref()
            .is_some_and(|s| s.contains("ch_1 42.00 EUR"));
    let got = match (&inserted, &selected) {
        (Some(i), Some(s)) => format!("{i}; {}", s.split(':').next().unwrap_or("")),
        _ => "closed".to_owned(),
    };
    let (rule, reason) = decision(capture, "ledger", |l| {
        l["event"] == "open" && l["direction"] == "inbound"
    });
    Ok(Row {
        what: "L4 database: ledger → ledger-db INSERT, SELECT".to_owned(),
        expected: "row written and read back".to_owned(),
        got,
        ok: ok && rule.starts_with("ledger-uses-its-database"),
        rule,
        reason,
        request_id: String::new(),
    })
}

async fn runner_refused(fleet: &Fleet, capture: &Capture, db: &LedgerDb) -> anyhow::Result<Row> {
    let before = db.accepted();
    let mut session = Session::open(fleet, "ci-runner").await?;
    let answer = session.ask("SELECT").await;
    let closed = answer.is_none() && session.closed_within(EXCHANGE_WITHIN).await;
    let reached = db.accepted() - before;
    let (rule, reason) = decision(capture, "ci-runner", |l| {
        l["event"] == "open" && l["direction"] == "outbound"
    });
    Ok(Row {
        what: "L4 database: ci-runner → ledger-db SELECT".to_owned(),
        expected: "closed, database never sees it".to_owned(),
        got: format!(
            "{}, database saw {reached} connection(s)",
            if closed { "closed" } else { "answered" }
        ),
        ok: closed && reached == 0 && rule.starts_with("staging-never-reaches-prod"),
        rule,
        reason,
        request_id: String::new(),
    })
}

/// Revokes the ledger's identity while its database session is open, then restores.
async fn revocation(fleet: &Fleet, capture: &Capture) -> anyhow::Result<Row> {
    let mut session = Session::open(fleet, "ledger").await?;
    let before = session.ask("SELECT").await;
    let ledger = id_of_any("ledger");
    let revoked = FLEET_POLICY.replace("revoked:\n", &format!("revoked:\n  - {ledger}\n"));
    let started = Instant::now();
    let published = publish(fleet, &revoked).await?;
    let closed = session.closed_within(CUT_WITHIN).await;
    let after = started.elapsed();
    // Both sidecars re-decide; whichever closed first wrote `policy-revoked`.
    let (rule, reason) = decision(capture, "ledger", |l| {
        l["event"] == "close" && l["close_reason"] == "policy-revoked"
    });
    publish(fleet, FLEET_POLICY).await?;
    Ok(Row {
        what: "L4 live revocation: ledger's open database session".to_owned(),
        expected: "edit policy: session closed within 1 s".to_owned(),
        got: if closed {
            format!("closed {} ms after the edit", after.as_millis())
        } else {
            "still open".to_owned()
        },
        ok: published && before.is_some() && closed && reason == "revoked",
        rule,
        reason,
        request_id: String::new(),
    })
}

/// The deciding rule (with the sidecar that wrote it) and reason of the last TCP line from
/// `app` to the database that `which` picks.
fn decision(capture: &Capture, app: &str, which: impl Fn(&Value) -> bool) -> (String, String) {
    let (source, destination) = (id_of_any(app), DATABASE.1);
    let line = capture.lines().into_iter().rev().find(|l: &Value| {
        l["protocol"] == "tcp"
            && l["source_id"] == source
            && l["destination_id"] == destination
            && which(l)
    });
    super::rule_and_reason(line.as_ref())
}

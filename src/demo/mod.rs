//! `segward demo` (docs/demo.md): the identity-segmentation story on loopback with the real
//! code paths — a throwaway PKI, the example policy, demo workloads and a real sidecar for
//! each, all in this process — played as a table of requests: who → what, expected, got, the
//! deciding rule and reason (read back from the decision log by `x-request-id`). Its last act
//! contains the leaked staging CI token by pattern, as `policy contain` would (`contain`), then
//! a new workload is taken from audit mode to learned, enforced rules (`adopt`: `policy learn`,
//! `replay`, `unused` on the demo's own decision log); then come the blast-radius blocks.
//! Returns how many steps did not behave as expected; `cli` turns that into the exit code.
//! Nothing here imports `cli`. `--keep` leaves the fleet running.

mod act;
mod adopt;
mod blast;
mod contain;
mod l4;
mod ledger_db;
mod probe;
mod scenarios;
mod topology;
mod workload;

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::telemetry::decision_log::DecisionLayer;
use act::Row;
use blast::BlastRadius;
use topology::Fleet;

pub use topology::FLEET_POLICY;

/// Runs the demo and returns how many scenarios did not behave as expected (0: all did).
///
/// # Errors
/// The demo could not run: runtime, PKI, files or sidecars failed to start.
pub fn run(keep: bool) -> anyhow::Result<usize> {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(DecisionLayer::new(capture.clone()));
    // The demo owns this process: its decision lines go to the capture, nowhere else.
    let _ = tracing::subscriber::set_global_default(subscriber);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(keep, capture))
}

async fn demo(keep: bool, capture: Capture) -> anyhow::Result<usize> {
    let dir = scratch_dir();
    println!(
        "segward demo: a fleet of real sidecars on 127.0.0.1, in {}\n",
        dir.display()
    );
    let blast = BlastRadius::of(FLEET_POLICY)?;
    let fleet = Fleet::start(dir.clone()).await?;
    print_fleet(&fleet);
    let mut rows = scenarios::play(&fleet, &capture, &blast).await?;
    rows.extend(l4::play(&fleet, &capture).await?);
    let contained = contain::play(&fleet, &capture).await?;
    rows.extend(contained.rows);
    rows.extend(probe::play(&fleet, &capture).await?);
    let adopted = adopt::play(&fleet, &capture).await?;
    rows.extend(adopted.rows);
    let failures = print_rows(&rows);
    print!("\n{}", blast.text());
    print!("\n{}", contained.text);
    print!("\n{}", adopted.text);
    if keep {
        // The story edited the policy; put the shipped one back for exploring.
        act::write_policy(&fleet, FLEET_POLICY)?;
        print_keep(&fleet);
        tokio::signal::ctrl_c()
            .await
            .context("waiting for ctrl-c")?;
    }
    fleet.stop().await;
    // Scratch material (keys included) goes away with the demo.
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\neach scenario, step by step: docs/demo.md; a leaked credential at 3 a.m.: docs/runbook.md"
    );
    if failures == 0 {
        println!("\nall scenarios behaved as expected");
    } else {
        eprintln!("\n{failures} scenario(s) did not behave as expected");
    }
    Ok(failures)
}

fn print_fleet(fleet: &Fleet) {
    for (name, sidecar) in &fleet.sidecars {
        let (side, addr) = match (sidecar.inbound_addr(), sidecar.outbound_addr()) {
            (Some(addr), _) => ("inbound ", addr),
            (_, Some(addr)) => ("outbound", addr),
            _ => continue,
        };
        println!("  {name:<12} {side} {addr}  {}", sidecar.id());
    }
    println!("  policy       {}\n", fleet.policy_file.display());
}

/// Prints the table (columns as wide as their widest cell); returns how many rows failed.
fn print_rows(rows: &[Row]) -> usize {
    let colour = std::io::stdout().is_terminal();
    let paint = |ok: bool| match (ok, colour) {
        (true, true) => "\x1b[32mok  \x1b[0m",
        (false, true) => "\x1b[31mFAIL\x1b[0m",
        (true, false) => "ok  ",
        (false, false) => "FAIL",
    };
    let header = [
        "who → what",
        "expected",
        "got",
        "deciding rule (sidecar)",
        "reason",
    ];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.what.clone(),
                r.expected.clone(),
                r.got.clone(),
                r.rule.clone(),
                clip(&r.reason, 60),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    println!("      {}", line(header));
    for (row, cells) in rows.iter().zip(&cells) {
        println!(
            "{}  {}",
            paint(row.ok),
            line(cells.each_ref().map(String::as_str))
        );
    }
    rows.iter().filter(|row| !row.ok).count()
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{cut}…")
}

fn print_keep(fleet: &Fleet) {
    let outbound = |name: &str| {
        fleet
            .sidecar(name)
            .and_then(|s| s.outbound_addr())
            .map_or_else(String::new, |a| a.to_string())
    };
    let admin = fleet
        .sidecar("payments")
        .map_or_else(String::new, |s| s.admin_addr().to_string());
    let policy_dir = fleet.dir.join("policies");
    println!("\nthe fleet keeps running (ctrl-c to stop); try:");
    println!(
        "  curl -X POST -x http://{} http://payments/v1/charges   # as frontend: allowed",
        outbound("frontend")
    );
    println!(
        "  curl -x http://{} http://payments/v1/charges           # as the staging CI runner: 403",
        outbound("ci-runner")
    );
    println!(
        "  curl -X POST -x http://{} http://payments/v1/refunds   # as the agent's read identity: 403",
        outbound("agent-read")
    );
    if let Some(db) = fleet
        .sidecar("ledger")
        .and_then(|s| s.tcp_local_addr("ledger-db"))
    {
        println!(
            "  printf 'SELECT\\n' | nc {} {}   # the ledger's database, through the ledger's sidecar (L4)",
            db.ip(),
            db.port()
        );
    }
    println!("  curl http://{admin}/metrics                             # payments' sidecar");
    println!("  curl http://{admin}/policy");
    println!(
        "  segward policy explain {} --from spiffe://example.org/ns/prod/agent/copilot/read \\\n      --to spiffe://example.org/ns/prod/sa/payments --method POST --path /v1/refunds",
        policy_dir.display()
    );
    println!(
        "  segward policy contain {} --identity 'spiffe://example.org/ns/staging/**' \\\n      --reason 'leaked CI token' --until 1h --suspend-tests   # then: segward policy release …",
        policy_dir.display()
    );
    println!(
        "  edit {} — every sidecar reloads it live",
        fleet.policy_file.display()
    );
    let _ = std::io::stdout().flush();
}

/// The decision log of every sidecar of the demo, kept in memory.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Every decision line so far, parsed.
    fn lines(&self) -> Vec<Value> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The deciding line of request `request_id`: a refusing line if any sidecar refused,
    /// else the inbound sidecar's line.
    fn deciding_line(&self, request_id: &str) -> Option<Value> {
        let mut lines: Vec<Value> = self
            .lines()
            .into_iter()
            .filter(|line| line["request_id"] == request_id)
            .collect();
        let deciding = lines
            .iter()
            .position(|l| l["decision"] != "allow")
            .or_else(|| lines.iter().position(|l| l["direction"] == "inbound"))
            .or((!lines.is_empty()).then_some(0))?;
        Some(lines.swap_remove(deciding))
    }

    /// The deciding rule (with the deciding sidecar) and reason of request `request_id`.
    fn decision_of(&self, request_id: &str) -> (String, String) {
        rule_and_reason(self.deciding_line(request_id).as_ref())
    }

    /// The policy version that decided request `request_id`, if any policy did.
    fn policy_version_of(&self, request_id: &str) -> Option<String> {
        let line = self.deciding_line(request_id)?;
        line["policy_version"].as_str().map(str::to_owned)
    }
}

/// A decision line's deciding rule with the sidecar that wrote it (the reason when no rule
/// decided), and its reason; a placeholder when there is no line.
fn rule_and_reason(line: Option<&Value>) -> (String, String) {
    let Some(line) = line else {
        return ("(no decision line)".to_owned(), String::new());
    };
    let text = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
    let reason = text("reason");
    let rule = if line["rule"].is_string() {
        text("rule")
    } else {
        reason.clone()
    };
    (format!("{rule} ({})", text("direction")), reason)
}

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Capture {
    type Writer = Capture;

    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

/// The scratch folder of this demo run.
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("segward-demo-{}", std::process::id()))
}

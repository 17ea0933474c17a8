//! From audit to least privilege (docs/least-privilege.md, issue 28 part 6): a new workload,
//! `invoices`, and its caller `reports` join the fleet with no rule of their own, their
//! sidecars in `mode: audit`. Traffic runs (let through, logged `would-deny`); `policy learn`
//! proposes rules from the demo's own decision log, with the reach they grant (`diff`); the
//! proposal is published beside the shipped policy and both sidecars restart enforcing it —
//! the same traffic is allowed by the learned rules; replaying the audit log under it breaks
//! nothing; `policy unused` then finds a grant of the shipped policy wider than its use. The
//! same library calls as the commands ([`crate::evidence`]); the learned file is removed at the
//! end, so the shipped policy is what `--keep` leaves running.

use std::fmt::Write as _;
use std::io::Cursor;
use std::time::Duration;

use anyhow::Context as _;
use http::StatusCode;

use super::Capture;
use super::act::{Row, connect_to, send, wait_for};
use super::topology::{FLEET_POLICY, Fleet};
use super::workload::Workload;
use crate::app::Sidecar;
use crate::atomic_file::AtomicWrite;
use crate::certs;
use crate::evidence::learn::{self, Joined};
use crate::evidence::read::{Read, log_lines};
use crate::evidence::{Observations, replay, unused};
use crate::identity::SpiffeId;
use crate::policy::analysis::{Layout, changes_text, diff};
use crate::policy::{self, CompiledPolicy, PolicySource};

/// The new caller and the new workload.
const REPORTS: (&str, &str) = ("reports", "spiffe://example.org/ns/prod/sa/reports");
const INVOICES: (&str, &str) = ("invoices", "spiffe://example.org/ns/prod/sa/invoices");

/// What reports asks of invoices: three invoice ids and one create.
const TRAFFIC: [(&str, &str); 4] = [
    ("GET", "http://invoices/v1/invoices/1001"),
    ("GET", "http://invoices/v1/invoices/1002"),
    ("GET", "http://invoices/v1/invoices/1003"),
    ("POST", "http://invoices/v1/invoices"),
];

/// The learned file, written beside the shipped policy.
const LEARNED_FILE: &str = "learned.yaml";

/// What the adoption scenario printed.
pub struct Adopted {
    /// The table rows (they count toward the demo's failures).
    pub rows: Vec<Row>,
    /// The printed block.
    pub text: String,
}

/// The two new sidecars and invoices' workload.
struct Newcomers {
    workload: Workload,
    invoices: Sidecar,
    reports: Sidecar,
}

impl Newcomers {
    /// Starts invoices' workload and both sidecars, in `mode: audit` or enforcing.
    async fn start(fleet: &Fleet, workload: Workload, audit: bool) -> anyhow::Result<Self> {
        let mode = if audit { "mode: audit\n" } else { "" };
        let inbound = format!(
            "inbound:\n  listen: 127.0.0.1:0\n  upstream: {}\n{mode}",
            workload.addr()
        );
        let invoices = fleet.start_sidecar(INVOICES.0, &inbound).await?;
        let addr = invoices.inbound_addr().context("invoices inbound bound")?;
        let outbound = format!(
            "outbound:\n  listen: 127.0.0.1:0\n  destinations:\n    invoices:\n      address: {addr}\n      spiffe_id: {}\n{mode}",
            INVOICES.1
        );
        let reports = fleet.start_sidecar(REPORTS.0, &outbound).await?;
        Ok(Self {
            workload,
            invoices,
            reports,
        })
    }

    /// Stops both sidecars; keeps the workload.
    async fn stop(self) -> Workload {
        self.reports.shutdown().await;
        self.invoices.shutdown().await;
        self.workload
    }

    /// Sends [`TRAFFIC`] from reports; each reply's status and deciding rule and reason.
    async fn traffic(
        &self,
        capture: &Capture,
    ) -> anyhow::Result<Vec<(StatusCode, String, String)>> {
        let addr = self
            .reports
            .outbound_addr()
            .context("reports outbound bound")?;
        let mut conn = connect_to(addr).await?;
        let mut out = Vec::new();
        for (method, target) in TRAFFIC {
            let reply = send(&mut conn, method, target, false).await?;
            let line = capture.deciding_line(&reply.request_id);
            let text = |key: &str| {
                line.as_ref()
                    .and_then(|l| l[key].as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            out.push((reply.status, text("decision"), text("rule")));
        }
        Ok(out)
    }
}

/// The demo's decision log so far, read as `policy learn --log` reads a file.
fn evidence(capture: &Capture) -> Observations {
    let bytes = capture
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut observations = Observations::default();
    let mut read = Read::default();
    log_lines(
        &mut Cursor::new(bytes),
        "demo",
        &mut observations,
        &mut read,
    );
    observations
}

/// Plays the adoption story after the others (the policy folder holds the shipped policy).
///
/// # Errors
/// A step that cannot even be attempted: PKI, files, sidecars, a policy that does not compile.
pub async fn play(fleet: &Fleet, capture: &Capture) -> anyhow::Result<Adopted> {
    for (name, id) in [REPORTS, INVOICES] {
        let id = SpiffeId::parse(id)?;
        let ca = fleet.dir.join("ca").join(id.trust_domain());
        certs::issue(
            &ca,
            &id,
            &fleet.dir.join("certs").join(name),
            Duration::from_secs(3600),
            &[],
        )
        .with_context(|| format!("issuing {name}'s SVID"))?;
    }
    let shipped = policy::from_text("fleet.yaml", FLEET_POLICY)
        .map_err(|e| anyhow::anyhow!("the shipped policy: {e}"))?;
    let mut rows = Vec::new();
    let mut text = String::from(
        "from audit to least privilege: invoices and reports join with no rule, in audit mode\n",
    );

    // 1. Audit: everything goes through, logged would-deny.
    let newcomers = Newcomers::start(fleet, Workload::start(INVOICES.0).await?, true).await?;
    let audited = newcomers.traffic(capture).await?;
    let ok = audited
        .iter()
        .all(|(s, d, _)| *s == StatusCode::OK && d == "would-deny");
    rows.push(row(
        "adopt: reports → invoices, audit mode",
        "let through, would-deny",
        format!("{}×200, would-deny", audited.len()),
        "default-deny (outbound)",
        ok,
    ));
    let workload = newcomers.stop().await;

    // 2. Learn from the demo's own log, joined to the shipped policy; the reach it grants.
    let observations = evidence(capture);
    let mut learned = learn::learn(&observations, Some(&shipped));
    let current = [("fleet.yaml".to_owned(), FLEET_POLICY.to_owned())];
    let Joined {
        yaml,
        policy: joined,
        ..
    } = learn::join(
        &mut learned,
        "learned by segward demo",
        &current,
        LEARNED_FILE,
    )
    .map_err(|e| anyhow::anyhow!("the learned policy: {e}"))?;
    let grants = diff(&reach(&shipped)?, &reach(&joined)?);
    let names: Vec<&str> = learned.rules.iter().map(|r| r.name.as_str()).collect();
    let _ = writeln!(
        text,
        "  learn proposes {} rule(s): {}",
        names.len(),
        names.join(", ")
    );
    for line in changes_text(&grants, Layout::Review).lines() {
        let _ = writeln!(text, "    {line}");
    }
    rows.push(row(
        "adopt: policy learn from the audit log",
        "reports → invoices only",
        format!(
            "{} rule(s), {} reach change(s)",
            names.len(),
            grants.changes.len()
        ),
        "learn (diff: added)",
        grants.changes.len() == 1 && grants.grows() && names.len() == 2,
    ));

    // 3. Enforce: publish the learned file beside the shipped policy, restart enforcing.
    let dir = fleet.policy_file.parent().context("policy folder")?;
    AtomicWrite::new().write(&dir.join(LEARNED_FILE), &yaml)?;
    let version = joined.version().to_owned();
    let published = wait_for(fleet, |s| s.live().policy().version() == version).await;
    let newcomers = Newcomers::start(fleet, workload, false).await?;
    let enforced = newcomers.traffic(capture).await?;
    let ok = published
        && enforced
            .iter()
            .all(|(s, d, r)| *s == StatusCode::OK && d == "allow" && r.starts_with("learn-"));
    rows.push(row(
        "adopt: learned rules enforced",
        "allowed by learn-…",
        format!("{}×200", enforced.len()),
        enforced.first().map_or("", |e| e.2.as_str()),
        ok,
    ));
    newcomers.stop().await;

    // 4. Replay the audit log under the enforced policy: no allow → deny.
    let replayed = replay(&joined, &observations);
    let _ = writeln!(
        text,
        "  replay of the demo's log under it: {} allow -> deny, {} deny -> allow, {} unchanged",
        replayed.breaks(),
        replayed.admits(),
        replayed.unchanged
    );
    rows.push(row(
        "adopt: policy replay of the audit log",
        "0 allow → deny",
        format!(
            "{} allow → deny, {} admitted",
            replayed.breaks(),
            replayed.admits()
        ),
        "replay",
        replayed.breaks() == 0 && replayed.admits() > 0,
    ));

    // 5. What of the shipped policy the whole demo never used.
    let source = PolicySource::from_texts([("fleet.yaml", FLEET_POLICY)])
        .map_err(|e| anyhow::anyhow!("the shipped policy: {e}"))?;
    let keep = unused::asserted_rules(&shipped, &source);
    let found = unused::unused(&shipped, &evidence(capture), None, &keep);
    let wider: Vec<_> = found
        .findings
        .iter()
        .filter(|f| f.kind == "rule-wider-than-used")
        .collect();
    for f in &wider {
        let _ = writeln!(text, "  unused: {} {}: {}", f.kind, f.subject, f.message);
    }
    rows.push(row(
        "adopt: policy unused on the shipped policy",
        "a grant wider than its use",
        wider
            .first()
            .map_or_else(|| "none found".to_owned(), |f| f.subject.clone()),
        "rule-wider-than-used",
        !wider.is_empty(),
    ));

    // The shipped policy again, for --keep and whatever runs next.
    std::fs::remove_file(dir.join(LEARNED_FILE))?;
    let version = shipped.version().to_owned();
    wait_for(fleet, |s| s.live().policy().version() == version).await;
    Ok(Adopted { rows, text })
}

fn reach(policy: &CompiledPolicy) -> anyhow::Result<policy::Reach> {
    policy::reach_texts(policy, "*", "*").map_err(|e| anyhow::anyhow!("{e}"))
}

fn row(what: &str, expected: &str, got: String, rule: &str, ok: bool) -> Row {
    Row {
        what: what.to_owned(),
        expected: expected.to_owned(),
        got,
        rule: rule.to_owned(),
        reason: String::new(),
        ok,
        request_id: String::new(),
    }
}

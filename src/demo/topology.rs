//! The demo fleet on loopback: a throwaway PKI minted with `segward certs` code, the example
//! policy copied to a scratch folder (so the demo can edit it live), three workloads behind
//! inbound sidecars (payments, ledger, and staging-api, where the CI runner deploys), the
//! ledger's database behind an inbound TCP sidecar (L4 mode), and one outbound sidecar per
//! caller — frontend, the staging CI runner, an AI agent's read and write identities and two
//! third-party integrations — all real `Sidecar`s started from YAML configs, in this process.
//! Every caller, and the ledger, reaches the database through a `protocol: tcp` destination.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::ledger_db::{self, LedgerDb};
use super::workload::Workload;
use crate::app::Sidecar;
use crate::atomic_file::AtomicWrite;
use crate::certs;
use crate::config::Config;
use crate::identity::{SpiffeId, TrustDomain};

/// The example policy, as shipped in `policies/fleet.yaml`.
pub const FLEET_POLICY: &str = include_str!("../../policies/fleet.yaml");

/// Callers: (name, SPIFFE ID). Each gets an outbound sidecar.
pub const CALLERS: &[(&str, &str)] = &[
    ("frontend", "spiffe://example.org/ns/prod/sa/frontend"),
    ("ci-runner", "spiffe://example.org/ns/staging/sa/ci-runner"),
    (
        "agent-read",
        "spiffe://example.org/ns/prod/agent/copilot/read",
    ),
    (
        "agent-write",
        "spiffe://example.org/ns/prod/agent/copilot/write",
    ),
    ("partner", "spiffe://partner.example/integrations/acme"),
    ("partner-2", "spiffe://partner.example/integrations/globex"),
];

/// Callees: (name, SPIFFE ID). Each is a workload behind an inbound sidecar.
pub const CALLEES: &[(&str, &str)] = &[
    ("payments", "spiffe://example.org/ns/prod/sa/payments"),
    ("ledger", "spiffe://example.org/ns/prod/sa/ledger"),
    ("staging-api", "spiffe://example.org/ns/staging/sa/api"),
];

/// The database (name, SPIFFE ID), behind an inbound TCP sidecar.
pub const DATABASE: (&str, &str) = ("ledger-db", "spiffe://example.org/ns/prod/sa/ledger-db");

/// The SPIFFE ID of any demo workload by name ("" if there is none).
pub fn id_of_any(name: &str) -> &'static str {
    CALLERS
        .iter()
        .chain(CALLEES)
        .chain([&DATABASE])
        .find(|(n, _)| *n == name)
        .map_or("", |(_, id)| id)
}

const TRUST_DOMAINS: [&str; 2] = ["example.org", "partner.example"];

/// Every running part of the demo.
pub struct Fleet {
    /// The scratch folder: certificates, configs, the policy copy.
    pub dir: PathBuf,
    /// The policy file the sidecars watch.
    pub policy_file: PathBuf,
    /// Callee workloads (kept alive while the fleet runs).
    pub workloads: Vec<Workload>,
    /// The ledger's database (L4).
    pub database: Option<LedgerDb>,
    /// (name, sidecar) for every callee (inbound) and caller (outbound).
    pub sidecars: Vec<(&'static str, Sidecar)>,
}

impl Fleet {
    /// Mints the PKI, writes the configs and starts workloads and sidecars under `dir`.
    ///
    /// # Errors
    /// Anything that stops a part from starting, with context naming it.
    pub async fn start(dir: PathBuf) -> anyhow::Result<Fleet> {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        mint(&dir)?;
        let policy_dir = dir.join("policies");
        fs::create_dir_all(&policy_dir)?;
        let policy_file = policy_dir.join("fleet.yaml");
        AtomicWrite::new().write(&policy_file, FLEET_POLICY)?;
        let mut fleet = Fleet {
            dir,
            policy_file,
            workloads: Vec::new(),
            database: None,
            sidecars: Vec::new(),
        };
        let database = fleet.start_database().await?;
        let mut inbound = Vec::new();
        for (name, _) in CALLEES {
            let workload = Workload::start(name).await?;
            let mut listeners = format!(
                "inbound:\n  listen: 127.0.0.1:0\n  upstream: {}\n",
                workload.addr()
            );
            if *name == "ledger" {
                // The ledger service uses its database: an outbound side with only it.
                listeners.push_str("outbound:\n  destinations:\n");
                listeners.push_str(&database_destination(database));
            }
            let sidecar = fleet.start_sidecar(name, &listeners).await?;
            inbound.push((*name, sidecar.inbound_addr().context("inbound bound")?));
            fleet.workloads.push(workload);
            fleet.sidecars.push((name, sidecar));
        }
        let mut outbound = outbound_block(&inbound);
        outbound.push_str(&database_destination(database));
        for (name, _) in CALLERS {
            let sidecar = fleet.start_sidecar(name, &outbound).await?;
            fleet.sidecars.push((name, sidecar));
        }
        Ok(fleet)
    }

    /// Starts the database and its inbound TCP sidecar; returns that sidecar's address.
    async fn start_database(&mut self) -> anyhow::Result<SocketAddr> {
        let (name, _) = DATABASE;
        let database = LedgerDb::start().await?;
        let listeners = format!(
            "inbound:\n  - {{ listen: 127.0.0.1:0, upstream: {}, protocol: tcp }}\n",
            database.addr()
        );
        let sidecar = self.start_sidecar(name, &listeners).await?;
        let addr = sidecar.inbound_addr().context("database inbound bound")?;
        self.database = Some(database);
        self.sidecars.push((name, sidecar));
        Ok(addr)
    }

    /// The sidecar of workload `name`.
    pub fn sidecar(&self, name: &str) -> Option<&Sidecar> {
        self.sidecars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
    }

    /// Writes `name`'s config and starts its sidecar.
    pub(super) async fn start_sidecar(
        &self,
        name: &str,
        listeners: &str,
    ) -> anyhow::Result<Sidecar> {
        let file = self.dir.join(format!("{name}.yaml"));
        AtomicWrite::new().write(&file, config_yaml(name, listeners))?;
        let mut config = Config::load(&file)?;
        // A demo edit should show within a blink, not a debounce later.
        config.reload.debounce = Duration::from_millis(50);
        Sidecar::start(&config)
            .await
            .with_context(|| format!("starting {name}'s sidecar"))
    }

    /// Stops every sidecar (draining) and workload.
    pub async fn stop(self) {
        for (_, sidecar) in self.sidecars {
            sidecar.shutdown().await;
        }
    }
}

/// A CA per trust domain and an SVID per workload, with the project's `certs` code.
fn mint(dir: &Path) -> anyhow::Result<()> {
    for td in TRUST_DOMAINS {
        certs::init(&TrustDomain::parse(td)?, &dir.join("ca").join(td), true)?;
    }
    for (name, id) in CALLERS.iter().chain(CALLEES).chain([&DATABASE]) {
        let id = SpiffeId::parse(id)?;
        let ca = dir.join("ca").join(id.trust_domain());
        let ttl = Duration::from_secs(3600);
        certs::issue(&ca, &id, &dir.join("certs").join(name), ttl, &[])
            .with_context(|| format!("issuing {name}'s SVID"))?;
    }
    Ok(())
}

/// A sidecar config (docs/configuration.md) for workload `name`; paths relative to the demo folder.
fn config_yaml(name: &str, listeners: &str) -> String {
    let mut yaml = format!(
        "identity:\n  cert: certs/{name}/svid.pem\n  key: certs/{name}/svid.key\n  bundles:\n"
    );
    for td in TRUST_DOMAINS {
        let _ = writeln!(yaml, "    {td}: ca/{td}/bundle.pem");
    }
    let _ = write!(
        yaml,
        "policy: policies/\n{listeners}{}admin:\n  listen: 127.0.0.1:0\n",
        super::probe::DETECT
    );
    yaml
}

/// Every caller routes each callee name to that callee's inbound sidecar.
fn outbound_block(inbound: &[(&str, SocketAddr)]) -> String {
    let mut yaml = String::from("outbound:\n  listen: 127.0.0.1:0\n  destinations:\n");
    for (name, addr) in inbound {
        let id = CALLEES
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, id)| id);
        let _ = writeln!(
            yaml,
            "    {name}:\n      address: {addr}\n      spiffe_id: {id}"
        );
    }
    yaml
}

/// The `protocol: tcp` destination entry for the database at `addr` (an app connects to its
/// sidecar's `local:` port, any free one here).
fn database_destination(addr: SocketAddr) -> String {
    format!(
        "    {}:\n      address: {addr}\n      spiffe_id: {}\n      protocol: tcp\n      local: 127.0.0.1:0\n",
        ledger_db::DESTINATION,
        DATABASE.1
    )
}

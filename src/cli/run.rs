//! `segward run --config FILE`: the sidecar process (docs/cli.md, §4 "fail closed", §6).
//! Loads and checks everything before listening; exits 1 naming the file at fault; on SIGTERM
//! or ctrl-c stops accepting, drains in-flight requests and exits 0.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::Outcome;
use crate::app::Sidecar;
use crate::config::Config;
use crate::telemetry::logging;

/// Arguments of `segward run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sidecar configuration (YAML; docs/configuration.md). Relative paths in it resolve against
    /// its folder. The identity is `identity: {cert, key, bundles}` files, or a SPIRE agent:
    /// `identity: {workload_api: unix:///…}`, or no identity section and the
    /// SPIFFE_ENDPOINT_SOCKET variable (then /readyz is 503 until the first SVID arrives).
    #[arg(long, short, env = "SEGWARD_CONFIG", value_name = "FILE")]
    config: PathBuf,
}

/// Runs the sidecar until SIGTERM or ctrl-c.
pub fn run(args: RunArgs) -> anyhow::Result<Outcome> {
    logging::init().map_err(anyhow::Error::msg)?;
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(Outcome::Invalid);
        }
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    // Loop 0 of `limits.worker_threads`: the sidecar starts the other loops itself
    // (crate::workers), each a single-threaded runtime like this one.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(serve(config));
    // Decision lines are written in batches: the last ones go out before the process exits.
    logging::flush();
    outcome
}

async fn serve(config: Config) -> anyhow::Result<Outcome> {
    // Start-up can wait (for the first SVID of the Workload API): SIGTERM ends that wait too.
    let started = tokio::select! {
        started = Sidecar::start(&config) => started,
        signal = terminated() => {
            signal.context("waiting for SIGTERM")?;
            tracing::info!("stopped before start-up completed");
            return Ok(Outcome::Success);
        }
    };
    let sidecar = match started {
        Ok(sidecar) => sidecar,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(Outcome::Invalid);
        }
    };
    let policy = sidecar.live().policy();
    tracing::info!(
        spiffe_id = %sidecar.id(),
        inbound = ?sidecar.inbound_addr(),
        outbound = ?sidecar.outbound_addr(),
        policy_version = policy.version(),
        event_loops = sidecar.event_loops(),
        mode = ?config.mode,
        "segward running"
    );
    drop(policy);
    terminated().await.context("waiting for SIGTERM")?;
    tracing::info!(drain = ?config.limits.drain, "shutting down: draining in-flight requests");
    sidecar.shutdown().await;
    tracing::info!("stopped");
    Ok(Outcome::Success)
}

/// Resolves on SIGTERM (what Kubernetes and Docker send) or SIGINT (ctrl-c).
async fn terminated() -> std::io::Result<()> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = sigterm.recv() => Ok(()),
        result = tokio::signal::ctrl_c() => result,
    }
}

//! Fixtures shared by the integration tests: a throwaway PKI ([`pki`]), a recording backend
//! ([`backend`]), real TLS and plain HTTP clients ([`client`]), sidecars started from YAML
//! configs ([`sidecar`]), TCP servers for L4 tests ([`tcp`]), a real PostgreSQL server
//! ([`postgres`]), a stand-in SPIRE agent speaking the Workload API ([`spire`]), the real binary as a process ([`process`]), what a test does when a system component is missing
//! ([`component`]), and [`eventually`].

pub mod backend;
pub mod client;
pub mod component;
pub mod metrics;
pub mod pki;
pub mod policy_gen;
pub mod postgres;
pub mod process;
pub mod sidecar;
pub mod spire;
pub mod tcp;

use std::time::Duration;

use tokio::time::Instant;

/// How often [`eventually`] polls.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` every 20 ms until it returns `true` (then `true`) or `timeout` passes (then
/// `false`): the way to wait for a side effect instead of sleeping a fixed time.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

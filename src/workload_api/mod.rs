//! The SPIFFE Workload API as an identity source (docs/spire.md): a client of the SPIRE
//! agent's `FetchX509SVID` stream that turns every response into checked [`Credentials`]
//! (the room of ghostunnel's `certloader` and ztunnel's identity manager). The reloader
//! starts it and applies what it delivers (`crate::reload`); `crate::tls` only builds rustls
//! configs from the credentials.
//!
//! [`spawn`] connects to the agent's socket (`unix:` or `tcp:`), opens one HTTP/2 connection
//! (hyper, our own — no second HTTP stack: `agent.rs`), sends `FetchX509SVID` with the
//! `workload.spiffe.io: true` metadata the agent requires, and hands each response to the
//! receiver as an [`Update`] (`svid.rs`): the first SVID of the response is ours, its `bundle`
//! is our trust domain's and `federated_bundles` adds the foreign ones. A response that cannot
//! be our identity is an `Err` update (logged and counted by the receiver; the material in
//! force stays). When the stream ends or the agent is absent, it reconnects after a capped
//! exponential [`Backoff`], reset once a stream has delivered an update; it stops when the
//! shutdown fires or the receiver is gone (`client.rs`).
//!
//! The generated code ([`pb`]) is the official `proto/workload.proto` run through
//! `tonic-prost-build` (scripts/gen-workload-api.sh); its server half serves the tests'
//! stand-in agent.

mod agent;
mod client;
/// Generated from `proto/workload.proto`: messages, client and server of `SpiffeWorkloadAPI`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    rustdoc::invalid_html_tags
)]
pub mod pb;
mod svid;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use agent::{AgentConnection, AgentService, SECURITY_HEADER, connect, fetch_request};
pub use svid::credentials_from;

use crate::config::{Backoff, WorkloadEndpoint};
use crate::shutdown::Shutdown;
use crate::tls::{Credentials, TlsError};

/// One `FetchX509SVID` response: our checked credentials, or why they are refused.
pub type Update = Result<Credentials, TlsError>;

/// The receiving end of the updates [`spawn`] produces.
#[derive(Debug)]
pub struct SvidUpdates(mpsc::Receiver<Update>);

impl SvidUpdates {
    /// The next update; `None` once the client has stopped.
    pub async fn next(&mut self) -> Option<Update> {
        self.0.recv().await
    }
}

/// Starts the client of `endpoint`; it runs until `shutdown` fires or the [`SvidUpdates`]
/// are dropped.
pub fn spawn(
    endpoint: WorkloadEndpoint,
    backoff: Backoff,
    shutdown: Shutdown,
) -> (SvidUpdates, JoinHandle<()>) {
    // Small: a receiver that falls behind holds the stream, so stale SVIDs do not pile up.
    let (tx, rx) = mpsc::channel(2);
    let task = tokio::spawn(client::run(endpoint, backoff, tx, shutdown));
    (SvidUpdates(rx), task)
}

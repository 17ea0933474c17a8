//! Every loop that keeps the state current, all owned here (docs/operations.md, §10, §12): the
//! triggers of file reloads (folder watch, SIGHUP, periodic re-check: `watch.rs`), the SPIFFE
//! Workload API stream whose updates are published like file rotations, and the policy-expiry
//! schedule (`expiry.rs`). [`Loops::arm`] runs before the first load — so that a change
//! landing while the first state is built is not lost, and so that the first load can wait for
//! the agent's first SVID — and [`Loops::spawn`] once the listeners are bound.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::error::{Part, ReloadError};
use super::source::{CredentialSource, Sources};
use super::status::StatusBoard;
use super::watch::Triggers;
use super::{Change, Reloader, expiry, record};
use crate::config::ReloadTiming;
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::Metrics;
use crate::tls::Credentials;
use crate::workload_api::{self, SvidUpdates};

/// The armed, not yet running, reload loops of one sidecar.
pub struct Loops {
    triggers: Triggers,
    /// The Workload API client, when it is the credential source.
    stream: Option<SvidStream>,
}

/// The running Workload API client and the receiving end of its updates.
struct SvidStream {
    svids: SvidUpdates,
    client: JoinHandle<()>,
}

impl Loops {
    /// Starts watching the folders of `sources` (if `timing.watch_files`) and listening for
    /// SIGHUP, and starts the Workload API client when the credentials come from it. Call it
    /// from within the runtime, before the first load.
    pub fn arm(sources: &Sources, timing: ReloadTiming, shutdown: &Shutdown) -> Self {
        let triggers = Triggers::install(&sources.folders(), timing);
        let stream = match &sources.credentials {
            CredentialSource::Files(_) => None,
            CredentialSource::WorkloadApi(api) => {
                let (svids, client) =
                    workload_api::spawn(api.endpoint.clone(), api.backoff, shutdown.clone());
                tracing::info!(
                    endpoint = %api.endpoint,
                    named_by = api.named_by,
                    "waiting for the first X509-SVID from the SPIFFE Workload API; /readyz says \
                     503 and no data-plane listener is open until it arrives"
                );
                Some(SvidStream { svids, client })
            }
        };
        Self { triggers, stream }
    }

    /// Whether the first load waits for the first SVID of the Workload API.
    pub fn awaits_svid(&self) -> bool {
        self.stream.is_some()
    }

    /// Waits for the first valid SVID of the Workload API; refused ones are recorded as
    /// rejected TLS reloads (the wait goes on).
    pub(super) async fn first_svid(
        &mut self,
        status: &StatusBoard,
        metrics: &Metrics,
    ) -> Result<Credentials, ReloadError> {
        let Some(stream) = &mut self.stream else {
            return Err(ReloadError::NoSvid);
        };
        loop {
            match stream.svids.next().await {
                Some(Ok(credentials)) => {
                    tracing::info!(
                        spiffe_id = %credentials.id(),
                        "first X509-SVID from the SPIFFE Workload API"
                    );
                    return Ok(credentials);
                }
                Some(Err(error)) => {
                    let refused = Change::Rejected(ReloadError::InvalidTls(error));
                    record(status, metrics, Part::Tls, &refused);
                }
                None => return Err(ReloadError::NoSvid),
            }
        }
    }

    /// Runs every loop for `reloader` until `shutdown`: the reload triggers (an event that
    /// came since [`Loops::arm`] is the first one), the expiry schedule, and the application of
    /// each Workload API update. Returns the tasks to await when draining.
    pub fn spawn(self, reloader: Arc<Reloader>, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            expiry::spawn(reloader.clone(), shutdown.clone()),
            self.triggers.spawn(reloader.clone(), shutdown),
        ];
        if let Some(SvidStream { mut svids, client }) = self.stream {
            tasks.push(client);
            // Ends when the client stops (at shutdown), having sent its last update.
            tasks.push(tokio::spawn(async move {
                while let Some(update) = svids.next().await {
                    reloader.apply_svid(update).await;
                }
            }));
        }
        tasks
    }
}

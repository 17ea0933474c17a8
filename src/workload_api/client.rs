//! The client's life: one `FetchX509SVID` stream at a time, each response checked and sent
//! on as an [`Update`]; when the stream ends or the agent is absent, a reconnect after a capped
//! exponential [`Backoff`], reset once a stream has delivered an update.

use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::agent::{connect, fetch_request};
use super::{Update, svid::credentials_from};
use crate::config::{Backoff, WorkloadEndpoint};
use crate::shutdown::Shutdown;

/// Streams from `endpoint` into `tx`, reconnecting, until `shutdown` or the receiver is gone.
pub(super) async fn run(
    endpoint: WorkloadEndpoint,
    backoff: Backoff,
    tx: mpsc::Sender<Update>,
    mut shutdown: Shutdown,
) {
    let mut delay = backoff.initial;
    loop {
        let outcome = tokio::select! {
            outcome = stream_once(&endpoint, &tx) => outcome,
            () = shutdown.wait() => return,
        };
        let (delivered, error) = match outcome {
            Ended::ReceiverGone => return,
            Ended::Closed { delivered } => (delivered, None),
            Ended::Failed { delivered, error } => (delivered, Some(error)),
        };
        if delivered {
            delay = backoff.initial;
        }
        lost(&endpoint, error, delay);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.wait() => return,
        }
        delay = (delay * 2).min(backoff.max);
    }
}

/// Logs a stream that ended (`error`: `None` when the agent closed it cleanly).
fn lost(endpoint: &WorkloadEndpoint, error: Option<String>, retry_in: Duration) {
    match error {
        None => tracing::warn!(
            endpoint = %endpoint,
            ?retry_in,
            "SPIFFE Workload API stream ended; reconnecting (the material in force stays \
             until it expires)"
        ),
        Some(error) => tracing::warn!(
            endpoint = %endpoint,
            %error,
            ?retry_in,
            "SPIFFE Workload API unavailable; retrying (the material in force stays \
             until it expires)"
        ),
    }
}

/// How one connection's stream ended.
enum Ended {
    /// Nobody listens for updates any more.
    ReceiverGone,
    /// The agent ended the stream cleanly.
    Closed { delivered: bool },
    /// No connection, a refused call, or a broken stream.
    Failed { delivered: bool, error: String },
}

async fn stream_once(endpoint: &WorkloadEndpoint, tx: &mpsc::Sender<Update>) -> Ended {
    let failed = |error: String| Ended::Failed {
        delivered: false,
        error,
    };
    let mut connection = match connect(endpoint).await {
        Ok(connection) => connection,
        Err(error) => return failed(error),
    };
    let mut stream = match connection.client().fetch_x509svid(fetch_request()).await {
        Ok(response) => response.into_inner(),
        Err(status) => return failed(describe(&status)),
    };
    let mut delivered = false;
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return Ended::Closed { delivered },
            Err(status) => {
                return Ended::Failed {
                    delivered,
                    error: describe(&status),
                };
            }
        };
        // Parsing and checking is a few hundred microseconds, once per rotation.
        let update = credentials_from(&message, SystemTime::now());
        if tx.send(update).await.is_err() {
            return Ended::ReceiverGone;
        }
        delivered = true;
    }
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

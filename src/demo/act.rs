//! The demo's acts, shared by every scenario file: the printed row, a caller's connection to
//! its outbound sidecar, a request on it, a policy edit published to every sidecar, and the
//! wait until every sidecar applied it. The scenario files import this; nothing here imports
//! them.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::Request;
use http::StatusCode;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::topology::Fleet;
use crate::atomic_file::AtomicWrite;
use crate::policy;

/// One step's result, as printed.
pub struct Row {
    /// What was tried, e.g. `frontend → POST payments /v1/charges`.
    pub what: String,
    /// What should happen.
    pub expected: String,
    /// What happened.
    pub got: String,
    /// The deciding rule (and which sidecar decided).
    pub rule: String,
    /// The decision log's reason.
    pub reason: String,
    /// Whether it behaved as expected.
    pub ok: bool,
    /// The `x-request-id` of the request the row reads its decision from ("" if none).
    pub request_id: String,
}

/// The identity the forging caller claims.
const FORGED_ID: &str = "spiffe://example.org/ns/prod/sa/frontend";

/// How long a policy edit may take to reach every sidecar.
const RELOAD_WITHIN: Duration = Duration::from_secs(5);

/// Writes `text` as the fleet's policy and waits until every sidecar runs it; `false` if
/// one did not within the reload window.
///
/// # Errors
/// `text` does not compile, or the file cannot be written.
pub(super) async fn publish(fleet: &Fleet, text: &str) -> anyhow::Result<bool> {
    let version = policy::from_text("fleet.yaml", text)
        .map_err(|e| anyhow::anyhow!("the demo's policy edit is invalid:\n{e}"))?
        .version()
        .to_owned();
    write_policy(fleet, text)?;
    Ok(wait_for(fleet, |s| s.live().policy().version() == version).await)
}

/// Waits until `check` holds for every sidecar.
pub(super) async fn wait_for(fleet: &Fleet, check: impl Fn(&crate::app::Sidecar) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + RELOAD_WITHIN;
    loop {
        if fleet.sidecars.iter().all(|(_, s)| check(s)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `text` as the fleet's policy file, atomically (a watcher never sees half of it).
///
/// # Errors
/// The file cannot be written.
pub(super) fn write_policy(fleet: &Fleet, text: &str) -> std::io::Result<()> {
    AtomicWrite::new().write(&fleet.policy_file, text)
}

/// A caller app's keep-alive HTTP/1.1 connection to its outbound sidecar.
pub(super) type Conn = SendRequest<Full<Bytes>>;

/// What a step's response said.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) request_id: String,
    pub(super) seen_id: Option<String>,
}

/// A keep-alive HTTP/1.1 connection from `caller`'s app to its outbound sidecar.
pub(super) async fn connect(fleet: &Fleet, caller: &str) -> anyhow::Result<Conn> {
    let addr = fleet
        .sidecar(caller)
        .and_then(|s| s.outbound_addr())
        .with_context(|| format!("{caller} has no outbound sidecar"))?;
    connect_to(addr).await
}

/// A keep-alive HTTP/1.1 connection to the outbound sidecar listening on `addr` (one the
/// fleet does not hold, e.g. a newcomer's).
pub(super) async fn connect_to(addr: std::net::SocketAddr) -> anyhow::Result<Conn> {
    let tcp = TcpStream::connect(addr).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `method target` (absolute-form, as an `http_proxy` client sends it).
pub(super) async fn send(
    conn: &mut Conn,
    method: &str,
    target: &str,
    forged: bool,
) -> anyhow::Result<Reply> {
    let mut req = Request::builder().method(method).uri(target);
    if forged {
        req = req.header("x-spiffe-id", FORGED_ID);
    }
    conn.ready().await?;
    let response = conn
        .send_request(req.body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.into_body().collect().await?.to_bytes();
    let seen_id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["x-spiffe-id"].as_str().map(str::to_owned));
    Ok(Reply {
        status,
        request_id,
        seen_id,
    })
}

//! The pooled clients that carry requests on: plain HTTP/1.1 to the local workload (inbound)
//! and mTLS to destinations (outbound, h2 when the server offers it), with connect and
//! response timeouts mapped to 502 and 504 (PRODUCT.md §4).

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;

use super::respond::ProxyError;
use crate::config::Limits;

/// Pooled plain HTTP/1.1 client to the local workload.
pub type PlainClient = Client<HttpConnector, Incoming>;

/// Pooled mTLS client to one destination; its TLS config pins the destination's SPIFFE ID.
pub type MtlsClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// How long an unused pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// A client for the local workload (inbound side).
pub fn plain_client(limits: &Limits) -> PlainClient {
    pool().build(tcp(limits))
}

/// A client for one destination; `tls` comes from [`crate::tls::client_config`], whose
/// verifier requires the destination's SPIFFE ID. ALPN offers h2 and http/1.1.
pub fn mtls_client(tls: Arc<ClientConfig>, limits: &Limits) -> MtlsClient {
    let mut http = tcp(limits);
    http.enforce_http(false);
    let mut tls = Arc::unwrap_or_clone(tls);
    // hyper-rustls sets ALPN itself (and panics if it is preset); it offers the same pair.
    tls.alpn_protocols.clear();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_all_versions()
        .wrap_connector(http);
    pool().build(https)
}

/// Sends `req` and waits at most `timeout` for the response headers.
///
/// # Errors
/// [`ProxyError::UpstreamTimeout`] (504) past `timeout`; [`ProxyError::UpstreamTls`],
/// [`ProxyError::UpstreamConnect`] or [`ProxyError::UpstreamBroken`] (502) otherwise.
pub async fn send<C>(
    client: &Client<C, Incoming>,
    req: Request<Incoming>,
    timeout: Duration,
) -> Result<Response<Incoming>, ProxyError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Err(ProxyError::UpstreamTimeout),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => Err(classify(&error)),
    }
}

fn pool() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE);
    builder
}

fn tcp(limits: &Limits) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(limits.upstream_connect));
    http
}

/// Maps a client error to the 502 flavour the decision log names.
fn classify(error: &hyper_util::client::legacy::Error) -> ProxyError {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return ProxyError::UpstreamTls;
        }
        source = cause.source();
    }
    if error.is_connect() {
        ProxyError::UpstreamConnect
    } else {
        ProxyError::UpstreamBroken
    }
}

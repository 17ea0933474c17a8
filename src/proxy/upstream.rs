//! Where each side forwards (docs/security.md): the local workload over plain HTTP/1.1
//! (inbound) or one destination over mTLS (outbound, h2 when the server offers it), each a
//! pooled client with connect and response timeouts mapped to 502 and 504. Forwarding points
//! the request at it with [`headers::retarget`], then sends it.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;

use super::exchange::Admitted;
use super::headers;
use super::respond::ProxyError;
use crate::config::Limits;

/// How long an unused pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// One upstream: a pooled client, the scheme and authority it reaches, and how long its
/// response headers may take.
pub struct Upstream<C> {
    client: Client<C, Incoming>,
    scheme: Scheme,
    authority: Authority,
    timeout: Duration,
}

/// The local workload, over pooled plain HTTP/1.1.
pub type PlainUpstream = Upstream<HttpConnector>;

/// One destination, over pooled mTLS; its TLS config pins the destination's SPIFFE ID.
pub type MtlsUpstream = Upstream<HttpsConnector<HttpConnector>>;

impl PlainUpstream {
    /// The local workload at `authority` (inbound side).
    pub fn plain(authority: Authority, limits: &Limits) -> Self {
        let client = pool().build(tcp(limits));
        Self::new(client, Scheme::HTTP, authority, limits)
    }
}

impl MtlsUpstream {
    /// The destination at `authority` (outbound side); `tls` comes from
    /// [`crate::tls::client_config`], whose verifier requires the destination's SPIFFE ID.
    /// ALPN offers h2 and http/1.1.
    pub fn mtls(authority: Authority, tls: Arc<ClientConfig>, limits: &Limits) -> Self {
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
        Self::new(pool().build(https), Scheme::HTTPS, authority, limits)
    }
}

impl<C: Connect + Clone + Send + Sync + 'static> Upstream<C> {
    fn new(
        client: Client<C, Incoming>,
        scheme: Scheme,
        authority: Authority,
        limits: &Limits,
    ) -> Self {
        Self {
            client,
            scheme,
            authority,
            timeout: limits.upstream_response,
        }
    }

    /// Points `req` here with the path and request id admission let through, sends it, and
    /// waits at most `limits.upstream_response` for the response headers.
    ///
    /// # Errors
    /// [`ProxyError::BadTarget`] (400) if the forwarded request cannot be built;
    /// [`ProxyError::UpstreamTimeout`] (504) past the timeout; [`ProxyError::UpstreamTls`],
    /// [`ProxyError::UpstreamConnect`] or [`ProxyError::UpstreamBroken`] (502) otherwise.
    pub(super) async fn forward(
        &self,
        mut req: Request<Incoming>,
        admitted: Admitted<'_>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let (path, id) = (admitted.path, admitted.request_id);
        let scheme = self.scheme.clone();
        headers::retarget(&mut req, path, scheme, &self.authority, id)
            .map_err(ProxyError::BadTarget)?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(classify(&error)),
        }
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

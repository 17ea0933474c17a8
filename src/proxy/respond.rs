//! The one exhaustive mapping from a refused or failed request to its response (linkerd's
//! `rescue`): status, a short generic body, and nothing of the reason — that goes to the
//! decision log, not to the caller (docs/security.md, §6).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::headers::{HeaderError, TargetError};
use crate::path::PathError;

/// A response body: the upstream's, streamed through, or one of ours.
pub type Body = Either<Incoming, Full<Bytes>>;

/// Why a request was not answered by the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The path is refused by normalization (docs/security.md: escaping the root, encoded `/`,
    /// `\`, NUL, …) → 400.
    BadPath(PathError),
    /// Conflicting or unsupported `Content-Length` / `Transfer-Encoding` → 400.
    BadFraming(HeaderError),
    /// The query, authority or `Host` cannot be carried into the forwarded request → 400.
    BadTarget(TargetError),
    /// An outbound request names no host (no absolute-form URI, no `Host`) → 400.
    NoHost,
    /// The policy refused the request → 403.
    Denied,
    /// docs/configuration.md: "An unknown destination is denied, never forwarded in plain text" → 403.
    UnknownDestination,
    /// `CONNECT` would open a tunnel segward cannot see into → 405.
    ConnectUnsupported,
    /// The upstream refused or did not accept the connection in time → 502.
    UpstreamConnect,
    /// The mTLS handshake with a destination failed (e.g. it proved another SPIFFE ID) → 502.
    UpstreamTls,
    /// The upstream broke the exchange (closed early, sent garbage) → 502.
    UpstreamBroken,
    /// No response headers from the upstream within the timeout → 504.
    UpstreamTimeout,
}

impl ProxyError {
    /// The status sent to the caller.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_) | Self::BadFraming(_) | Self::BadTarget(_) | Self::NoHost => {
                StatusCode::BAD_REQUEST
            }
            Self::Denied | Self::UnknownDestination => StatusCode::FORBIDDEN,
            Self::ConnectUnsupported => StatusCode::METHOD_NOT_ALLOWED,
            Self::UpstreamConnect | Self::UpstreamTls | Self::UpstreamBroken => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Bounded label for the decision log and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadPath(e) => e.reason(),
            Self::BadFraming(e) => e.reason(),
            // One label for all flavours keeps the metric and log labels as they were.
            Self::BadTarget(_) => "bad-target",
            Self::NoHost => "no-host",
            Self::Denied => "denied",
            Self::UnknownDestination => "unknown-destination",
            Self::ConnectUnsupported => "connect-unsupported",
            Self::UpstreamConnect => "upstream-connect",
            Self::UpstreamTls => "upstream-tls",
            Self::UpstreamBroken => "upstream-broken",
            Self::UpstreamTimeout => "upstream-timeout",
        }
    }
}

/// The response for `error`: its status and a generic one-line body.
pub fn to_response(error: &ProxyError) -> Response<Body> {
    let status = error.status();
    let text = match status {
        StatusCode::BAD_REQUEST => "bad request\n",
        StatusCode::FORBIDDEN => "forbidden\n",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed\n",
        StatusCode::GATEWAY_TIMEOUT => "upstream timeout\n",
        _ => "upstream unavailable\n",
    };
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

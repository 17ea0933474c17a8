//! The checks a request passes on either side before anything is forwarded (PRODUCT.md §3,
//! §4): validate (one normalization, unambiguous framing), then decide against the request's
//! policy snapshot; both outcomes are recorded in its [`Exchange`]. The path matched is the
//! path forwarded.

use http::Request;

use super::exchange::Exchange;
use super::headers;
use super::respond::ProxyError;
use crate::identity::SpiffeId;
use crate::policy::{self, CompiledPolicy};

/// Validates `req` and decides it as `source` reaching `destination`; on success `exchange`
/// holds the normalized path to forward.
///
/// # Errors
/// [`ProxyError::BadPath`] or [`ProxyError::BadFraming`] (400); [`ProxyError::Denied`] (403)
/// unless the verdict lets the request through.
pub(super) fn admit<'a, B>(
    req: &Request<B>,
    policy: &'a CompiledPolicy,
    source: &SpiffeId,
    destination: &SpiffeId,
    exchange: &mut Exchange<'a>,
) -> Result<(), ProxyError> {
    // Validate: one normalization, then the smuggling defences on the headers as received.
    let path = exchange.normalize(req.uri())?;
    headers::check_framing(req.headers()).map_err(ProxyError::BadFraming)?;

    // Decide: the rules of the side `source` and `destination` describe.
    let verdict = policy.decide(&policy::Request {
        source,
        destination,
        method: req.method().as_str(),
        path: &path,
    });
    exchange.judge(verdict, path)
}

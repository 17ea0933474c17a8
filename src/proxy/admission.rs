//! The checks a request passes on either side before anything is forwarded (docs/policy-language.md,
//! §4): validate (one normalization, unambiguous framing), then decide against the request's
//! policy snapshot; both outcomes are recorded in its [`Exchange`]. What it lets through,
//! [`Admitted`], is what forwarding takes: the path matched is the path forwarded.

use http::Request;

use super::exchange::{Admitted, Exchange};
use super::headers;
use super::respond::ProxyError;
use crate::identity::SpiffeId;
use crate::policy::{self, CompiledPolicy};

/// Validates `req` and decides it as `source` reaching `destination`, recording both in
/// `exchange`; the normalized path to forward if the request is let through.
///
/// # Errors
/// [`ProxyError::BadPath`] or [`ProxyError::BadFraming`] (400); [`ProxyError::Denied`] (403)
/// unless the verdict lets the request through.
pub(super) fn admit<'e, 'a, B>(
    req: &Request<B>,
    policy: &'a CompiledPolicy,
    source: &SpiffeId,
    destination: &SpiffeId,
    exchange: &'e mut Exchange<'a>,
) -> Result<Admitted<'e>, ProxyError> {
    // Validate: one normalization, then the smuggling defences on the headers as received.
    let path = exchange.normalize(req.uri())?;
    headers::check_framing(req.headers()).map_err(ProxyError::BadFraming)?;

    // Decide: the rules of the side `source` and `destination` describe; a source contained
    // after a probe is refused before any rule, a deny reaches the detector (docs/probes.md).
    let (probes, direction) = exchange.probes();
    let request = policy::Request {
        source,
        destination,
        method: req.method().as_str(),
        path: &path,
    };
    let verdict = probes.decide(policy, direction, &request);
    exchange.judge(verdict, path)
}

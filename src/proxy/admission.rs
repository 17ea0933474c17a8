//! The checks a request passes on either side before anything is forwarded (docs/policy-language.md,
//! §4): validate (one normalization, unambiguous framing), then decide against the request's
//! policy snapshot; both outcomes are recorded in its [`Exchange`]. What it lets through,
//! [`Admitted`], is what forwarding takes: the path matched is the path forwarded.

use http::Request;

use super::exchange::{Admitted, Exchange};
use super::headers;
use super::respond::ProxyError;
use crate::detect::Target;
use crate::identity::SpiffeId;
use crate::policy::{self, CompiledPolicy, Decision, Verdict};

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

    // A source contained after a probe is refused before any rule (docs/probes.md); while
    // nobody is contained this is one atomic load.
    let (probes, direction) = exchange.probes();
    if probes.is_contained(source.as_str()) {
        return exchange.judge(Verdict::probe_contained(), path);
    }

    // Decide: the rules of the side `source` and `destination` describe.
    let request = policy::Request {
        source,
        destination,
        method: req.method().as_str(),
        path: &path,
    };
    let verdict = policy.decide(&request);
    // Only a deny reaches the detector: an allowed request pays this one comparison.
    if verdict.decision == Decision::Deny && probes.enabled() {
        let target = Target {
            destination: destination.as_str(),
            method: request.method,
            path: path.as_str(),
        };
        probes.denied(
            direction,
            source.as_str(),
            &target,
            policy.tripwire(&request),
        );
    }
    exchange.judge(verdict, path)
}

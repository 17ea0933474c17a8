//! One request's record on either side, shared by [`super::inbound`] and [`super::outbound`]:
//! its id and timing, the facts the decision log records as the phases run, and the final
//! response with its `x-request-id` (docs/security.md, §6). Rewriting the forwarded request is
//! [`super::headers`]' job.

use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper::body::Incoming;

use super::context::Context;
use super::headers::{self, X_REQUEST_ID};
use super::respond::{self, Body, ProxyError};
use crate::config::Mode;
use crate::path::{self, NormalizedPath};
use crate::policy::{CompiledPolicy, Verdict};
use crate::telemetry::decision_log::{self, DecisionRecord, Direction};

/// What admission let through, the input of forwarding: the path that was matched — so
/// the one forwarded — and the request's id; borrowed from the [`Exchange`] that logs both.
#[derive(Debug, Clone, Copy)]
pub(super) struct Admitted<'e> {
    /// The normalized path.
    pub(super) path: &'e str,
    /// The forwarded request's `x-request-id`.
    pub(super) request_id: &'e HeaderValue,
}

/// What is known about one request so far; borrows the request's policy snapshot and the
/// connection's identities for `'a`.
pub(super) struct Exchange<'a> {
    cx: &'a Context,
    started: Instant,
    direction: Direction,
    request_id: HeaderValue,
    method: Method,
    /// The normalized path once accepted; the raw one if it was refused.
    path: String,
    source_id: &'a str,
    /// Inbound: the peer's `IP:port`, formatted once per connection.
    peer_addr: Option<&'a str>,
    /// `None` if no destination was found for the request (outbound).
    destination_id: Option<&'a str>,
    policy_version: &'a str,
    verdict: Option<Verdict<'a>>,
}

impl<'a> Exchange<'a> {
    /// Starts the clock for `req` from `source_id` to `destination_id`, decided against
    /// `policy`; its id is the caller's `x-request-id` if well-formed, else a new one.
    pub(super) fn start<B>(
        cx: &'a Context,
        direction: Direction,
        req: &Request<B>,
        policy: &'a CompiledPolicy,
        source_id: &'a str,
        destination_id: Option<&'a str>,
    ) -> Self {
        Self {
            cx,
            started: Instant::now(),
            direction,
            request_id: cx.ids.take(req.headers()),
            method: req.method().clone(),
            path: String::new(),
            source_id,
            peer_addr: None,
            destination_id,
            policy_version: policy.version(),
            verdict: None,
        }
    }

    /// The sidecar's probe detector, and the side this request is on (docs/probes.md).
    pub(super) fn probes(&self) -> (&'a crate::detect::Probes, Direction) {
        (&self.cx.probes, self.direction)
    }

    /// Names the peer's address in the decision log (inbound).
    pub(super) fn with_peer_addr(mut self, addr: &'a str) -> Self {
        self.peer_addr = Some(addr);
        self
    }

    /// Normalizes the request's path once (docs/security.md); a refused path is kept raw for
    /// the log.
    ///
    /// # Errors
    /// [`ProxyError::BadPath`] (400).
    pub(super) fn normalize(&mut self, uri: &Uri) -> Result<NormalizedPath, ProxyError> {
        path::normalize(uri.path()).map_err(|error| {
            self.path = uri.path().to_owned();
            ProxyError::BadPath(error)
        })
    }

    /// Records the verdict on `path` — under `mode: audit` a deny is let through as
    /// `would-deny` — and, if it lets the request through, hands `path` on as the one to
    /// forward.
    ///
    /// # Errors
    /// [`ProxyError::Denied`] (403) unless the verdict lets the request through.
    pub(super) fn judge(
        &mut self,
        verdict: Verdict<'a>,
        path: NormalizedPath,
    ) -> Result<Admitted<'_>, ProxyError> {
        let verdict = match self.cx.mode {
            Mode::Enforce => verdict,
            Mode::Audit => verdict.audited(),
        };
        self.verdict = Some(verdict);
        self.path = path.into_string();
        if !verdict.lets_through() {
            return Err(ProxyError::Denied);
        }
        Ok(Admitted {
            path: &self.path,
            request_id: &self.request_id,
        })
    }

    /// The response to send — the upstream's (hop-by-hop headers removed) or ours for
    /// `error` — with `x-request-id`; writes the request's decision-log line.
    pub(super) fn finish(self, outcome: Result<Response<Incoming>, ProxyError>) -> Response<Body> {
        let (mut response, error) = match outcome {
            Ok(upstream) => {
                let mut response = upstream.map(Either::Left);
                headers::strip_hop_by_hop(response.headers_mut());
                (response, None)
            }
            Err(error) => (respond::to_response(&error), Some(error)),
        };
        response
            .headers_mut()
            .insert(X_REQUEST_ID, self.request_id.clone());
        self.log(response.status(), error.as_ref());
        response
    }

    /// Counts the request and writes its decision line (if the sampler keeps it).
    fn log(&self, status: StatusCode, error: Option<&ProxyError>) {
        // A request refused before any decision (bad path, unknown destination) is a deny
        // whose reason is the refusal; an upstream failure keeps the verdict and adds `error`.
        let (decision, reason, rule, error) = match (&self.verdict, error) {
            (Some(v), Some(ProxyError::Denied) | None) => {
                (v.decision.as_str(), v.reason.as_str(), v.rule, None)
            }
            (Some(v), Some(e)) => (
                v.decision.as_str(),
                v.reason.as_str(),
                v.rule,
                Some(e.reason()),
            ),
            (None, e) => ("deny", e.map_or("refused", ProxyError::reason), None, None),
        };
        let duration = self.started.elapsed();
        let metrics = &self.cx.metrics;
        metrics.request(self.direction, decision, rule.unwrap_or(reason), duration);
        if let Some(kind) = error {
            metrics.upstream_error(self.direction, kind);
        }
        if !self.cx.sampler.keep(decision) {
            return;
        }
        decision_log::write(&DecisionRecord {
            request_id: self.request_id.to_str().unwrap_or("-"),
            direction: self.direction,
            peer_addr: self.peer_addr,
            source_id: Some(self.source_id),
            destination_id: self.destination_id,
            method: self.method.as_str(),
            path: &self.path,
            decision,
            rule,
            reason,
            error,
            policy_version: self.verdict.map(|_| self.policy_version),
            status: status.as_u16(),
            duration,
            sampled: self.cx.sampler.samples(decision),
        });
    }
}

//! One `CheckRequest` → one verdict → one `CheckResponse` (docs/envoy.md "What Envoy sends"
//! and "How decisions map"), recorded as the data plane records its requests: a decision-log
//! line with direction `ext_authz`, and the request counters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};

use super::auth::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
    attribute_context, check_response,
};
use super::pb::envoy::config::core::v3::{self as core, header_value_option};
use super::pb::envoy::r#type::v3::{HttpStatus, StatusCode as EnvoyStatus};
use super::pb::google::rpc::Status as RpcStatus;
use crate::config::Mode;
use crate::detect::Target;
use crate::identity::SpiffeId;
use crate::live::Snapshot;
use crate::path;
use crate::policy::{self, Decision, Verdict};
use crate::proxy::Context;
use crate::proxy::headers::{X_REQUEST_ID, set_identity_headers};
use crate::telemetry::decision_log::{self, ConnectionRecord, DecisionRecord, Direction};

/// gRPC `PERMISSION_DENIED`: Envoy's HTTP filter then sends the `DeniedHttpResponse`; its
/// network filter closes the connection.
const PERMISSION_DENIED: i32 = 7;

/// The body of every 403, as the data plane's (`proxy::respond`).
const FORBIDDEN_BODY: &str = "forbidden\n";

/// Why a request was refused before the policy was asked (the decision log's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Envoy sent no `source.principal`: the peer presented no certificate, or Envoy does
    /// not terminate mTLS on this listener.
    NoPrincipal,
    /// `source.principal` is not a SPIFFE ID with a path (docs/security.md).
    BadPrincipal,
    /// The path is refused by normalization (`encoded-slash`, `dot-dot-escape`, …).
    BadPath(&'static str),
    /// The path normalizes, but to something else: Envoy would forward a path the decision
    /// was not made on.
    NotNormalized,
}

impl Refusal {
    /// The bounded label for the decision log and the metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoPrincipal => "no-source-principal",
            Self::BadPrincipal => "bad-source-principal",
            Self::BadPath(reason) => reason,
            Self::NotNormalized => "path-not-normalized",
        }
    }
}

/// Answers `Check` for one sidecar: its context is the data plane's (live policy, own ID,
/// mode, metrics, sampler, request ids).
#[derive(Debug, Clone)]
pub struct Checker {
    cx: Arc<Context>,
}

impl Checker {
    /// A checker deciding with `cx`.
    pub fn new(cx: Arc<Context>) -> Self {
        Self { cx }
    }

    /// Where the checks are counted.
    pub fn metrics(&self) -> &crate::telemetry::metrics::Metrics {
        &self.cx.metrics
    }

    /// The answer to `request`: an HTTP decision when it carries `attributes.request.http`,
    /// else a connection decision (Envoy's network filter).
    pub fn check(&self, request: &CheckRequest) -> CheckResponse {
        let started = Instant::now();
        let attributes = request.attributes.as_ref();
        let source = attributes.and_then(|a| a.source.as_ref());
        let principal = source.map_or("", |s| s.principal.as_str());
        let http = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        match http {
            Some(http) => self.check_http(attributes, principal, http, started),
            None => self.check_connection(principal),
        }
    }

    fn check_http(
        &self,
        attributes: Option<&AttributeContext>,
        principal: &str,
        http: &attribute_context::HttpRequest,
        started: Instant,
    ) -> CheckResponse {
        let cx = &*self.cx;
        let request_id = request_id(cx, http);
        let policy = cx.live.policy();
        // The destination of every decision: the own ID of the snapshot deciding it.
        let destination = policy.own_id();
        // The request target as Envoy forwards it: path, then the query (never matched).
        let raw_path = http
            .path
            .split_once('?')
            .map_or(http.path.as_str(), |(p, _)| p);
        let peer_addr = attributes.and_then(peer_address);
        let mut line = Line {
            cx,
            request_id: &request_id,
            peer_addr: peer_addr.as_deref(),
            source_id: None,
            destination_id: destination.as_str(),
            method: &http.method,
            path: raw_path,
            policy_version: None,
            started,
        };
        let source = match parse_principal(principal) {
            Ok(source) => source,
            Err(refusal) => return line.refused(refusal),
        };
        line.source_id = Some(source.as_str());
        let path = match path::normalize(raw_path) {
            Ok(normal) if normal.as_str() == raw_path => normal,
            Ok(_) => return line.refused(Refusal::NotNormalized),
            Err(error) => return line.refused(Refusal::BadPath(error.reason())),
        };
        let request = policy::Request {
            source: &source,
            destination,
            method: &http.method,
            path: &path,
        };
        // As on the data plane (proxy/admission.rs, docs/probes.md).
        let verdict = cx.probes.decide(&policy, Direction::ExtAuthz, &request);
        line.policy_version = Some(policy.version());
        line.decided(audited(cx.mode, verdict), &source)
    }

    fn check_connection(&self, principal: &str) -> CheckResponse {
        let cx = &*self.cx;
        let connection_id = cx.ids.fresh();
        let connection_id = connection_id.to_str().unwrap_or("-");
        let policy = cx.live.policy();
        let destination = policy.own_id();
        let (source_id, verdict) = match parse_principal(principal) {
            Ok(source) => {
                let verdict = self.decide_connection(&policy, &source);
                (source.as_str().to_owned(), Ok(audited(cx.mode, verdict)))
            }
            Err(refusal) => ("-".to_owned(), Err(refusal)),
        };
        let (decision, rule, reason) = match &verdict {
            Ok(v) => (v.decision.as_str(), v.rule, v.reason.as_str()),
            Err(refusal) => ("deny", None, refusal.reason()),
        };
        cx.metrics
            .tcp_decision(Direction::ExtAuthz, decision, rule.unwrap_or(reason));
        decision_log::write_connection(&ConnectionRecord {
            connection_id,
            direction: Direction::ExtAuthz,
            event: "open",
            source_id: &source_id,
            destination_id: destination.as_str(),
            decision,
            rule,
            reason,
            policy_version: policy.version(),
            bytes: None,
            close_reason: None,
            duration: None,
        });
        let code = match verdict {
            Ok(v) if v.lets_through() => 0,
            _ => PERMISSION_DENIED,
        };
        CheckResponse {
            status: Some(RpcStatus {
                code,
                ..RpcStatus::default()
            }),
            ..CheckResponse::default()
        }
    }
}

impl Checker {
    /// One connection of Envoy's network filter decided on `policy`, probe containment and
    /// detection included, as a TCP listener of the data plane decides it (proxy/tunnel.rs).
    fn decide_connection<'p>(&self, policy: &'p Snapshot, source: &SpiffeId) -> Verdict<'p> {
        let probes = &self.cx.probes;
        if probes.is_contained(source.as_str()) {
            return Verdict::probe_contained();
        }
        let destination = policy.own_id();
        let verdict = policy.decide_connection(source, destination);
        if verdict.decision == Decision::Deny && probes.enabled() {
            let target = Target {
                destination: destination.as_str(),
                method: "",
                path: "",
            };
            let tripwire = policy.tripwire_connection(source, destination);
            probes.denied(Direction::ExtAuthz, source.as_str(), &target, tripwire);
        }
        verdict
    }
}

/// The source identity: Envoy's `source.principal` — the URI SAN of the peer's certificate —
/// held to the same rules as a data-plane peer's ID (docs/security.md: valid, with a path).
pub fn parse_principal(principal: &str) -> Result<SpiffeId, Refusal> {
    if principal.is_empty() {
        return Err(Refusal::NoPrincipal);
    }
    match SpiffeId::parse(principal) {
        Ok(id) if !id.path().is_empty() => Ok(id),
        _ => Err(Refusal::BadPrincipal),
    }
}

fn audited(mode: Mode, verdict: Verdict<'_>) -> Verdict<'_> {
    match mode {
        Mode::Enforce => verdict,
        Mode::Audit => verdict.audited(),
    }
}

/// Envoy's `x-request-id` when it is well-formed (so Envoy's access log and ours name the
/// request alike), else a new one.
fn request_id(cx: &Context, http: &attribute_context::HttpRequest) -> HeaderValue {
    let mut headers = HeaderMap::new();
    if let Some(sent) = http
        .headers
        .get(X_REQUEST_ID.as_str())
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(X_REQUEST_ID, sent);
    }
    cx.ids.take(&headers)
}

/// The peer's `IP:port` as Envoy saw it.
fn peer_address(attributes: &AttributeContext) -> Option<String> {
    let address = attributes.source.as_ref()?.address.as_ref()?;
    match address.address.as_ref()? {
        core::address::Address::SocketAddress(socket) => match socket.port_specifier {
            Some(core::socket_address::PortSpecifier::PortValue(port)) => {
                // `IP:port`, an IPv6 address in brackets, as the data plane writes it.
                Some(match socket.address.contains(':') {
                    true => format!("[{}]:{port}", socket.address),
                    false => format!("{}:{port}", socket.address),
                })
            }
            _ => Some(socket.address.clone()),
        },
        core::address::Address::Pipe(_) | core::address::Address::EnvoyInternalAddress(_) => None,
    }
}

/// What one HTTP check's decision line and counters record.
struct Line<'a> {
    cx: &'a Context,
    request_id: &'a HeaderValue,
    peer_addr: Option<&'a str>,
    source_id: Option<&'a str>,
    destination_id: &'a str,
    method: &'a str,
    path: &'a str,
    policy_version: Option<&'a str>,
    started: Instant,
}

impl Line<'_> {
    /// Denied before the policy was asked.
    fn refused(self, refusal: Refusal) -> CheckResponse {
        self.log("deny", None, refusal.reason(), 403);
        denied(self.request_id)
    }

    /// The policy's verdict (already audited).
    fn decided(self, verdict: Verdict<'_>, source: &SpiffeId) -> CheckResponse {
        let (status, response) = if verdict.lets_through() {
            match allowed(self.destination_id, source, self.request_id) {
                Some(ok) => (200, ok),
                None => (403, denied(self.request_id)),
            }
        } else {
            (403, denied(self.request_id))
        };
        self.log(
            verdict.decision.as_str(),
            verdict.rule,
            verdict.reason.as_str(),
            status,
        );
        response
    }

    fn log(&self, decision: &'static str, rule: Option<&str>, reason: &str, status: u16) {
        let duration: Duration = self.started.elapsed();
        let metrics = &self.cx.metrics;
        metrics.request(
            Direction::ExtAuthz,
            decision,
            rule.unwrap_or(reason),
            duration,
        );
        if !self.cx.sampler.keep(decision) {
            return;
        }
        decision_log::write(&DecisionRecord {
            request_id: self.request_id.to_str().unwrap_or("-"),
            direction: Direction::ExtAuthz,
            peer_addr: self.peer_addr,
            source_id: self.source_id,
            destination_id: Some(self.destination_id),
            method: self.method,
            path: self.path,
            decision,
            rule,
            reason,
            error: None,
            policy_version: self.policy_version,
            status,
            duration,
            sampled: self.cx.sampler.samples(decision),
        });
    }
}

/// One header for Envoy to set on the request, replacing every value the client sent.
/// Envoy 1.40's ext_authz filter reads the deprecated `append` here (unset: overwrite) and
/// ignores `append_action`: `append` is left unset (its default there is the overwrite),
/// `append_action` says the same for Envoys that read it. tests/it/ext_authz_envoy.rs
/// proves a forged value never reaches the workload.
fn overwrite(key: &str, value: &str) -> core::HeaderValueOption {
    core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            ..core::HeaderValue::default()
        }),
        append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..core::HeaderValueOption::default()
    }
}

/// OK: Envoy forwards the request with `x-spiffe-id`, `x-forwarded-client-cert`
/// (docs/security.md; built by the data plane's own `set_identity_headers`) and
/// `x-request-id` set, overwriting whatever the client sent under those names. `None` if a header cannot be built
/// (impossible for validated IDs; the caller then denies).
fn allowed(own_id: &str, source: &SpiffeId, request_id: &HeaderValue) -> Option<CheckResponse> {
    let mut identity = HeaderMap::new();
    set_identity_headers(&mut identity, own_id, source.as_str()).ok()?;
    identity.insert(X_REQUEST_ID, request_id.clone());
    let mut headers = Vec::with_capacity(identity.len());
    for (name, value) in &identity {
        headers.push(overwrite(name.as_str(), value.to_str().ok()?));
    }
    Some(CheckResponse {
        status: Some(RpcStatus::default()),
        http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
            headers,
            ..OkHttpResponse::default()
        })),
        ..CheckResponse::default()
    })
}

/// 403 with `x-request-id` and the data plane's short body; nothing of the reason.
fn denied(request_id: &HeaderValue) -> CheckResponse {
    let mut headers = vec![overwrite("content-type", "text/plain; charset=utf-8")];
    if let Ok(id) = request_id.to_str() {
        headers.push(overwrite(X_REQUEST_ID.as_str(), id));
    }
    CheckResponse {
        status: Some(RpcStatus {
            code: PERMISSION_DENIED,
            ..RpcStatus::default()
        }),
        http_response: Some(check_response::HttpResponse::DeniedResponse(
            DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: EnvoyStatus::Forbidden as i32,
                }),
                headers,
                body: FORBIDDEN_BODY.to_owned(),
            },
        )),
        ..CheckResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principal_must_be_a_spiffe_id_with_a_path() {
        assert_eq!(parse_principal(""), Err(Refusal::NoPrincipal));
        for bad in [
            "CN=frontend",
            "spiffe://example.org",
            "spiffe://Example.org/a",
            "spiffe://example.org/a/",
            "spiffe://example.org/a%2Fb",
        ] {
            assert_eq!(parse_principal(bad), Err(Refusal::BadPrincipal), "{bad}");
        }
        let id = parse_principal("spiffe://example.org/ns/prod/sa/frontend").unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/ns/prod/sa/frontend");
    }

    #[test]
    fn a_denial_is_403_with_the_request_id_and_the_data_planes_body() {
        let id = HeaderValue::from_static("req-9");
        let response = denied(&id);
        assert_eq!(response.status.map(|s| s.code), Some(PERMISSION_DENIED));
        let Some(check_response::HttpResponse::DeniedResponse(body)) = response.http_response
        else {
            panic!("not a denial");
        };
        assert_eq!(body.status.map(|s| s.code), Some(403));
        assert_eq!(body.body, "forbidden\n");
        let headers: Vec<_> = body
            .headers
            .iter()
            .filter_map(|h| {
                h.header
                    .as_ref()
                    .map(|h| (h.key.as_str(), h.value.as_str()))
            })
            .collect();
        assert!(headers.contains(&("x-request-id", "req-9")), "{headers:?}");
    }
}

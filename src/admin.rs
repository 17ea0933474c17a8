//! The admin listener (docs/operations.md), loopback by default: `/healthz` (alive), `/readyz`
//! (200 once certificate, bundles and policy are loaded and the listeners bound; 503 before —
//! also while waiting for the first SVID of the SPIFFE Workload API, docs/spire.md — while
//! draining, and once our certificate has expired), `/metrics` (Prometheus text), `/policy` (JSON: version, loaded_at,
//! files, counts, the slice's and the fleet's rules, last reload errors), `/reach` (the blast radius of the policy in force,
//! docs/blast-radius.md, as `policy reach --json`), `/probes` and `POST /probes/release` (the
//! probe detector's suspects and containments, docs/probes.md). It reads `live`, the reload
//! status and the metrics; it never writes them; the one write it makes is a release of a
//! probe containment.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::detect::Probes;
use crate::live::Live;
use crate::reload::{Part, ReloadError, StatusBoard};
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::Metrics;

/// Bound on an admin request's head, like the data plane's slowloris bound.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many `/reach` computations at once (tens of ms of CPU each on a big policy);
/// more are refused with 503, so the admin port cannot burn the sidecar's CPU.
const REACH_CONCURRENCY: usize = 2;

/// Where the sidecar is in its life, as `/readyz` reports it; starts as "starting" (0).
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

const READY: u8 = 1;
const DRAINING: u8 = 2;
const AWAITING_SVID: u8 = 3;

impl Readiness {
    /// Everything loaded and every listener bound.
    pub fn set_ready(&self) {
        self.0.store(READY, Ordering::Relaxed);
    }

    /// Listening on admin only, waiting for the first X509-SVID of the Workload API.
    pub fn set_awaiting_svid(&self) {
        self.0.store(AWAITING_SVID, Ordering::Relaxed);
    }

    /// Shutting down: load balancers should stop sending traffic.
    pub fn set_draining(&self) {
        self.0.store(DRAINING, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed) == READY
    }

    fn word(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            READY => "ready\n",
            DRAINING => "draining\n",
            AWAITING_SVID => {
                "starting: waiting for the first X509-SVID from the SPIFFE Workload API\n"
            }
            _ => "starting\n",
        }
    }
}

/// The admin endpoints of one sidecar.
#[derive(Debug)]
pub struct Admin {
    /// The live state and the reload status, once the first load is done.
    loaded: OnceLock<Loaded>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    reach_gate: Arc<Semaphore>,
    /// The probe detector (docs/probes.md), once the listeners' state exists.
    probes: OnceLock<Arc<Probes>>,
}

#[derive(Debug)]
struct Loaded {
    live: Arc<Live>,
    status: Arc<StatusBoard>,
}

impl Admin {
    /// Endpoints reporting `metrics` and `readiness`; the state-reading endpoints answer 503
    /// until [`Admin::attach`].
    pub fn new(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Self {
        Self {
            loaded: OnceLock::new(),
            metrics,
            readiness,
            reach_gate: Arc::new(Semaphore::new(REACH_CONCURRENCY)),
            probes: OnceLock::new(),
        }
    }

    /// `/probes` and `POST /probes/release` answer from `probes` (the first call counts).
    pub fn attach_probes(&self, probes: Arc<Probes>) {
        let _ = self.probes.set(probes);
    }

    /// Endpoints reporting `live` and the reload `status` as well (the first call counts).
    pub fn attach(&self, live: Arc<Live>, status: Arc<StatusBoard>) {
        let _ = self.loaded.set(Loaded { live, status });
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: Shutdown) {
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "admin accept failed");
                        continue;
                    }
                },
                () = shutdown.wait() => break,
            };
            let this = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.respond(req).await) }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    }

    /// The answer to one admin request.
    pub async fn respond(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (head, body) = req.into_parts();
        if head.uri.path() == "/probes/release" {
            return match (&head.method, self.probes.get()) {
                (&Method::POST, Some(probes)) => release(probes, body).await,
                (&Method::POST, None) => {
                    text(StatusCode::SERVICE_UNAVAILABLE, self.readiness.word())
                }
                _ => text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n"),
            };
        }
        if head.method != Method::GET && head.method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        let path = head.uri.path();
        if path == "/healthz" {
            return text(StatusCode::OK, "ok\n");
        }
        let Some(loaded) = self.loaded.get() else {
            return match path {
                "/readyz" | "/metrics" | "/policy" | "/reach" | "/probes" => {
                    text(StatusCode::SERVICE_UNAVAILABLE, self.readiness.word())
                }
                _ => not_found(),
            };
        };
        match path {
            "/readyz" if !self.readiness.is_ready() => {
                text(StatusCode::SERVICE_UNAVAILABLE, self.readiness.word())
            }
            "/readyz" if own_certificate_expired(&loaded.live) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: our X509-SVID has expired and no fresh one has arrived\n",
            ),
            "/readyz" => text(StatusCode::OK, "ready\n"),
            "/metrics" => self.metrics(&loaded.live),
            "/policy" => policy(loaded, self.probes.get()),
            "/probes" => match self.probes.get() {
                Some(probes) => {
                    let own = loaded.live.policy().own_id().to_string();
                    json(StatusCode::OK, probes.report(&own).to_string())
                }
                None => text(StatusCode::SERVICE_UNAVAILABLE, self.readiness.word()),
            },
            "/reach" => reach(&self.reach_gate, loaded.live.policy(), head.uri.query()).await,
            _ => not_found(),
        }
    }

    fn metrics(&self, live: &Live) -> Response<Full<Bytes>> {
        let policy = live.policy();
        let expires = live.tls().current().credentials().not_after() - crate::policy::unix_now();
        let next_change = policy
            .next_change()
            .map_or(-1, |t| (t - crate::policy::unix_now()).max(0));
        let body = self.metrics.encode(policy.version(), expires, next_change);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        response
    }
}

/// Whether the SVID in force is past its notAfter (peers refuse it: not ready).
fn own_certificate_expired(live: &Live) -> bool {
    live.tls().current().credentials().not_after() <= crate::policy::unix_now()
}

fn not_found() -> Response<Full<Bytes>> {
    text(
        StatusCode::NOT_FOUND,
        "not found; try /healthz /readyz /metrics /policy /reach /probes\n",
    )
}

fn policy(loaded: &Loaded, probes: Option<&Arc<Probes>>) -> Response<Full<Bytes>> {
    let policy = loaded.live.policy();
    let status = loaded.status.read();
    let error = |part| status.error(part).map(ToString::to_string);
    let reason = |part| status.error(part).map(ReloadError::reason);
    let loaded_at = OffsetDateTime::from(status.policy_loaded_at)
        .format(&Rfc3339)
        .unwrap_or_default();
    let body = json!({
        "version": policy.version(),
        "own_id": policy.own_id().as_str(),
        "loaded_at": loaded_at,
        "files": policy.files(),
        "segments": policy.segments().len(),
        "rules": policy.rules().len(),
        "fleet_rules": policy.fleet_rules(),
        "tests": policy.test_count(),
        "exceptions": policy.rules().iter().filter(|r| r.is_exception() && !r.expired).count(),
        "next_expiry": policy.next_change().map(crate::policy::format_time),
        "last_reload_error": { "policy": error(Part::Policy), "tls": error(Part::Tls) },
        "last_reload_reason": { "policy": reason(Part::Policy), "tls": reason(Part::Tls) },
        "reloads": { "ok": status.reloads_ok, "failed": status.reloads_failed },
        "probe_contained": probes.map_or(serde_json::Value::Array(Vec::new()), |p| p.contained_json()),
    });
    json(StatusCode::OK, body.to_string())
}

/// The largest `POST /probes/release` body read.
const RELEASE_BODY_MAX: usize = 8 * 1024;

/// `POST /probes/release` with `{"identity": "spiffe://…"}`: 200 `{"released": true}` when
/// the identity was contained here (it is no more), 404 when it was not, 400 for a body
/// that is not that JSON.
async fn release(probes: &Probes, body: Incoming) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Release {
        identity: String,
    }
    let bytes = match Limited::new(body, RELEASE_BODY_MAX).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "the body could not be read (at most 8 KiB)",
            );
        }
    };
    let Ok(asked) = serde_json::from_slice::<Release>(&bytes) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            r#"expected {"identity": "spiffe://…"}"#,
        );
    };
    if probes.release(&asked.identity) {
        json(
            StatusCode::OK,
            json!({"released": true, "identity": asked.identity}).to_string(),
        )
    } else {
        json(
            StatusCode::NOT_FOUND,
            json!({"released": false, "identity": asked.identity,
                   "error": "not contained on this sidecar"})
            .to_string(),
        )
    }
}

/// `/reach?from=SEL&to=SEL` on `policy` (the snapshot in force): 200 with exactly what
/// `policy reach --json` prints; 400 `{"error"}` for a bad query or selector; 503 with
/// `Retry-After` while [`REACH_CONCURRENCY`] computations run.
async fn reach(
    gate: &Arc<Semaphore>,
    policy: Arc<crate::live::Snapshot>,
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    let (from, to) = match reach_query(query.unwrap_or_default()) {
        Ok(sides) => sides,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let Ok(permit) = gate.clone().try_acquire_owned() else {
        let message = "busy: too many /reach queries at once; retry";
        let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, message);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    // CPU-bound: off the event loop (loop 0 also accepts the data plane's connections). The
    // permit goes with the work, so a client that hangs up does not free its slot early.
    let answer = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let reach = crate::policy::reach_texts(&policy, &from, &to)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        serde_json::to_string(&reach)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await;
    match answer {
        Ok(Ok(body)) => json(StatusCode::OK, body),
        Ok(Err((status, message))) => json_error(status, &message),
        Err(_) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the reach computation failed",
        ),
    }
}

/// The `from` and `to` of a `/reach` query, percent-decoded, `*` for an omitted side.
///
/// # Errors
/// The message for a 400: no side given, an unknown or repeated parameter, a bad escape.
fn reach_query(query: &str) -> Result<(String, String), String> {
    let (mut from, mut to) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        let side = match key.as_str() {
            "from" => &mut from,
            "to" => &mut to,
            _ => return Err(format!("unknown parameter `{key}`; give from= and/or to=")),
        };
        if side.replace(percent_decode(value)?).is_some() {
            return Err(format!("`{key}` is given twice"));
        }
    }
    if from.is_none() && to.is_none() {
        // As `policy reach` refuses the whole matrix: that is `policy report`'s job.
        return Err("give from= or to= (a SPIFFE ID, ID pattern, segment or k=v labels)".into());
    }
    let or_any = |side: Option<String>| side.unwrap_or_else(|| "*".to_owned());
    Ok((or_any(from), or_any(to)))
}

/// RFC 3986 percent-decoding of one query component; `+` is kept as it is.
fn percent_decode(text: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next(), bytes.next()];
        let byte = match hex {
            [Some(h), Some(l)] => hex_value(h).zip(hex_value(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        out.push(byte.ok_or_else(|| format!("`{text}` has a bad percent-escape"))?);
    }
    String::from_utf8(out).map_err(|_| format!("`{text}` does not decode to UTF-8"))
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, json!({ "error": message }).to_string())
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    const POLICY: &str = r#"
segments:
  web: { identities: ["spiffe://example.org/ns/prod/sa/web"] }
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
rules:
  - { name: web-calls-api, from: [web], to: [api], paths: ["/v1/**"] }
"#;

    fn policy() -> Arc<crate::live::Snapshot> {
        let policy = crate::policy::from_text("policy.yaml", POLICY).unwrap();
        let own = crate::identity::SpiffeId::parse("spiffe://example.org/ns/prod/sa/api");
        Arc::new(crate::live::Snapshot::new(policy, own.unwrap()))
    }

    async fn body(response: Response<Full<Bytes>>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_query_gives_each_side_percent_decoded_and_star_for_the_other() {
        let from = reach_query("from=spiffe%3A%2F%2Fexample.org%2Fns%2Fstaging%2F%2A%2A");
        let from = from.unwrap();
        assert_eq!(
            from,
            ("spiffe://example.org/ns/staging/**".into(), "*".into())
        );
        assert_eq!(reach_query("to=api").unwrap(), ("*".into(), "api".into()));
        let both = reach_query("from=env=staging,tier=web&to=a+b").unwrap();
        assert_eq!(both, ("env=staging,tier=web".into(), "a+b".into()));
    }

    #[test]
    fn a_query_without_a_side_or_with_a_stray_parameter_is_refused() {
        let refused = |q: &str| reach_query(q).unwrap_err();
        assert!(refused("").starts_with("give from= or to="));
        assert!(refused("&").starts_with("give from= or to="));
        assert!(refused("from=web&from=api").contains("`from` is given twice"));
        assert!(refused("from=web&limit=3").contains("unknown parameter `limit`"));
        assert!(refused("from=%zz").contains("bad percent-escape"));
        assert!(refused("from=%2").contains("bad percent-escape"));
        assert!(refused("from=%+f").contains("bad percent-escape"));
        assert!(refused("from=%ff").contains("UTF-8"));
    }

    #[tokio::test]
    async fn reach_answers_what_the_cli_prints_and_names_a_bad_selectors_closest_segment() {
        let gate = Arc::new(Semaphore::new(REACH_CONCURRENCY));
        let response = reach(&gate, policy(), Some("from=web")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let expected =
            serde_json::to_value(crate::policy::reach_texts(&policy(), "web", "*").unwrap())
                .unwrap();
        assert_eq!(body(response).await, expected);

        let response = reach(&gate, policy(), Some("to=apj")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let error = body(response).await["error"].as_str().unwrap().to_owned();
        assert!(error.contains("did you mean `api`?"), "{error}");
        assert_eq!(gate.available_permits(), REACH_CONCURRENCY);
    }

    #[tokio::test]
    async fn reach_is_refused_with_503_and_retry_after_while_the_gate_is_full() {
        let gate = Arc::new(Semaphore::new(REACH_CONCURRENCY));
        let _busy = gate.clone().acquire_many_owned(2).await.unwrap();
        let response = reach(&gate, policy(), Some("from=web")).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert!(
            body(response).await["error"]
                .as_str()
                .unwrap()
                .starts_with("busy")
        );
    }
}

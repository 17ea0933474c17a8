//! The admin listener (PRODUCT.md §6), loopback by default: `/healthz` (alive), `/readyz`
//! (200 once certificate, bundles and policy are loaded and the listeners bound; 503 before
//! and while draining), `/metrics` (Prometheus text), `/policy` (JSON: version, loaded_at,
//! files, counts, last reload errors). It reads `live`, the reload status and the metrics; it
//! never writes them.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;

use crate::live::Live;
use crate::reload::{Part, ReloadError, StatusBoard};
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::Metrics;

/// Bound on an admin request's head, like the data plane's slowloris bound.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the sidecar is in its life, as `/readyz` reports it; starts as "starting" (0).
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

const READY: u8 = 1;
const DRAINING: u8 = 2;

impl Readiness {
    /// Everything loaded and every listener bound.
    pub fn set_ready(&self) {
        self.0.store(READY, Ordering::Relaxed);
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
            _ => "starting\n",
        }
    }
}

/// The admin endpoints of one sidecar.
#[derive(Debug)]
pub struct Admin {
    live: Arc<Live>,
    status: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

impl Admin {
    /// Endpoints reporting `live`, the reload `status`, `metrics` and `readiness`.
    pub fn new(
        live: Arc<Live>,
        status: Arc<StatusBoard>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Self {
        Self {
            live,
            status,
            metrics,
            readiness,
        }
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
                    let response = this.respond(&req);
                    async move { Ok::<_, Infallible>(response) }
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
    pub fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.readiness.is_ready() => text(StatusCode::OK, "ready\n"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, self.readiness.word()),
            "/metrics" => self.metrics(),
            "/policy" => self.policy(),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /healthz /readyz /metrics /policy\n",
            ),
        }
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let policy = self.live.policy();
        let expires = self.live.tls().current().credentials().not_after() - unix_now();
        let body = self.metrics.encode(policy.version(), expires);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        response
    }

    fn policy(&self) -> Response<Full<Bytes>> {
        let policy = self.live.policy();
        let status = self.status.read();
        let error = |part| status.error(part).map(ToString::to_string);
        let reason = |part| status.error(part).map(ReloadError::reason);
        let loaded_at = OffsetDateTime::from(status.policy_loaded_at)
            .format(&Rfc3339)
            .unwrap_or_default();
        let body = json!({
            "version": policy.version(),
            "loaded_at": loaded_at,
            "files": policy.files(),
            "segments": policy.segments().len(),
            "rules": policy.rules().len(),
            "tests": policy.test_count(),
            "last_reload_error": { "policy": error(Part::Policy), "tls": error(Part::Tls) },
            "last_reload_reason": { "policy": reason(Part::Policy), "tls": reason(Part::Tls) },
            "reloads": { "ok": status.reloads_ok, "failed": status.reloads_failed },
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
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

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

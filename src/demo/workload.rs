//! A demo workload: a tiny HTTP/1.1 app that answers every request with what it received —
//! its name, the method and path, and the `x-spiffe-id` segward set — so the demo can show
//! what reached the workload (and that a forged identity header did not).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running demo workload on 127.0.0.1; dropping it stops it.
pub struct Workload {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Workload {
    /// Starts workload `name` on an ephemeral port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(name: &'static str) -> std::io::Result<Workload> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let service =
                    service_fn(move |req| async move { Ok::<_, Infallible>(answer(name, &req)) });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
            }
        });
        Ok(Workload { addr, task })
    }

    /// Where it listens (its sidecar's `upstream`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body = json!({
        "workload": name,
        "method": req.method().as_str(),
        "path": req.uri().to_string(),
        "x-spiffe-id": header("x-spiffe-id"),
        "x-forwarded-client-cert": header("x-forwarded-client-cert"),
    });
    Response::new(Full::new(Bytes::from(body.to_string())))
}

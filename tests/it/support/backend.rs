//! [`Backend`]: the application behind a sidecar, a real hyper HTTP/1.1 server on loopback
//! that records every request exactly as it arrived, so tests can prove what was forwarded
//! (and that a denied request never was).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The body of every answer.
pub const BODY: &str = "backend ok";

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method, as sent.
    pub method: String,
    /// The request target as on the wire: path and query for origin-form.
    pub target: String,
    /// Every header field received.
    pub headers: HeaderMap,
    /// The whole body (empty if the sender cut it short).
    pub body: Bytes,
}

/// A recording HTTP/1.1 server on `127.0.0.1`; dropping it stops the server.
pub struct Backend {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Backend {
    /// A backend that answers every request 200 with body [`BODY`] and `x-backend: 1`.
    pub async fn start() -> Backend {
        Backend::spawn(Some(Duration::ZERO)).await
    }

    /// Like [`Backend::start`], but each answer comes `delay` after the request (drain tests).
    pub async fn slow(delay: Duration) -> Backend {
        Backend::spawn(Some(delay)).await
    }

    /// A backend that records each request but never answers it (for timeout tests).
    pub async fn hanging() -> Backend {
        Backend::spawn(None).await
    }

    /// An address on loopback where nothing listens (for "upstream down" tests).
    pub fn unused_addr() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    /// Where the backend listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// `answer`: after how long each request is answered; `None`: never.
    async fn spawn(answer: Option<Duration>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(listener, requests.clone(), answer));
        Backend {
            addr,
            requests,
            task,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection too.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    requests: Arc<Mutex<Vec<Recorded>>>,
    answer: Option<Duration>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(serve(tcp, requests.clone(), answer));
        // Reap finished connections so a long test does not accumulate them.
        while connections.try_join_next().is_some() {}
    }
}

async fn serve(tcp: TcpStream, requests: Arc<Mutex<Vec<Recorded>>>, answer: Option<Duration>) {
    let service = service_fn(move |req| handle(req, requests.clone(), answer));
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), service)
        .await;
}

async fn handle(
    req: Request<Incoming>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    answer: Option<Duration>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (head, body) = req.into_parts();
    // A body cut short still counts as forwarded: record the head whatever the body did.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    requests.lock().unwrap().push(Recorded {
        method: head.method.to_string(),
        target: head.uri.to_string(),
        headers: head.headers,
        body,
    });
    match answer {
        None => std::future::pending::<()>().await,
        Some(delay) if !delay.is_zero() => tokio::time::sleep(delay).await,
        Some(_) => {}
    }
    let response = Response::builder()
        .header("x-backend", "1")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap();
    Ok(response)
}

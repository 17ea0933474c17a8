//! [`Agent`]: a stand-in SPIRE agent — the SPIFFE Workload API's real gRPC service (tonic,
//! the server generated from the official `workload.proto`) on a Unix socket in the test
//! process, serving rcgen-minted SVIDs and bundles. SPIRE itself cannot be installed from the
//! registries this project reaches; this speaks the same protocol to the same client.
//!
//! Like SPIRE, it refuses calls without the `workload.spiffe.io: true` metadata, streams the
//! current [`X509svidResponse`] on `FetchX509SVID` and every later one pushed with
//! [`Agent::push`], and ends its streams when stopped. Before anything is pushed a stream is
//! open but silent (an agent still attesting the workload).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use segward::certs::{Ca, IssuedSvid};
use segward::workload_api::SECURITY_HEADER;
use segward::workload_api::pb::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use segward::workload_api::pb::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svid, X509svidRequest,
    X509svidResponse,
};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};

/// What the agent serves and what it saw.
struct State {
    /// The response streams send; `None` until the first push.
    current: watch::Sender<Option<X509svidResponse>>,
    /// One entry per `FetchX509SVID` call that reached the service (the header was right).
    accepted_calls: Mutex<usize>,
    /// Calls refused for a missing or wrong security header.
    refused_calls: Mutex<usize>,
}

/// A running (or stopped) stand-in agent on one socket path.
pub struct Agent {
    socket: PathBuf,
    state: Arc<State>,
    running: Option<Running>,
}

struct Running {
    /// Ends every open stream, then the server.
    stop: watch::Sender<bool>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Agent {
    /// An agent listening on `<dir>/agent.sock`, nothing issued yet.
    pub fn start(dir: &Path) -> Agent {
        let mut agent = Agent {
            socket: dir.join("agent.sock"),
            state: Arc::new(State {
                current: watch::Sender::new(None),
                accepted_calls: Mutex::new(0),
                refused_calls: Mutex::new(0),
            }),
            running: None,
        };
        agent.restart();
        agent
    }

    /// The socket as a Workload API URI, `unix:///…/agent.sock`.
    pub fn uri(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Makes `response` the agent's current one: sent on every open stream, and first on
    /// every new one.
    pub fn push(&self, response: X509svidResponse) {
        self.state.current.send_replace(Some(response));
    }

    /// How many `FetchX509SVID` calls carried the security header (and were served).
    pub fn accepted_calls(&self) -> usize {
        *self.state.accepted_calls.lock().unwrap()
    }

    /// How many calls were refused for lacking it.
    pub fn refused_calls(&self) -> usize {
        *self.state.refused_calls.lock().unwrap()
    }

    /// Ends every stream, stops serving and removes the socket (the agent is gone).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.send_replace(true);
            let _ = running.shutdown.send(());
            running.server.await.unwrap();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Serves again on the same socket with the same current response (the agent is back).
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "agent already running");
        let _ = std::fs::remove_file(&self.socket);
        let listener = UnixListener::bind(&self.socket).unwrap();
        let (stop, stopped) = watch::channel(false);
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let service = Service {
            state: self.state.clone(),
            stopped,
        };
        let refusals = self.state.clone();
        let checked =
            SpiffeWorkloadApiServer::with_interceptor(service, move |request: Request<()>| {
                let header = request.metadata().get(SECURITY_HEADER);
                if header.and_then(|v| v.to_str().ok()) == Some("true") {
                    Ok(request)
                } else {
                    *refusals.refused_calls.lock().unwrap() += 1;
                    // SPIRE's own words.
                    Err(Status::invalid_argument(
                        "security header missing from request",
                    ))
                }
            });
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(
                    checked,
                    UnixListenerStream::new(listener),
                    async move {
                        let _ = shutdown_rx.await;
                    },
                )
                .await
                .unwrap();
        });
        self.running = Some(Running {
            stop,
            shutdown,
            server,
        });
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.send_replace(true);
            running.server.abort();
        }
    }
}

struct Service {
    state: Arc<State>,
    stopped: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Service {
    type FetchX509SVIDStream = ReceiverStream<Result<X509svidResponse, Status>>;
    type FetchX509BundlesStream = ReceiverStream<Result<X509BundlesResponse, Status>>;
    type FetchJWTBundlesStream = ReceiverStream<Result<JwtBundlesResponse, Status>>;

    async fn fetch_x509svid(
        &self,
        _request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        *self.state.accepted_calls.lock().unwrap() += 1;
        let (tx, rx) = mpsc::channel(4);
        let mut current = self.state.current.subscribe();
        let mut stopped = self.stopped.clone();
        tokio::spawn(async move {
            current.mark_changed();
            loop {
                tokio::select! {
                    changed = current.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let response = current.borrow_and_update().clone();
                        if let Some(response) = response
                            && tx.send(Ok(response)).await.is_err()
                        {
                            return;
                        }
                    }
                    () = async { let _ = stopped.wait_for(|stopped| *stopped).await; } => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_x509_bundles(
        &self,
        _request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Err(Status::unimplemented("not served by the stand-in agent"))
    }

    async fn fetch_jwtsvid(
        &self,
        _request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        Err(Status::unimplemented("not served by the stand-in agent"))
    }

    async fn fetch_jwt_bundles(
        &self,
        _request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(Status::unimplemented("not served by the stand-in agent"))
    }

    async fn validate_jwtsvid(
        &self,
        _request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        Err(Status::unimplemented("not served by the stand-in agent"))
    }
}

/// A `FetchX509SVID` response as SPIRE builds it: `svid` (its chain as concatenated DER, the
/// PKCS#8 key as DER) for `spiffe_id`, `own` as its trust domain's bundle, and each
/// `(trust domain ID, CA)` of `federated` as a federated bundle.
pub fn response(
    spiffe_id: &str,
    svid: &IssuedSvid,
    own: &Ca,
    federated: &[(&str, &Ca)],
) -> X509svidResponse {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    let chain: Vec<u8> = CertificateDer::pem_slice_iter(svid.chain_pem.as_bytes())
        .flat_map(|cert| cert.unwrap().to_vec())
        .collect();
    let key = PrivatePkcs8KeyDer::from_pem_slice(svid.key_pem.as_bytes()).unwrap();
    X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: spiffe_id.to_owned(),
            x509_svid: chain,
            x509_svid_key: key.secret_pkcs8_der().to_vec(),
            bundle: own.cert_der().to_vec(),
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: federated
            .iter()
            .map(|(td, ca)| (td.to_string(), ca.cert_der().to_vec()))
            .collect(),
    }
}

//! The composition root of `segward run` (PRODUCT.md §1, §4 "fail closed", §5, §6 SIGTERM,
//! §12): config → the sources and the reloader's loops armed (`reload::Loops`: the Workload
//! API client starts, when the identity comes from SPIRE) → admin bound, `/readyz` 503 → the
//! reloader's first load (policy, then credentials from files or the first valid SVID of the
//! Workload API, each checked before any data-plane socket opens) → bind → one task per
//! listener, and the reloader's loops → shutdown and drain. Tests and the demo start
//! sidecars the same way, on 127.0.0.1:0.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::{Admin, Readiness};
use crate::config::{self, Config, Protocol};
use crate::identity::SpiffeId;
use crate::live::Live;
use crate::proxy::request_id::RequestIds;
use crate::proxy::serve::{self, Lanes};
use crate::proxy::{Context, Inbound, Outbound, OutboundError, TcpInbound, TcpOutbound};
use crate::reload::{Loops, ReadHook, ReloadError, ReloadStatus, Reloader, Report, Sources};
use crate::shutdown::{self, Shutdown, Trigger};
use crate::telemetry::decision_log::Sampler;
use crate::telemetry::metrics::Metrics;
use crate::tls::{self, TlsError, TlsOptions};
use crate::workers::{Workers, WorkersError};

/// Why a sidecar did not start; every variant names the file or address at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policy (every error at file:line:col), or the certificate, key or a bundle, is
    /// unreadable or invalid.
    #[error("cannot load the {part}:\n{error}", part = .0.part(), error = .0)]
    Load(ReloadError),
    /// rustls refused the server config.
    #[error("inbound TLS: {0}")]
    ServerTls(TlsError),
    /// A destination's client could not be built.
    #[error("{0}")]
    Outbound(OutboundError),
    /// `inbound.upstream` is not usable as a URI authority.
    #[error("inbound.upstream: {0}")]
    Upstream(http::uri::InvalidUri),
    /// The event loops of `limits.worker_threads` could not start.
    #[error("event loops: {0}")]
    Workers(WorkersError),
    /// A listen address could not be bound.
    #[error("{listener} {addr}: {source}")]
    Bind {
        /// The key: `inbound.listen`, `outbound.destinations.NAME.local`, `admin.listen`, …
        listener: String,
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A running sidecar: its listeners' bound addresses and the handle to stop it.
pub struct Sidecar {
    cx: Arc<Context>,
    readiness: Arc<Readiness>,
    /// Each inbound listener's bound address, in config order.
    inbound_addrs: Vec<SocketAddr>,
    outbound_addr: Option<SocketAddr>,
    /// Each TCP destination's bound `local` address, by lower-case name.
    tcp_local_addrs: BTreeMap<String, SocketAddr>,
    reloader: Arc<Reloader>,
    /// Stops the listeners and the watcher.
    trigger: Trigger,
    tasks: Vec<JoinHandle<()>>,
    /// The event loops beside this one; stopped once the listeners have drained.
    workers: Option<Workers>,
    admin: AdminListener,
}

/// The admin listener: bound first, so `/healthz` answers and `/readyz` says 503 while the
/// first load runs (with the Workload API, until the agent has issued our SVID); stopped
/// last, so `/readyz` says "draining" while listeners drain.
struct AdminListener {
    addr: SocketAddr,
    trigger: Trigger,
    task: Option<JoinHandle<()>>,
}

impl AdminListener {
    async fn start(listen: SocketAddr, admin: Arc<Admin>) -> Result<Self, StartError> {
        let (trigger, shutdown) = shutdown::channel();
        let listener = bind("admin.listen".to_owned(), listen).await?;
        let addr = listener.local_addr().unwrap_or(listen);
        let task = tokio::spawn(admin.serve(listener, shutdown));
        Ok(Self {
            addr,
            trigger,
            task: Some(task),
        })
    }
}

impl Sidecar {
    /// Loads and checks everything `config` names, binds the admin listener (`/readyz` says
    /// 503 until the rest is up), then the data-plane listeners, and starts serving and
    /// watching for changes. Nothing listens on the data plane unless credentials, bundles
    /// and policy are all valid (fail closed).
    ///
    /// # Errors
    /// [`StartError`] naming the file or address at fault.
    pub async fn start(config: &Config) -> Result<Sidecar, StartError> {
        Self::start_with_hook(config, None).await
    }

    /// [`Sidecar::start`], running `hook` between the first read of the sources and the
    /// build of the first state from them: a test seam ([`ReadHook`]).
    ///
    /// # Errors
    /// As [`Sidecar::start`].
    #[doc(hidden)]
    pub async fn start_with_hook(
        config: &Config,
        hook: Option<ReadHook>,
    ) -> Result<Sidecar, StartError> {
        let (trigger, shutdown) = shutdown::channel();
        let sources = Sources::new(config);
        // Armed before the first read: a write landing while the first state is built is an
        // event that waits for the reload loop, not a change recorded as seen; and the
        // Workload API client runs from the start, as the first load waits for its SVID.
        let mut loops = Loops::arm(&sources, config.reload, &shutdown);
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::default());
        if loops.awaits_svid() {
            readiness.set_awaiting_svid();
        }
        let admin = Arc::new(Admin::new(metrics.clone(), readiness.clone()));
        let admin_listener = AdminListener::start(config.admin_listen, admin.clone()).await?;
        let reloader = Reloader::start(sources, metrics.clone(), hook, &mut loops)
            .await
            .map_err(StartError::Load)?;
        let reloader = Arc::new(reloader);
        admin.attach(reloader.live().clone(), reloader.status().clone());
        let mut sidecar = Sidecar::assemble(
            config,
            reloader.clone(),
            metrics,
            readiness,
            admin_listener,
            trigger,
        )?;
        sidecar.bind_listeners(config, &shutdown).await?;
        sidecar.warn_http_only_allows(config);
        sidecar.tasks.extend(loops.spawn(reloader, shutdown));
        sidecar.readiness.set_ready();
        Ok(sidecar)
    }

    /// The sidecar around the first state: the request context every listener shares, and
    /// the event loops they will run on; nothing bound yet.
    fn assemble(
        config: &Config,
        reloader: Arc<Reloader>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        admin: AdminListener,
        trigger: Trigger,
    ) -> Result<Sidecar, StartError> {
        let live = reloader.live().clone();
        let own_id = live.tls().current().credentials().id().clone();
        let log = config.decision_log;
        let cx = Arc::new(Context {
            live,
            own_id,
            mode: config.mode,
            limits: config.limits,
            metrics,
            sampler: Sampler::new(log.allowed_sample_rate, log.allowed_per_second),
            ids: RequestIds::new(),
        });
        let workers = Workers::start(config.limits.worker_threads).map_err(StartError::Workers)?;
        Ok(Sidecar {
            cx,
            readiness,
            inbound_addrs: Vec::new(),
            outbound_addr: None,
            tcp_local_addrs: BTreeMap::new(),
            reloader,
            trigger,
            tasks: Vec::new(),
            workers: Some(workers),
            admin,
        })
    }

    /// Binds every data-plane listener `config` names and starts accepting on each.
    async fn bind_listeners(
        &mut self,
        config: &Config,
        shutdown: &Shutdown,
    ) -> Result<(), StartError> {
        for (i, inbound) in config.inbound.iter().enumerate() {
            let key = match config.inbound.len() {
                1 => "inbound.listen".to_owned(),
                _ => format!("inbound[{i}].listen"),
            };
            self.start_inbound(config, inbound, key, shutdown.clone())
                .await?;
        }
        if let Some(outbound) = &config.outbound {
            self.start_outbound(config, outbound, shutdown.clone())
                .await?;
        }
        Ok(())
    }

    async fn start_inbound(
        &mut self,
        config: &Config,
        inbound: &config::Inbound,
        key: String,
        shutdown: Shutdown,
    ) -> Result<(), StartError> {
        let (live, options) = (self.cx.live.tls(), tls_options(config));
        let cx = self.cx.clone();
        let addr = match inbound.protocol {
            Protocol::Http => {
                let server = tls::server_config(live, options).map_err(StartError::ServerTls)?;
                self.listen(key, inbound.listen, shutdown, || {
                    Inbound::new(cx.clone(), server.clone(), &inbound.upstream)
                        .map_err(StartError::Upstream)
                })
                .await?
            }
            Protocol::Tcp => {
                let server =
                    tls::tcp_server_config(live, options).map_err(StartError::ServerTls)?;
                self.listen(key, inbound.listen, shutdown, || {
                    Ok(TcpInbound::new(
                        cx.clone(),
                        server.clone(),
                        inbound.upstream.clone(),
                    ))
                })
                .await?
            }
        };
        self.inbound_addrs.extend(addr);
        Ok(())
    }

    async fn start_outbound(
        &mut self,
        config: &Config,
        outbound: &config::Outbound,
        shutdown: Shutdown,
    ) -> Result<(), StartError> {
        // Each loop has its own pools: its connections to a destination are its own.
        let cx = self.cx.clone();
        if let Some(listen) = outbound.listen {
            let key = "outbound.listen".to_owned();
            self.outbound_addr = self
                .listen(key, listen, shutdown.clone(), || {
                    Outbound::new(cx.clone(), outbound, tls_options(config))
                        .map_err(StartError::Outbound)
                })
                .await?;
        }
        for (name, destination) in &outbound.tcp {
            let client = tls::tcp_client_config(
                self.cx.live.tls(),
                &destination.spiffe_id,
                tls_options(config),
            )
            .map_err(|source| {
                StartError::Outbound(OutboundError::Tls {
                    name: name.clone(),
                    source,
                })
            })?;
            let key = format!("outbound.destinations.{name}.local");
            let addr = self
                .listen(key, destination.local, shutdown.clone(), || {
                    Ok(TcpOutbound::new(cx.clone(), client.clone(), destination))
                })
                .await?;
            self.tcp_local_addrs.extend(addr.map(|a| (name.clone(), a)));
        }
        Ok(())
    }

    /// PRODUCT.md §11: allow rules naming methods or paths never match a TCP connection, and
    /// deny rules naming them match every one; warn about both kinds where they cover this
    /// sidecar's TCP listeners or TCP destinations, once, at start-up.
    fn warn_http_only_allows(&self, config: &Config) {
        let policy = self.cx.live.policy();
        let tcp_inbound = config.inbound.iter().any(|l| l.protocol == Protocol::Tcp);
        let own = tcp_inbound.then_some(&self.cx.own_id);
        let destinations = config.outbound.iter().flat_map(|o| o.tcp.values());
        for id in own.into_iter().chain(destinations.map(|d| &d.spiffe_id)) {
            for rule in policy.http_only_allows(id) {
                tracing::warn!(
                    rule,
                    destination_id = %id,
                    "allow rule names methods or paths, so it never allows a TCP connection \
                     to this destination"
                );
            }
            for rule in policy.http_denies_matching_connections(id) {
                tracing::warn!(
                    rule,
                    destination_id = %id,
                    "deny rule names methods or paths, yet refuses every TCP connection it \
                     covers to this destination (fail closed: a connection has neither)"
                );
            }
        }
    }

    /// Builds the listener's state once per event loop with `state`, binds `addr` and starts
    /// accepting; returns the bound address.
    async fn listen<L: serve::Listener>(
        &mut self,
        name: String,
        addr: SocketAddr,
        shutdown: Shutdown,
        state: impl Fn() -> Result<L, StartError>,
    ) -> Result<Option<SocketAddr>, StartError> {
        let mut lanes = Vec::new();
        for runtime in self.loops() {
            lanes.push((runtime, Arc::new(state()?)));
        }
        let listener = bind(name, addr).await?;
        let bound = listener.local_addr().ok();
        self.tasks.push(tokio::spawn(serve::run(
            Lanes::new(lanes),
            listener,
            shutdown,
        )));
        Ok(bound)
    }

    /// Loop 0 (`None`, this runtime), then a handle to each other loop.
    fn loops(&self) -> Vec<Option<tokio::runtime::Handle>> {
        self.workers
            .iter()
            .flat_map(|workers| workers.loops().map(|handle| handle.cloned()))
            .collect()
    }

    /// Re-reads policy, certificate, key and bundles now, as a file event or SIGHUP (`force`)
    /// would; what changed and is valid is published, the rest is reported.
    pub async fn reload(&self, force: bool) -> Report {
        self.reloader.reload(force).await
    }

    /// The sidecar's own SPIFFE ID (from its certificate).
    pub fn id(&self) -> &SpiffeId {
        &self.cx.own_id
    }

    /// The live state (the policy and TLS material in force).
    pub fn live(&self) -> &Arc<Live> {
        &self.cx.live
    }

    /// What the reloads did so far (the last error of each part, counts).
    pub fn reload_status(&self) -> ReloadStatus {
        self.reloader.status().read()
    }

    /// How many event loops serve the listeners (`limits.worker_threads`).
    pub fn event_loops(&self) -> usize {
        self.workers.as_ref().map_or(1, Workers::len)
    }

    /// Where the (first) inbound listener is bound, if configured.
    pub fn inbound_addr(&self) -> Option<SocketAddr> {
        self.inbound_addrs.first().copied()
    }

    /// Where each inbound listener is bound, in config order.
    pub fn inbound_addrs(&self) -> &[SocketAddr] {
        &self.inbound_addrs
    }

    /// Where the app connects for the TCP destination `name` (its bound `local:`).
    pub fn tcp_local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.tcp_local_addrs
            .get(config::destination_key(name).as_ref())
            .copied()
    }

    /// Where the outbound listener is bound, if configured.
    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.outbound_addr
    }

    /// Where the admin endpoints are bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.addr
    }

    /// Stops accepting (`/readyz` turns 503), lets in-flight requests finish (up to the
    /// drain timeout), then stops the admin listener and returns.
    pub async fn shutdown(mut self) {
        self.readiness.set_draining();
        self.trigger.fire();
        for task in std::mem::take(&mut self.tasks) {
            // A listener task that panicked has nothing left to drain.
            let _ = task.await;
        }
        if let Some(workers) = self.workers.take() {
            workers.stop().await;
        }
        self.admin.trigger.fire();
        if let Some(task) = self.admin.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        // A sidecar dropped without `shutdown` (a failing test) must not keep listening.
        self.trigger.fire();
        self.admin.trigger.fire();
    }
}

fn tls_options(config: &Config) -> TlsOptions {
    TlsOptions {
        tls12: config.tls12,
    }
}

async fn bind(listener: String, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

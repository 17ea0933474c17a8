//! What a sidecar listens on: the admin listener, bound first and stopped last, and the
//! data-plane listeners — HTTP and TCP inbound, the outbound proxy, each TCP destination's
//! local port — each with its state built once per event loop, then bound and accepting;
//! and the Envoy `ext_authz` Check service (docs/envoy.md) on the main loop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::StartError;
use crate::admin::Admin;
use crate::config::{self, Config, Protocol};
use crate::ext_authz::{BoundAt, Checker, ExtAuthzServer};
use crate::proxy::serve::{self, Lanes};
use crate::proxy::{Context, Inbound, Outbound, OutboundError, TcpInbound, TcpOutbound};
use crate::shutdown::{self, Shutdown, Trigger};
use crate::tls::{self, TlsOptions};

/// The admin listener: bound first, so `/healthz` answers and `/readyz` says 503 while the
/// first load runs (with the Workload API, until the agent has issued our SVID); stopped
/// last, so `/readyz` says "draining" while listeners drain.
pub(super) struct AdminListener {
    /// The bound address.
    pub(super) addr: SocketAddr,
    /// Stops it.
    pub(super) trigger: Trigger,
    /// Its accept loop, awaited once stopped.
    pub(super) task: Option<JoinHandle<()>>,
}

impl AdminListener {
    /// Binds `listen` and serves `admin` on it.
    pub(super) async fn start(listen: SocketAddr, admin: Arc<Admin>) -> Result<Self, StartError> {
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

/// The data-plane listeners of one sidecar, bound and accepting.
#[derive(Default)]
pub(super) struct Listeners {
    /// Each inbound listener's bound address, in config order.
    pub(super) inbound: Vec<SocketAddr>,
    /// The outbound proxy's bound address, if configured.
    pub(super) outbound: Option<SocketAddr>,
    /// Each TCP destination's bound `local` address, by lower-case name.
    pub(super) tcp_local: BTreeMap<String, SocketAddr>,
    /// Where the Envoy `ext_authz` Check service listens, if configured.
    pub(super) ext_authz: Option<BoundAt>,
    /// Their accept loops, awaited when draining.
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Binds every data-plane listener `config` names, each serving on every event loop of
    /// `loops` (loop 0, `None`, is this runtime), until `shutdown`.
    pub(super) async fn bind(
        config: &Config,
        cx: &Arc<Context>,
        loops: Vec<Option<Handle>>,
        shutdown: &Shutdown,
    ) -> Result<Self, StartError> {
        let mut binding = Binding {
            config,
            cx,
            loops,
            shutdown,
            bound: Listeners::default(),
        };
        for (i, inbound) in config.inbound.iter().enumerate() {
            let key = match config.inbound.len() {
                1 => "inbound.listen".to_owned(),
                _ => format!("inbound[{i}].listen"),
            };
            binding.inbound(inbound, key).await?;
        }
        if let Some(outbound) = &config.outbound {
            binding.outbound(outbound).await?;
        }
        if let Some(ext_authz) = &config.ext_authz {
            let checker = Checker::new(cx.clone());
            let server =
                ExtAuthzServer::start(&ext_authz.listen, checker, config.limits, shutdown.clone())
                    .await
                    .map_err(StartError::ExtAuthz)?;
            binding.bound.ext_authz = Some(server.bound);
            binding.bound.tasks.push(server.task);
        }
        Ok(binding.bound)
    }
}

/// What every listener is built from, and what is bound so far.
struct Binding<'a> {
    config: &'a Config,
    cx: &'a Arc<Context>,
    loops: Vec<Option<Handle>>,
    shutdown: &'a Shutdown,
    bound: Listeners,
}

impl Binding<'_> {
    async fn inbound(&mut self, inbound: &config::Inbound, key: String) -> Result<(), StartError> {
        let (live, options) = (self.cx.live.tls(), self.tls_options());
        let cx = self.cx.clone();
        let addr = match inbound.protocol {
            Protocol::Http => {
                let server = tls::server_config(live, options).map_err(StartError::ServerTls)?;
                self.listen(key, inbound.listen, || {
                    Inbound::new(cx.clone(), server.clone(), &inbound.upstream)
                        .map_err(StartError::Upstream)
                })
                .await?
            }
            Protocol::Tcp => {
                let server =
                    tls::tcp_server_config(live, options).map_err(StartError::ServerTls)?;
                self.listen(key, inbound.listen, || {
                    Ok(TcpInbound::new(
                        cx.clone(),
                        server.clone(),
                        inbound.upstream.clone(),
                    ))
                })
                .await?
            }
        };
        self.bound.inbound.extend(addr);
        Ok(())
    }

    async fn outbound(&mut self, outbound: &config::Outbound) -> Result<(), StartError> {
        // Each loop has its own pools: its connections to a destination are its own.
        let (cx, options) = (self.cx.clone(), self.tls_options());
        if let Some(listen) = outbound.listen {
            let key = "outbound.listen".to_owned();
            self.bound.outbound = self
                .listen(key, listen, || {
                    Outbound::new(cx.clone(), outbound, options).map_err(StartError::Outbound)
                })
                .await?;
        }
        for (name, destination) in &outbound.tcp {
            let client =
                tls::tcp_client_config(self.cx.live.tls(), &destination.spiffe_id, options)
                    .map_err(|source| {
                        StartError::Outbound(OutboundError::Tls {
                            name: name.clone(),
                            source,
                        })
                    })?;
            let key = format!("outbound.destinations.{name}.local");
            let addr = self
                .listen(key, destination.local, || {
                    Ok(TcpOutbound::new(cx.clone(), client.clone(), destination))
                })
                .await?;
            self.bound.tcp_local.extend(addr.map(|a| (name.clone(), a)));
        }
        Ok(())
    }

    /// Builds the listener's state once per event loop with `state`, binds `addr` and starts
    /// accepting; returns the bound address.
    async fn listen<L: serve::Listener>(
        &mut self,
        name: String,
        addr: SocketAddr,
        state: impl Fn() -> Result<L, StartError>,
    ) -> Result<Option<SocketAddr>, StartError> {
        let mut lanes = Vec::new();
        for runtime in &self.loops {
            lanes.push((runtime.clone(), Arc::new(state()?)));
        }
        let listener = bind(name, addr).await?;
        let bound = listener.local_addr().ok();
        let shutdown = self.shutdown.clone();
        let accept = serve::run(Lanes::new(lanes), listener, shutdown);
        self.bound.tasks.push(tokio::spawn(accept));
        Ok(bound)
    }

    fn tls_options(&self) -> TlsOptions {
        TlsOptions {
            tls12: self.config.tls12,
        }
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

//! The composition root of `segward run` (docs/cli.md, §4 "fail closed", §5, §6 SIGTERM,
//! §12): config → the sources and the reloader's loops armed (`reload::Loops`: the Workload
//! API client starts, when the identity comes from SPIRE) → admin bound, `/readyz` 503 → the
//! reloader's first load (policy, then credentials from files or the first valid SVID of the
//! Workload API, each checked before any data-plane socket opens) → bind → one task per
//! listener, and the reloader's loops → shutdown and drain. Tests and the demo start
//! sidecars the same way, on 127.0.0.1:0.

mod listeners;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use listeners::{AdminListener, Listeners};

use crate::admin::{Admin, Readiness};
use crate::config::{self, Config, Protocol};
use crate::detect::Probes;
use crate::identity::SpiffeId;
use crate::live::Live;
use crate::policy::analysis::lint;
use crate::proxy::request_id::RequestIds;
use crate::proxy::{Context, OutboundError};
use crate::reload::{Loops, ReadHook, ReloadError, ReloadStatus, Reloader, Report, Sources};
use crate::shutdown::{self, Trigger};
use crate::telemetry::decision_log::Sampler;
use crate::telemetry::metrics::Metrics;
use crate::tls::TlsError;
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
    /// The `ext_authz` listener could not be bound (docs/envoy.md).
    #[error("{0}")]
    ExtAuthz(crate::ext_authz::StartError),
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
    /// The data-plane listeners: their bound addresses and accept loops.
    listeners: Listeners,
    reloader: Arc<Reloader>,
    /// Stops the listeners and the reloader's loops.
    trigger: Trigger,
    /// The reloader's loops ([`Loops::spawn`]).
    reload_loops: Vec<JoinHandle<()>>,
    /// The event loops beside this one; stopped once the listeners have drained.
    workers: Option<Workers>,
    admin: AdminListener,
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
        admin.attach_probes(sidecar.cx.probes.clone());
        sidecar.warn_tripwires_without_detect();
        sidecar.listeners =
            Listeners::bind(config, &sidecar.cx, sidecar.loops(), &shutdown).await?;
        sidecar.warn_http_only_allows(config);
        sidecar.reload_loops = loops.spawn(reloader, shutdown);
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
        let log = config.decision_log;
        let woken = Arc::downgrade(&live);
        let wake = move || {
            if let Some(live) = woken.upgrade() {
                live.wake_connections();
            }
        };
        let probes = Arc::new(Probes::new(
            config.probe,
            wake,
            metrics.clone(),
            config.policy.clone(),
        ));
        let cx = Arc::new(Context {
            probes,
            live,
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
            listeners: Listeners::default(),
            reloader,
            trigger,
            reload_loops: Vec::new(),
            workers: Some(workers),
            admin,
        })
    }

    /// docs/l4.md: allow rules naming methods or paths never match a TCP connection, and
    /// deny rules naming them match every one; warn about both kinds where they cover this
    /// sidecar's TCP listeners or TCP destinations, once, at start-up.
    fn warn_http_only_allows(&self, config: &Config) {
        let policy = self.cx.live.policy();
        let tcp_inbound = config.inbound.iter().any(|l| l.protocol == Protocol::Tcp);
        let own = tcp_inbound.then_some(policy.own_id());
        let destinations = config.outbound.iter().flat_map(|o| o.tcp.values());
        for id in own.into_iter().chain(destinations.map(|d| &d.spiffe_id)) {
            for rule in lint::http_only_allows(&policy, id) {
                tracing::warn!(
                    rule,
                    destination_id = %id,
                    "allow rule names methods or paths, so it never allows a TCP connection \
                     to this destination"
                );
            }
            for rule in lint::http_denies_matching_connections(&policy, id) {
                tracing::warn!(
                    rule,
                    destination_id = %id,
                    "deny rule names methods or paths, yet refuses every TCP connection it \
                     covers to this destination (fail closed: a connection has neither)"
                );
            }
        }
    }

    /// docs/probes.md: a `tripwire: true` rule only denies while `detect.probe` is absent.
    fn warn_tripwires_without_detect(&self) {
        if self.cx.probes.enabled() {
            return;
        }
        let policy = self.cx.live.policy();
        if let Some(rule) = policy.rules().iter().find(|r| r.tripwire) {
            tracing::warn!(
                rule = rule.name,
                "the policy has tripwire rules but detect.probe is not configured: they deny, \
                 and nothing is detected"
            );
        }
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

    /// The sidecar's own SPIFFE ID in force (from its certificate; a rotation to another ID
    /// changes it, docs/spire.md).
    pub fn id(&self) -> SpiffeId {
        self.cx.live.policy().own_id().clone()
    }

    /// The probe detector (docs/probes.md): its suspects, containments and release.
    pub fn probes(&self) -> &Arc<Probes> {
        &self.cx.probes
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
        self.listeners.inbound.first().copied()
    }

    /// Where each inbound listener is bound, in config order.
    pub fn inbound_addrs(&self) -> &[SocketAddr] {
        &self.listeners.inbound
    }

    /// Where the app connects for the TCP destination `name` (its bound `local:`).
    pub fn tcp_local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .tcp_local
            .get(config::destination_key(name).as_ref())
            .copied()
    }

    /// Where the outbound listener is bound, if configured.
    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.listeners.outbound
    }

    /// Where the Envoy `ext_authz` Check service listens, if configured.
    pub fn ext_authz_addr(&self) -> Option<&crate::ext_authz::BoundAt> {
        self.listeners.ext_authz.as_ref()
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
        let accepting = std::mem::take(&mut self.listeners.tasks);
        for task in accepting
            .into_iter()
            .chain(std::mem::take(&mut self.reload_loops))
        {
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

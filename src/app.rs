//! The composition root of `segward run` (PRODUCT.md §1, §4 "fail closed", §6 SIGTERM):
//! config → credentials and policy, each checked before any socket opens → bind → one task
//! per listener → shutdown and drain. Tests and the demo start sidecars the same way, on
//! 127.0.0.1:0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::identity::SpiffeId;
use crate::live::Live;
use crate::policy::{self, PolicyErrors};
use crate::proxy::{Inbound, Outbound, OutboundError};
use crate::shutdown::{self, Trigger};
use crate::tls::{self, Credentials, TlsError, TlsOptions};

/// Why a sidecar did not start; every variant names the file or address at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Certificate, key or a bundle is unreadable or invalid.
    #[error("{0}")]
    Credentials(TlsError),
    /// The policy is invalid (every error at file:line:col).
    #[error("policy {path}:\n{errors}")]
    Policy {
        /// The policy file or folder.
        path: PathBuf,
        /// Every problem found.
        errors: PolicyErrors,
    },
    /// rustls refused the server config.
    #[error("inbound TLS: {0}")]
    ServerTls(TlsError),
    /// A destination's client could not be built.
    #[error("{0}")]
    Outbound(OutboundError),
    /// `inbound.upstream` is not usable as a URI authority.
    #[error("inbound.upstream: {0}")]
    Upstream(http::uri::InvalidUri),
    /// A listen address could not be bound.
    #[error("{listener}.listen {addr}: {source}")]
    Bind {
        /// `inbound` or `outbound`.
        listener: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A running sidecar: its listeners' bound addresses and the handle to stop it.
pub struct Sidecar {
    id: SpiffeId,
    live: Arc<Live>,
    inbound_addr: Option<SocketAddr>,
    outbound_addr: Option<SocketAddr>,
    trigger: Trigger,
    tasks: Vec<JoinHandle<()>>,
}

impl Sidecar {
    /// Loads and checks everything `config` names, binds the listeners and starts serving.
    /// Nothing listens unless credentials, bundles and policy are all valid (fail closed).
    ///
    /// # Errors
    /// [`StartError`] naming the file or address at fault.
    pub async fn start(config: &Config) -> Result<Sidecar, StartError> {
        let bundles: Vec<_> = config.identity.bundles.clone().into_iter().collect();
        let credentials = Credentials::load(
            &config.identity.cert,
            &config.identity.key,
            &bundles,
            SystemTime::now(),
        )
        .map_err(StartError::Credentials)?;
        let policy = policy::load(&config.policy).map_err(|errors| StartError::Policy {
            path: config.policy.clone(),
            errors,
        })?;
        let live = Arc::new(Live::new(policy));
        let tls_options = TlsOptions {
            tls12: config.tls12,
        };
        let (trigger, shutdown) = shutdown::channel();
        let mut sidecar = Sidecar {
            id: credentials.id().clone(),
            live: live.clone(),
            inbound_addr: None,
            outbound_addr: None,
            trigger,
            tasks: Vec::new(),
        };
        if let Some(inbound) = &config.inbound {
            let server =
                tls::server_config(&credentials, tls_options).map_err(StartError::ServerTls)?;
            let proxy = Inbound::new(
                live.clone(),
                credentials.id().clone(),
                server,
                &inbound.upstream,
                config.mode,
                config.timeouts,
            )
            .map_err(StartError::Upstream)?;
            let listener = bind("inbound", inbound.listen).await?;
            sidecar.inbound_addr = listener.local_addr().ok();
            let task = Arc::new(proxy).serve(listener, shutdown.clone());
            sidecar.tasks.push(tokio::spawn(task));
        }
        if let Some(outbound) = &config.outbound {
            let proxy = Outbound::new(
                live.clone(),
                &credentials,
                outbound,
                config.mode,
                config.timeouts,
                tls_options,
            )
            .map_err(StartError::Outbound)?;
            let listener = bind("outbound", outbound.listen).await?;
            sidecar.outbound_addr = listener.local_addr().ok();
            let task = Arc::new(proxy).serve(listener, shutdown);
            sidecar.tasks.push(tokio::spawn(task));
        }
        Ok(sidecar)
    }

    /// The sidecar's own SPIFFE ID (from its certificate).
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The live state (the policy in force).
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Where the inbound listener is bound, if configured.
    pub fn inbound_addr(&self) -> Option<SocketAddr> {
        self.inbound_addr
    }

    /// Where the outbound listener is bound, if configured.
    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.outbound_addr
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout), returns.
    pub async fn shutdown(mut self) {
        self.trigger.fire();
        for task in std::mem::take(&mut self.tasks) {
            // A listener task that panicked has nothing left to drain.
            let _ = task.await;
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        // A sidecar dropped without `shutdown` (a failing test) must not keep listening.
        self.trigger.fire();
    }
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

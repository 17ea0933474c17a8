//! The outbound side (docs/configuration.md, §4): plain HTTP in from the local app — as an HTTP proxy
//! (absolute-form `GET http://payments/v1/x`) or directly with `Host: payments` — then the
//! destination named by the request's host, the egress decision with our own ID as the
//! source, and mTLS out to a server that must prove the destination's SPIFFE ID. A published
//! policy that revokes a destination's SPIFFE ID drops that destination's pool, closing its
//! idle connections, so no connection to it is reused (docs/runbook.md).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use http::uri::Authority;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use super::context::Context;
use super::exchange::Exchange;
use super::respond::{Body, ProxyError};
use super::serve::Slot;
use super::upstream::MtlsUpstream;
use super::{admission, connection, headers, serve};
use crate::config::{self, Limits, Mode};
use crate::identity::SpiffeId;
use crate::live::{Live, PolicyChanges};
use crate::policy::CompiledPolicy;
use crate::telemetry::decision_log::Direction;
use crate::telemetry::metrics::Metrics;
use crate::tls::{TlsError, TlsOptions, client_config};

/// Where requests for one destination name go.
struct Route {
    /// The SPIFFE ID the server must prove, and the egress decision's destination.
    spiffe_id: SpiffeId,
    /// Pooled mTLS connections to its `host:port`; replaced by an empty pool when a
    /// published policy revokes `spiffe_id`.
    upstream: ArcSwap<MtlsUpstream>,
    /// Whether `spiffe_id` was revoked in the last policy seen (pools drop on the change).
    revoked: AtomicBool,
    /// What a new pool is built from.
    authority: Authority,
    tls: Arc<ClientConfig>,
}

impl Route {
    /// The route to the destination configured as `name`, its pool built on the live TLS
    /// material, revoked if `policy` revokes its SPIFFE ID.
    fn new(
        cx: &Context,
        policy: &CompiledPolicy,
        name: &str,
        destination: &config::Destination,
        tls: TlsOptions,
    ) -> Result<Self, OutboundError> {
        let name = || name.to_owned();
        let client_tls =
            client_config(cx.live.tls(), &destination.spiffe_id, tls).map_err(|source| {
                OutboundError::Tls {
                    name: name(),
                    source,
                }
            })?;
        let authority: Authority =
            destination
                .address
                .to_string()
                .parse()
                .map_err(|source| OutboundError::Address {
                    name: name(),
                    source,
                })?;
        let upstream = MtlsUpstream::mtls(authority.clone(), client_tls.clone(), &cx.limits);
        Ok(Self {
            revoked: AtomicBool::new(policy.classify(&destination.spiffe_id).is_revoked()),
            spiffe_id: destination.spiffe_id.clone(),
            upstream: ArcSwap::from_pointee(upstream),
            authority,
            tls: client_tls,
        })
    }
}

/// Lower-case destination name → route.
type Routes = HashMap<String, Route>;

/// The outbound listener's state.
pub struct Outbound {
    cx: Arc<Context>,
    routes: Arc<Routes>,
}

/// Why the outbound side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// A destination's TLS client config was refused.
    #[error("outbound.destinations.{name}: {source}")]
    Tls {
        /// The destination name.
        name: String,
        /// What rustls said.
        source: TlsError,
    },
    /// A destination address is not a URI authority (cannot happen for a parsed config).
    #[error("outbound.destinations.{name}.address: {source}")]
    Address {
        /// The destination name.
        name: String,
        /// What `http` said.
        source: http::uri::InvalidUri,
    },
}

impl Outbound {
    /// Outbound state with one pooled mTLS client per configured destination, presenting the
    /// SVID of the live TLS material. Spawns the task that drops a destination's pool when a
    /// published policy revokes it; it ends with the live state or this listener state.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    ///
    /// # Errors
    /// [`OutboundError`] naming the destination whose client could not be built.
    pub fn new(
        cx: Arc<Context>,
        config: &config::Outbound,
        tls: TlsOptions,
    ) -> Result<Self, OutboundError> {
        let policy = cx.live.policy();
        let mut routes = HashMap::new();
        for (name, destination) in &config.destinations {
            let route = Route::new(&cx, &policy, name, destination, tls)?;
            routes.insert(config::destination_key(name).into_owned(), route);
        }
        let routes = Arc::new(routes);
        let keeper = PoolKeeper {
            routes: Arc::downgrade(&routes),
            live: Arc::downgrade(&cx.live),
            metrics: cx.metrics.clone(),
            limits: cx.limits,
            enforce: cx.mode == Mode::Enforce,
            own: policy.own_id().clone(),
        };
        tokio::spawn(keeper.run(cx.live.policy_changes()));
        Ok(Self { cx, routes })
    }

    /// One request from the local app, in phases; never fails, every error becomes its
    /// response (see [`super::respond`]).
    pub async fn handle(&self, mut req: Request<Incoming>) -> Response<Body> {
        let cx = &*self.cx;
        let policy = cx.live.policy();
        // 1. Route: only configured destinations; anything else is refused, nothing is sent
        // (and the refusal is logged like any request, without a destination_id).
        let route = self.route(&req);
        let destination = route.as_ref().ok().map(|route| route.spiffe_id.as_str());
        let own = policy.own_id();
        let source = own.as_str();
        let mut exchange =
            Exchange::start(cx, Direction::Outbound, &req, &policy, source, destination);
        let outcome = async {
            let route = route?;
            // 2–3. Validate and decide, as inbound does: egress rules, we are the source.
            let admitted = admission::admit(&req, &policy, own, &route.spiffe_id, &mut exchange)?;

            // 4. Forward what was admitted over mTLS; the route's client only completes a
            // handshake with a server proving `route.spiffe_id`.
            headers::strip_hop_by_hop(req.headers_mut());
            route.upstream.load_full().forward(req, admitted).await
        }
        .await;
        exchange.finish(outcome)
    }

    /// The route for the destination `req` names (compared case-insensitively).
    ///
    /// # Errors
    /// [`ProxyError::ConnectUnsupported`] (405), [`ProxyError::NoHost`] (400) or
    /// [`ProxyError::UnknownDestination`] (403).
    fn route(&self, req: &Request<Incoming>) -> Result<&Route, ProxyError> {
        if req.method() == Method::CONNECT {
            return Err(ProxyError::ConnectUnsupported);
        }
        let host = request_host(req).ok_or(ProxyError::NoHost)?;
        let route = self.routes.get(config::destination_key(host).as_ref());
        route.ok_or(ProxyError::UnknownDestination)
    }
}

impl serve::Listener for Outbound {
    const DIRECTION: Direction = Direction::Outbound;

    fn context(&self) -> &Arc<Context> {
        &self.cx
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, remote: SocketAddr, slot: Slot) {
        tracing::debug!(%remote, "outbound connection accepted");
        let limits = self.cx.limits;
        let service = service_fn(move |req| {
            let this = self.clone();
            async move { Ok::<_, Infallible>(this.handle(req).await) }
        });
        // The local app is ours: a publish never cuts its connections.
        let cut = std::future::pending();
        connection::http(tcp, None, service, slot, &limits, cut).await;
    }
}

/// Drops the pool of each destination a published policy newly revokes: its idle pooled
/// connections close, and the next request to it opens a new one. Audit mode enforces
/// nothing, so it keeps those pools. A publish of another own ID (docs/spire.md) drops every
/// pool, in either mode: a pooled connection presents the SVID of its handshake, and the
/// destination must see the ID our requests are now decided as.
struct PoolKeeper {
    routes: Weak<Routes>,
    live: Weak<Live>,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// Whether revocations drop pools (enforce mode).
    enforce: bool,
    /// The own ID the pools' connections present.
    own: SpiffeId,
}

impl PoolKeeper {
    /// Until the live state or the routes are gone: on each publish, one classification
    /// per destination.
    async fn run(mut self, mut changes: PolicyChanges) {
        while changes.changed().await {
            let (Some(routes), Some(live)) = (self.routes.upgrade(), self.live.upgrade()) else {
                return;
            };
            let policy = live.policy();
            let new_id = policy.own_id() != &self.own;
            if new_id {
                self.own = policy.own_id().clone();
            }
            for route in routes.values() {
                let revoked = self.enforce && policy.classify(&route.spiffe_id).is_revoked();
                let was = route.revoked.swap(revoked, Ordering::Relaxed);
                if revoked && !was {
                    self.evict(route, "revoked");
                } else if new_id {
                    self.evict(route, "identity-changed");
                }
            }
        }
    }

    /// Replaces `route`'s pool with an empty one; requests in flight keep the old one to
    /// their end, then its connections close.
    fn evict(&self, route: &Route, reason: &'static str) {
        let fresh = MtlsUpstream::mtls(route.authority.clone(), route.tls.clone(), &self.limits);
        route.upstream.store(Arc::new(fresh));
        self.metrics.pool_evicted(reason);
        tracing::info!(destination_id = %route.spiffe_id, reason, "pool dropped");
    }
}

/// The host a request names: the absolute-form (or HTTP/2) URI's authority wins over `Host`
/// (RFC 9112 §3.2.2); the port is not part of the destination name.
fn request_host(req: &Request<Incoming>) -> Option<&str> {
    if let Some(host) = req.uri().host() {
        return Some(host);
    }
    let value = req.headers().get(http::header::HOST)?.to_str().ok()?;
    let host = value.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

//! The outbound side (PRODUCT.md §2, §4): plain HTTP in from the local app — as an HTTP proxy
//! (absolute-form `GET http://payments/v1/x`) or directly with `Host: payments` — then the
//! destination named by the request's host, the egress decision with our own ID as the
//! source, and mTLS out to a server that must prove the destination's SPIFFE ID.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::context::Context;
use super::exchange::Exchange;
use super::respond::{Body, ProxyError};
use super::serve::Slot;
use super::upstream::MtlsUpstream;
use super::{admission, connection, headers, serve};
use crate::config;
use crate::identity::SpiffeId;
use crate::telemetry::decision_log::Direction;
use crate::tls::{TlsError, TlsOptions, client_config};

/// Where requests for one destination name go.
struct Route {
    /// The SPIFFE ID the server must prove, and the egress decision's destination.
    spiffe_id: SpiffeId,
    /// Pooled mTLS connections to its `host:port`.
    upstream: MtlsUpstream,
}

/// The outbound listener's state.
pub struct Outbound {
    cx: Arc<Context>,
    /// Lower-case destination name → route.
    routes: HashMap<String, Route>,
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
    /// SVID of the live TLS material.
    ///
    /// # Errors
    /// [`OutboundError`] naming the destination whose client could not be built.
    pub fn new(
        cx: Arc<Context>,
        config: &config::Outbound,
        tls: TlsOptions,
    ) -> Result<Self, OutboundError> {
        let mut routes = HashMap::new();
        for (name, destination) in &config.destinations {
            let client_tls =
                client_config(cx.live.tls(), &destination.spiffe_id, tls).map_err(|source| {
                    OutboundError::Tls {
                        name: name.clone(),
                        source,
                    }
                })?;
            let authority = destination.address.to_string().parse().map_err(|source| {
                OutboundError::Address {
                    name: name.clone(),
                    source,
                }
            })?;
            let route = Route {
                spiffe_id: destination.spiffe_id.clone(),
                upstream: MtlsUpstream::mtls(authority, client_tls, &cx.limits),
            };
            routes.insert(config::destination_key(name).into_owned(), route);
        }
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
        let source = cx.own_id.as_str();
        let mut exchange =
            Exchange::start(cx, Direction::Outbound, &req, &policy, source, destination);
        let outcome = async {
            let route = route?;
            // 2–3. Validate and decide, as inbound does: egress rules, we are the source.
            admission::admit(&req, &policy, &cx.own_id, &route.spiffe_id, &mut exchange)?;

            // 4. Forward over mTLS; the route's client only completes a handshake with a
            // server proving `route.spiffe_id`.
            headers::strip_hop_by_hop(req.headers_mut());
            route.upstream.forward(req, &exchange).await
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
        connection::http(TokioIo::new(tcp), None, service, slot, &limits, cut).await;
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

//! The inbound side (PRODUCT.md §4, §5): mTLS in from a peer, the peer's SPIFFE ID read once
//! per connection, then per request: validate, decide against the policy snapshot of that
//! request, rewrite headers, forward in plain HTTP/1.1 to the local workload. A published
//! policy that revokes the peer also closes its open connection (PRODUCT.md §10).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use rustls::ServerConfig;
use rustls::pki_types::UnixTime;
use rustls::server::ServerConnection;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::context::Context;
use super::exchange::Exchange;
use super::headers::IdentityHeaders;
use super::respond::Body;
use super::serve::Slot;
use super::upstream::PlainUpstream;
use super::{admission, connection, headers, serve};
use crate::config::Mode;
use crate::identity::{Role, SpiffeId, Svid};
use crate::live::PolicyChanges;
use crate::telemetry::decision_log::Direction;
use crate::tls::handshake_failure_reason;

/// The inbound listener's state.
pub struct Inbound {
    cx: Arc<Context>,
    acceptor: TlsAcceptor,
    upstream: PlainUpstream,
}

impl Inbound {
    /// Inbound state for the workload at `upstream` (`host:port`), presenting `tls` (which
    /// requires and verifies client SVIDs).
    ///
    /// # Errors
    /// `upstream` is not a valid URI authority (cannot happen for a parsed config value).
    pub fn new(
        cx: Arc<Context>,
        tls: Arc<ServerConfig>,
        upstream: &crate::config::Authority,
    ) -> Result<Self, http::uri::InvalidUri> {
        Ok(Self {
            upstream: PlainUpstream::plain(upstream.to_string().parse()?, &cx.limits),
            acceptor: TlsAcceptor::from(tls),
            cx,
        })
    }

    /// One request from the authenticated `peer`, in phases; never fails, every error becomes
    /// its response (see [`super::respond`]).
    pub async fn handle(&self, mut req: Request<Incoming>, peer: &Peer) -> Response<Body> {
        // One snapshot per request: a reload applies to the next request, also on this
        // connection, and this request sees exactly one policy version.
        let cx = &*self.cx;
        let policy = cx.live.policy();
        let (source, destination) = (peer.id.as_str(), Some(cx.own_id.as_str()));
        let mut exchange =
            Exchange::start(cx, Direction::Inbound, &req, &policy, source, destination)
                .with_peer_addr(&peer.addr);
        let outcome = async {
            // 1–2. Validate and decide: ingress rules, the peer is the source and we are the
            // destination.
            admission::admit(&req, &policy, &peer.id, &cx.own_id, &mut exchange)?;

            // 3. Forward: hop-by-hop headers out first, then our identity headers replace any
            // the client sent (after, so a client's `Connection: x-spiffe-id` cannot remove
            // ours).
            let headers = req.headers_mut();
            headers::strip_hop_by_hop(headers);
            peer.headers.apply(headers);
            self.upstream.forward(req, &exchange).await
        }
        .await;
        exchange.finish(outcome)
    }
}

impl serve::Listener for Inbound {
    const DIRECTION: Direction = Direction::Inbound;

    fn context(&self) -> &Arc<Context> {
        &self.cx
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, remote: SocketAddr, slot: Slot) {
        // Before the handshake: a publish while it runs is a change this connection sees.
        let changes = self.cx.live.policy_changes();
        let Some((tls, peer)) = handshake(&self.cx, &self.acceptor, tcp, remote).await else {
            return;
        };
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        tracing::debug!(%remote, source_id = %peer, "connection accepted");
        // The peer is fixed for the connection: its identity headers are built once.
        let Ok(headers) = IdentityHeaders::new(self.cx.own_id.as_str(), peer.as_str()) else {
            tracing::warn!(%remote, "peer SPIFFE ID is not a header value; closing");
            return;
        };
        let peer = Arc::new(Peer {
            id: peer,
            headers,
            addr: remote.to_string().into_boxed_str(),
        });
        let limits = self.cx.limits;
        let cut = revoked(self.cx.clone(), changes, peer.clone());
        let service = service_fn(move |req| {
            let (this, peer) = (self.clone(), peer.clone());
            async move { Ok::<_, Infallible>(this.handle(req, &peer).await) }
        });
        connection::http(tls, alpn.as_deref(), service, slot, &limits, cut).await;
    }
}

/// The mTLS handshake of an accepted connection (within `limits.tls_handshake`) and its
/// peer's SPIFFE ID; `None` (counted in `tls_handshake_failures{reason}`) if it failed.
pub(super) async fn handshake(
    cx: &Context,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
) -> Option<(TlsStream<TcpStream>, SpiffeId)> {
    let tls = match tokio::time::timeout(cx.limits.tls_handshake, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            let reason = handshake_reason(&error);
            cx.metrics.handshake_failure(reason);
            tracing::debug!(%remote, reason, %error, "tls handshake failed");
            return None;
        }
        Err(_) => {
            cx.metrics.handshake_failure("timeout");
            tracing::debug!(%remote, "tls handshake timed out");
            return None;
        }
    };
    let Some(peer) = peer_id(cx, tls.get_ref().1) else {
        tracing::warn!(%remote, "verified peer without a readable SPIFFE ID; closing");
        return None;
    };
    Some((tls, peer))
}

/// Resolves (and counts the cut) once a published policy revokes `peer`; never otherwise,
/// nor in audit mode, which enforces nothing. "Containment and revocation cut open
/// connections … identities outside the contained scope see no closed connection"
/// (PRODUCT.md §10): one classification per publish, nothing per request.
async fn revoked(cx: Arc<Context>, mut changes: PolicyChanges, peer: Arc<Peer>) {
    if cx.mode == Mode::Enforce {
        while changes.changed().await {
            if cx.live.policy().classify(&peer.id).is_revoked() {
                cx.metrics.connection_cut(Direction::Inbound, "revoked");
                return;
            }
        }
    }
    std::future::pending().await
}

/// The authenticated peer of one connection, and the identity headers it gets.
#[derive(Debug)]
pub struct Peer {
    /// From its X509-SVID, verified by our client verifier.
    pub id: SpiffeId,
    /// `x-spiffe-id` and XFCC for this peer, built once per connection.
    pub headers: IdentityHeaders,
    /// The connection's remote `IP:port`, for the decision log.
    pub addr: Box<str>,
}

/// The bounded reason of a failed handshake (`tls_handshake_failures{reason}`).
fn handshake_reason(error: &std::io::Error) -> &'static str {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls) => handshake_failure_reason(rustls),
        None => "io",
    }
}

/// The SPIFFE ID of a verified peer's leaf (our verifier already applied every rule): from
/// the verifier's record of the chain it just checked, else read from the leaf.
fn peer_id(cx: &Context, session: &ServerConnection) -> Option<SpiffeId> {
    let (leaf, intermediates) = session.peer_certificates()?.split_first()?;
    let material = cx.live.tls().current();
    let verified = material.client_verifier().verified_chains();
    if let Some(id) = verified.get(leaf, intermediates, UnixTime::now()) {
        return Some(id);
    }
    Svid::from_der(leaf, Role::Client, SystemTime::now())
        .ok()
        .map(|svid| svid.id)
}

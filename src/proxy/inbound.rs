//! The inbound side (docs/security.md, §5): mTLS in from a peer, the peer's SPIFFE ID read once
//! per connection, then per request: validate, decide against the policy snapshot of that
//! request (the slice and the own SPIFFE ID it was cut for: after a rotation to another ID,
//! docs/spire.md, the next request on any connection is decided, and its XFCC `By=` written,
//! as the new ID), rewrite headers, forward in plain HTTP/1.1 to the local workload. A published
//! policy that revokes the peer also closes its open connection (docs/runbook.md).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::context::Context;
use super::exchange::Exchange;
use super::handshake::{self, Accepted};
use super::headers::IdentityHeaders;
use super::respond::{Body, ProxyError};
use super::serve::Slot;
use super::upstream::PlainUpstream;
use super::{admission, connection, headers, serve};
use crate::config::Mode;
use crate::identity::SpiffeId;
use crate::live::PolicyChanges;
use crate::telemetry::decision_log::Direction;

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
        let own = policy.own_id();
        let (source, destination) = (peer.id.as_str(), Some(own.as_str()));
        let mut exchange =
            Exchange::start(cx, Direction::Inbound, &req, &policy, source, destination)
                .with_peer_addr(&peer.addr);
        let outcome = async {
            // 1–2. Validate and decide: ingress rules, the peer is the source and we are the
            // destination.
            let admitted = admission::admit(&req, &policy, &peer.id, own, &mut exchange)?;

            // 3. Forward what was admitted: hop-by-hop headers out first, then our identity
            // headers replace any the client sent (after, so a client's
            // `Connection: x-spiffe-id` cannot remove ours).
            let headers = req.headers_mut();
            headers::strip_hop_by_hop(headers);
            if own == &peer.headers_for {
                peer.headers.apply(headers);
            } else if headers::set_identity_headers(headers, own.as_str(), peer.id.as_str())
                .is_err()
            {
                // Impossible for validated SPIFFE IDs; fail closed all the same.
                return Err(ProxyError::Denied);
            }
            self.upstream.forward(req, admitted).await
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
        let accepted = handshake::accept(&self.cx, &self.acceptor, tcp, remote).await;
        let Some(Accepted { tls, peer, changes }) = accepted else {
            return;
        };
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        tracing::debug!(%remote, source_id = %peer, "connection accepted");
        // The peer is fixed for the connection: its identity headers are built once, for the
        // own ID of now (a request after a rotation to another ID builds its own).
        let own = self.cx.live.policy().own_id().clone();
        let Ok(headers) = IdentityHeaders::new(own.as_str(), peer.as_str()) else {
            tracing::warn!(%remote, "peer SPIFFE ID is not a header value; closing");
            return;
        };
        let peer = Arc::new(Peer {
            id: peer,
            headers,
            headers_for: own,
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

/// Resolves (and counts the cut) once a published policy revokes `peer`, or a probe
/// containment contains it (docs/probes.md); never otherwise,
/// nor in audit mode, which enforces nothing. "Containment and revocation cut open
/// connections … identities outside the contained scope see no closed connection"
/// (docs/runbook.md): one classification per publish, nothing per request.
async fn revoked(cx: Arc<Context>, mut changes: PolicyChanges, peer: Arc<Peer>) {
    if cx.mode == Mode::Enforce {
        while changes.changed().await {
            if cx.live.policy().classify(&peer.id).is_revoked() {
                cx.metrics.connection_cut(Direction::Inbound, "revoked");
                return;
            }
            // docs/probes.md: a probe containment wakes the connections as a publish does.
            if cx.probes.is_contained(peer.id.as_str()) {
                cx.metrics
                    .connection_cut(Direction::Inbound, "probe-contained");
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
    /// The own ID `headers` name in XFCC `By=`.
    pub headers_for: SpiffeId,
    /// The connection's remote `IP:port`, for the decision log.
    pub addr: Box<str>,
}

//! The mTLS accept shared by the inbound listeners, HTTP ([`super::inbound`]) and TCP
//! ([`super::tcp`]): the handshake within `limits.tls_handshake`, its failure counted by
//! bounded reason, and the verified peer's SPIFFE ID read once per connection.

use std::net::SocketAddr;
use std::time::SystemTime;

use rustls::pki_types::UnixTime;
use rustls::server::ServerConnection;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::context::Context;
use crate::identity::{Role, SpiffeId, Svid};
use crate::live::PolicyChanges;
use crate::tls::handshake_failure_reason;

/// A peer's connection once its handshake completed.
pub(super) struct Accepted {
    /// The mTLS stream.
    pub(super) tls: TlsStream<TcpStream>,
    /// The peer's SPIFFE ID, from its verified X509-SVID.
    pub(super) peer: SpiffeId,
    /// Policy publishes from before the handshake on: one while it ran is a change this
    /// connection sees.
    pub(super) changes: PolicyChanges,
}

/// The mTLS handshake of an accepted connection (within `limits.tls_handshake`) and its
/// peer's SPIFFE ID; `None` (counted in `tls_handshake_failures{reason}`) if it failed.
pub(super) async fn accept(
    cx: &Context,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
) -> Option<Accepted> {
    let changes = cx.live.policy_changes();
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
    Some(Accepted { tls, peer, changes })
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

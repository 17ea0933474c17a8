//! L4 (TCP) mode (docs/l4.md): listeners for workloads that do not speak HTTP —
//! databases first. They run on the same accept loop as HTTP ([`super::serve`]: connection
//! limit, event loops, drain); what differs is that each connection is decided once, with no
//! method and no path, and then carried as bytes ([`super::tunnel`]).
//!
//! - [`TcpInbound`]: mTLS in (the same client verifier as HTTP inbound), the peer is the
//!   source and this sidecar the destination; let through, it dials the local workload.
//! - [`TcpOutbound`]: one per `protocol: tcp` destination, listening on its `local:` port;
//!   this sidecar is the source; let through, it dials the destination with mTLS and the
//!   server must prove the destination's `spiffe_id`.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::context::Context;
use super::handshake::{self, Accepted};
use super::serve::{self, Slot};
use super::tunnel::{self, Close, Parties};
use crate::config::{Authority, TcpDestination};
use crate::identity::SpiffeId;
use crate::telemetry::decision_log::Direction;

/// An inbound TCP listener's state.
pub struct TcpInbound {
    cx: Arc<Context>,
    acceptor: TlsAcceptor,
    upstream: Authority,
}

impl TcpInbound {
    /// Inbound TCP to the workload at `upstream`, presenting `tls` (which requires and
    /// verifies client SVIDs; from [`crate::tls::tcp_server_config`]).
    pub fn new(cx: Arc<Context>, tls: Arc<rustls::ServerConfig>, upstream: Authority) -> Self {
        Self {
            cx,
            acceptor: TlsAcceptor::from(tls),
            upstream,
        }
    }
}

impl serve::Listener for TcpInbound {
    const DIRECTION: Direction = Direction::Inbound;

    fn context(&self) -> &Arc<Context> {
        &self.cx
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, remote: SocketAddr, slot: Slot) {
        let accepted = handshake::accept(&self.cx, &self.acceptor, tcp, remote).await;
        let Some(Accepted { tls, peer, changes }) = accepted else {
            return;
        };
        tracing::debug!(%remote, source_id = %peer, "tcp connection accepted");
        let parties = Parties {
            cx: &self.cx,
            direction: Direction::Inbound,
            peer: &peer,
        };
        let dial = connect(&self.cx, &self.upstream);
        tunnel::run(parties, changes, tls, dial, slot).await;
    }
}

/// An outbound TCP listener's state: one destination.
pub struct TcpOutbound {
    cx: Arc<Context>,
    connector: TlsConnector,
    address: Authority,
    spiffe_id: SpiffeId,
}

impl TcpOutbound {
    /// Outbound TCP to `destination`; `tls` (from [`crate::tls::tcp_client_config`]) only
    /// completes a handshake with a server proving `destination.spiffe_id`.
    pub fn new(
        cx: Arc<Context>,
        tls: Arc<rustls::ClientConfig>,
        destination: &TcpDestination,
    ) -> Self {
        Self {
            cx,
            connector: TlsConnector::from(tls),
            address: destination.address.clone(),
            spiffe_id: destination.spiffe_id.clone(),
        }
    }

    /// The mTLS connection to the destination, within the connect and handshake timeouts.
    async fn dial(&self) -> Result<TlsStream<TcpStream>, Close> {
        let tcp = connect(&self.cx, &self.address).await?;
        // The verifier checks the SPIFFE ID, not this name; it only has to be well-formed.
        let name = ServerName::try_from(self.address.host().to_owned())
            .map_err(|_| Close::UpstreamConnect)?;
        let handshake = self.connector.connect(name, tcp);
        match tokio::time::timeout(self.cx.limits.tls_handshake, handshake).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(error)) => {
                tracing::debug!(destination_id = %self.spiffe_id, %error, "tcp destination handshake failed");
                Err(Close::UpstreamTls)
            }
            Err(_) => Err(Close::UpstreamTls),
        }
    }
}

impl serve::Listener for TcpOutbound {
    const DIRECTION: Direction = Direction::Outbound;

    fn context(&self) -> &Arc<Context> {
        &self.cx
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, remote: SocketAddr, slot: Slot) {
        tracing::debug!(%remote, destination_id = %self.spiffe_id, "tcp connection accepted");
        let changes = self.cx.live.policy_changes();
        let parties = Parties {
            cx: &self.cx,
            direction: Direction::Outbound,
            peer: &self.spiffe_id,
        };
        tunnel::run(parties, changes, tcp, self.dial(), slot).await;
    }
}

/// A TCP connection to `to`, within `limits.upstream_connect_timeout`.
async fn connect(cx: &Context, to: &Authority) -> Result<TcpStream, Close> {
    let connect = TcpStream::connect((to.host(), to.port()));
    match tokio::time::timeout(cx.limits.upstream_connect, connect).await {
        Ok(Ok(tcp)) => {
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        }
        Ok(Err(error)) => {
            tracing::debug!(upstream = %to, %error, "tcp upstream connect failed");
            Err(Close::UpstreamConnect)
        }
        Err(_) => Err(Close::UpstreamConnect),
    }
}

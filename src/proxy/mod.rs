//! The data plane (docs/configuration.md, §4, §6): the inbound side (mTLS in → workload) and the
//! outbound side (local app → mTLS out), each deciding every request against the policy
//! snapshot of that request.
//!
//! - [`serve`]: the accept loop any listener reuses: connection limit, event loops, drain.
//! - [`connection`]: HTTP/1.1 + HTTP/2 serving of one connection and its graceful close
//!   (drain, idle, cut); `idle`: idle tracking; `fair`: reads charged to the task's budget,
//!   so that a flooding peer yields its event loop to the other connections.
//! - [`inbound`] / [`outbound`]: the two request paths, as phased async functions; the
//!   checks both make (validate, decide) are `admission`, the record of each `exchange`.
//!   After a policy publish, inbound cuts a now-revoked peer's connection and outbound drops
//!   a now-revoked destination's pool (docs/runbook.md).
//! - [`headers`]: PURE header rules (framing, hop-by-hop, identity headers, forwarded target).
//! - [`upstream`]: where each side forwards (pooled clients, timeouts); [`respond`]: error →
//!   status.
//! - `handshake`: the mTLS accept both inbound listeners (HTTP and TCP) share: the
//!   handshake within its timeout, the peer's SPIFFE ID.
//! - [`tcp`]: L4 listeners (docs/l4.md), inbound and one per TCP destination, on the same
//!   accept loop; [`tunnel`]: one TCP connection's decision, copy, re-decision on every
//!   publish, and its open/close log lines.

mod admission;
pub mod connection;
pub mod context;
mod exchange;
mod fair;
mod handshake;
pub mod headers;
mod idle;
pub mod inbound;
pub mod outbound;
pub mod request_id;
pub mod respond;
pub mod serve;
pub mod tcp;
pub mod tunnel;
pub mod upstream;

pub use context::Context;
pub use inbound::Inbound;
pub use outbound::{Outbound, OutboundError};
pub use respond::{Body, ProxyError};
pub use tcp::{TcpInbound, TcpOutbound};

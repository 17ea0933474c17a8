//! The data plane (PRODUCT.md §2, §4, §6): the inbound side (mTLS in → workload) and the
//! outbound side (local app → mTLS out), each deciding every request against the policy
//! snapshot of that request.
//!
//! - [`serve`]: accept loop, connection tasks, HTTP/1.1 + HTTP/2 serving, drain.
//! - [`inbound`] / [`outbound`]: the two request paths, as phased async functions.
//! - [`headers`]: PURE header rules (framing, hop-by-hop, identity headers).
//! - [`upstream`]: pooled clients and their limits; [`respond`]: error → status.

pub mod context;
mod exchange;
pub mod headers;
pub mod inbound;
pub mod outbound;
pub mod request_id;
pub mod respond;
pub mod serve;
pub mod upstream;

pub use context::Context;
pub use inbound::Inbound;
pub use outbound::{Outbound, OutboundError};
pub use respond::{Body, ProxyError};

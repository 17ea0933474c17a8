//! Workload identity: SPIFFE IDs and X509-SVID leaf rules (PRODUCT.md §4).
//! PURE: std, thiserror and x509-parser only — no I/O, no async, no TLS stack.
#![warn(missing_docs)]

pub mod spiffe_id;
pub mod svid;

pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
pub use svid::{Role, Svid, SvidError};

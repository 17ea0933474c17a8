//! Workload identity: SPIFFE IDs, X509-SVID leaf rules and the signing-certificate rules of
//! an SVID's chain (docs/security.md, X509-SVID §4).
//! PURE: std, thiserror and x509-parser only — no I/O, no async, no TLS stack.
#![warn(missing_docs)]

pub mod spiffe_id;
pub mod svid;

pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
pub use svid::{Role, Svid, SvidError, check_signers, check_signing_certificate};

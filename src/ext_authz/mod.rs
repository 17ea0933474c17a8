//! Envoy's `ext_authz` (docs/envoy.md): the `envoy.service.auth.v3.Authorization/Check`
//! gRPC service, for teams whose traffic Envoy already carries. Envoy terminates the mTLS,
//! asks segward, and enforces the answer; segward decides on the same policy snapshot, with
//! the same reload, expiry, containment, decision log (direction `ext_authz`) and metrics as
//! its own data plane.
//!
//! - [`check`]: the mapping of one `CheckRequest` — source = `attributes.source.principal`
//!   (a valid SPIFFE ID, else denied), destination = this sidecar's own identity, method and
//!   path from `attributes.request.http` (a path not already in normal form is denied: the
//!   decision must be on the path the workload sees) — to a verdict and its `CheckResponse`:
//!   OK with the identity headers to set, or 403 with `x-request-id` and the data plane's
//!   body. A `CheckRequest` without `http` is Envoy's network filter: one decision per
//!   connection, as a TCP listener's.
//! - [`server`]: the listener (loopback TCP or a Unix socket), plain-text HTTP/2 served by
//!   our own hyper with the generated tonic service; drained on shutdown.
//! - [`pb`]: generated from the vendored protos under `proto/` (`scripts/gen-ext-authz.sh`).

pub mod check;
/// Generated from `proto/envoy/service/auth/v3/external_auth.proto` and its imports:
/// messages, client and server of `envoy.service.auth.v3.Authorization`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links
)]
pub mod pb;
pub mod server;

pub use check::Checker;
pub use server::{BoundAt, ExtAuthzServer, StartError};

/// The generated `envoy.service.auth.v3` package: `CheckRequest`, `CheckResponse`, the
/// `Authorization` service's client and server.
pub use pb::envoy::service::auth::v3 as auth;

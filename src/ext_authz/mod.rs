//! Envoy's `ext_authz` (docs/envoy.md): the `envoy.service.auth.v3.Authorization/Check`
//! gRPC service.
//!
//! - [`pb`]: generated from the vendored protos under `proto/` (`scripts/gen-ext-authz.sh`).

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

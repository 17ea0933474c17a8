//! segward: a sidecar authorization proxy that decides every request by SPIFFE identity
//! and a fleet-wide segment policy (see README.md and PRODUCT.md).
//!
//! Crate map (dependencies point down only):
//! - [`cli`]: clap commands `policy check|explain|reach|diff|report|contain|release`,
//!   `certs init|issue|inspect`, exit codes.
//! - [`demo`]: `segward demo`, the scenarios on freshly minted identities.
//! - [`app`]: the composition root of `segward run`: load (fail closed), bind, serve, drain.
//! - [`proxy`]: the data plane — inbound (mTLS in) and outbound (mTLS out) request paths
//!   (validate → decide → forward, each phase's output the next one's input), and L4 (TCP)
//!   tunnels decided once per connection and again on every policy publish.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/policy`, `/reach` on the admin listener.
//! - [`reload`]: the first load and every reload by the same steps (file watching, SIGHUP,
//!   polling) keeping `live` current; `ReloadError` and the reload status.
//! - [`live`]: the policy snapshot read once per request and the TLS material, swapped by
//!   (re)loads, and the change signal a publish sends to open connections.
//! - [`telemetry`]: the decision log and process log set-up.
//! - [`workers`]: the event loops of `limits.worker_threads` (one thread and runtime each).
//! - [`shutdown`]: the drain signal shared by listeners.
//! - [`config`]: sidecar YAML (`RawConfig`) → `Config`: resolved paths, addresses, SPIFFE IDs,
//!   listeners (HTTP or TCP) and TCP destinations, limits (the event-loop count included).
//! - [`tls`]: rustls glue — PEM credentials, SPIFFE verifiers, server and client configs.
//! - [`certs`]: rcgen PKI — throwaway CA, X509-SVID leaves, inspection.
//! - [`policy`]: PURE. YAML policy → `CompiledPolicy` → `decide` (a request) and
//!   `decide_connection` (a TCP connection); lints for `policy check`; `reach` (blast radius,
//!   exact) and `diff`.
//! - [`path`]: PURE. The one request-path normalization, shared by policy and proxy.
//! - [`identity`]: PURE. `SpiffeId` and X509-SVID leaf rules.

pub mod admin;
pub mod app;
pub mod certs;
pub mod cli;
pub mod config;
pub mod demo;
pub mod identity;
pub mod live;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod workers;

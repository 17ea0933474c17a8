//! segward: a sidecar authorization proxy that decides every request by SPIFFE identity
//! and a fleet-wide segment policy (README.md, docs/ and ARCHITECTURE.md).
//!
//! Crate map (dependencies point down only):
//! - [`cli`]: clap commands `policy check|explain|reach|diff|report|contain|release`,
//!   `certs init|issue|inspect`, exit codes.
//! - [`demo`]: `segward demo`, the scenarios on freshly minted identities.
//! - [`containment`]: incident containment as a library operation — plan, write and release
//!   a containment file in the policy folder; the CLI and the demo only display it.
//! - [`app`]: the composition root of `segward run`: load (fail closed), bind, serve, drain.
//! - [`proxy`]: the data plane — inbound (mTLS in) and outbound (mTLS out) request paths
//!   (validate → decide → forward, each phase's output the next one's input), and L4 (TCP)
//!   tunnels decided once per connection and again on every policy publish.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/policy`, `/reach` on the admin listener.
//! - [`reload`]: the first load and every reload by the same steps, keeping `live` current;
//!   where credentials come from (`CredentialSource`: files or the Workload API) and every
//!   loop that reloads (file watch, SIGHUP, polling, the Workload API stream, policy expiry);
//!   `ReloadError` and the reload status.
//! - [`live`]: the policy snapshot read once per request and the TLS material, swapped by
//!   (re)loads, and the change signal a publish sends to open connections.
//! - [`telemetry`]: the decision log and process log set-up.
//! - [`workers`]: the event loops of `limits.worker_threads` (one thread and runtime each).
//! - [`shutdown`]: the drain signal shared by listeners.
//! - [`signing`]: signed policy — the canonical digest of a policy's files, Ed25519 keys
//!   (PKCS#8 / SPKI PEM), the detached signature file, its check under `policy_verify`.
//! - [`atomic_file`]: the one atomic, durable file write (temp, fsync, rename, fsync folder).
//! - [`config`]: sidecar YAML (`RawConfig`) → `Config`: resolved paths, addresses, SPIFFE IDs,
//!   listeners (HTTP or TCP) and TCP destinations, limits (the event-loop count included).
//! - [`workload_api`]: the SPIFFE Workload API client — `FetchX509SVID` from the SPIRE agent,
//!   each response checked into `Credentials`, reconnect with backoff.
//! - [`tls`]: rustls glue — PEM credentials, SPIFFE verifiers, server and client configs.
//! - [`certs`]: rcgen PKI — throwaway CA, X509-SVID leaves, inspection.
//! - [`policy`]: PURE. The language (YAML policy → `CompiledPolicy`) and the decision:
//!   `decide` (a request), `decide_connection` (a TCP connection), `explain`. Its child
//!   `policy::analysis`, never on the request path: `reach` (blast radius, exact), `diff`,
//!   the lints of `policy check`, the report's data.
//! - [`evidence`]: least privilege from evidence — decision logs and observations read into
//!   distinct observations, `replay` of them under a policy (docs/least-privilege.md).
//! - [`duration`]: PURE. The one grammar of typed durations (`24h`, `500ms`), per caller's units.
//! - [`path`]: PURE. The one request-path normalization, shared by policy and proxy.
//! - [`identity`]: PURE. `SpiffeId` and X509-SVID leaf rules.

pub mod admin;
pub mod app;
pub mod atomic_file;
pub mod certs;
pub mod cli;
pub mod config;
pub mod containment;
pub mod demo;
pub mod detect;
pub mod duration;
pub mod evidence;
pub mod ext_authz;
pub mod identity;
pub mod live;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod shutdown;
pub mod signing;
pub mod telemetry;
pub mod tls;
pub mod workers;
pub mod workload_api;

//! segward under attack (issue 18, parts 2 and 3): adversarial HTTP/2 peers and connection
//! floods against the real `segward run` binary — an inbound sidecar with mTLS, certificates
//! minted with rcgen, a real backend behind it, all on 127.0.0.1. Each scenario measures the
//! process (CPU from `/proc/<pid>/stat`, VmRSS and VmHWM from `/proc/<pid>/status`) and a
//! normal client's latency on another connection while the attack runs, asserts bounds on
//! them and on what the backend received, and prints its figures on stderr as
//! `abuse-figures: …` lines (`cargo test --test abuse -- --nocapture` shows them).
//!
//! The scenarios measure CPU and memory, so they never overlap: each holds
//! [`harness::SERIAL`] for its whole run.
#![allow(clippy::unwrap_used)]

// The integration tests' fixtures, shared as source; this binary uses only some of them.
#[path = "../it/support/mod.rs"]
#[allow(dead_code)]
mod support;

mod baseline;
mod conn_floods;
mod frames;
mod h2_floods;
mod h2_flow;
mod harness;

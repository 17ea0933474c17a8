//! `Live`: the state the data plane reads and only a (re)load writes (PRODUCT.md §5, §6).
//! The policy sits in an `ArcSwap`: a request takes one snapshot at its start, so it sees
//! exactly one policy version, and a swap applies to the next request — also on kept-alive
//! connections. TLS material is in [`LiveTls`], read once per handshake. [`ReloadStatus`]
//! keeps what the last reloads did, for the log now and the admin `/policy` endpoint.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::policy::CompiledPolicy;
use crate::tls::LiveTls;

/// The current policy and TLS material, shared by every listener of one sidecar.
#[derive(Debug)]
pub struct Live {
    policy: ArcSwap<CompiledPolicy>,
    tls: LiveTls,
    status: Mutex<ReloadStatus>,
}

/// What the (re)loads did so far; read by operators, never by the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// When the policy in force was loaded.
    pub policy_loaded_at: SystemTime,
    /// The last policy reload error (every problem at file:line:col), cleared by a success.
    pub policy_error: Option<String>,
    /// The last certificate/key/bundle reload error, cleared by a success.
    pub tls_error: Option<String>,
    /// Successful reloads that changed something (policy or TLS material).
    pub reloads_ok: u64,
    /// Reloads refused; the last good state stayed in force.
    pub reloads_failed: u64,
}

impl Live {
    /// Live state starting with `policy` (compiled, its `tests:` passed) and `tls`.
    pub fn new(policy: CompiledPolicy, tls: LiveTls) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
            tls,
            status: Mutex::new(ReloadStatus {
                policy_loaded_at: SystemTime::now(),
                policy_error: None,
                tls_error: None,
                reloads_ok: 0,
                reloads_failed: 0,
            }),
        }
    }

    /// The policy snapshot for one request: take it once, at the top of the handler.
    pub fn policy(&self) -> Arc<CompiledPolicy> {
        self.policy.load_full()
    }

    /// Makes `policy` the one the next request sees; returns the one it replaces (drop it off
    /// the request path: a large policy takes milliseconds to free).
    pub fn publish_policy(&self, policy: CompiledPolicy) -> Arc<CompiledPolicy> {
        let old = self.policy.swap(Arc::new(policy));
        self.with_status(|s| s.policy_loaded_at = SystemTime::now());
        old
    }

    /// The TLS material the listeners' configs read per handshake.
    pub fn tls(&self) -> &LiveTls {
        &self.tls
    }

    /// A copy of the reload status.
    pub fn status(&self) -> ReloadStatus {
        self.lock().clone()
    }

    /// Updates the reload status (only the reload path calls this).
    pub fn with_status(&self, update: impl FnOnce(&mut ReloadStatus)) {
        update(&mut self.lock());
    }

    fn lock(&self) -> MutexGuard<'_, ReloadStatus> {
        // The status is plain data: a panic elsewhere cannot leave it inconsistent.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

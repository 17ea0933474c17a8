//! [`ReloadStatus`]: what the (re)loads did so far — when the policy in force was loaded, the
//! last error of each part, how many reloads applied or were refused. Written only by the
//! reloader; read by the admin `/policy` endpoint and by operators' tools, never by the
//! request path (docs/operations.md).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::error::{Part, ReloadError};

/// What the (re)loads did so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// When the policy in force was loaded.
    pub policy_loaded_at: SystemTime,
    /// The last policy reload error (every problem at file:line:col), cleared by a success.
    pub policy_error: Option<ReloadError>,
    /// The last certificate/key/bundle reload error, cleared by a success.
    pub tls_error: Option<ReloadError>,
    /// Successful reloads that changed something (policy or TLS material).
    pub reloads_ok: u64,
    /// Reloads refused; the last good state stayed in force.
    pub reloads_failed: u64,
}

impl ReloadStatus {
    /// The last error of `part`.
    pub fn error(&self, part: Part) -> Option<&ReloadError> {
        match part {
            Part::Policy => self.policy_error.as_ref(),
            Part::Tls => self.tls_error.as_ref(),
        }
    }

    fn error_mut(&mut self, part: Part) -> &mut Option<ReloadError> {
        match part {
            Part::Policy => &mut self.policy_error,
            Part::Tls => &mut self.tls_error,
        }
    }
}

/// The status shared by the reloader (its only writer) and its readers.
#[derive(Debug)]
pub struct StatusBoard(Mutex<ReloadStatus>);

impl StatusBoard {
    /// A status for state loaded just now, with no reload yet.
    pub fn new() -> Self {
        Self(Mutex::new(ReloadStatus {
            policy_loaded_at: SystemTime::now(),
            policy_error: None,
            tls_error: None,
            reloads_ok: 0,
            reloads_failed: 0,
        }))
    }

    /// A copy of the status.
    pub fn read(&self) -> ReloadStatus {
        self.lock().clone()
    }

    /// Records that `part` was published (`Ok`) or refused; false for a rejection equal to
    /// the last one, which is not news (a file that stays broken would otherwise count once
    /// per re-check).
    pub(super) fn note(&self, part: Part, outcome: Result<(), &ReloadError>) -> bool {
        let mut status = self.lock();
        match outcome {
            Ok(()) => {
                if part == Part::Policy {
                    status.policy_loaded_at = SystemTime::now();
                }
                *status.error_mut(part) = None;
                status.reloads_ok += 1;
                true
            }
            Err(error) if status.error(part) == Some(error) => false,
            Err(error) => {
                *status.error_mut(part) = Some(error.clone());
                status.reloads_failed += 1;
                true
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, ReloadStatus> {
        // The status is plain data: a panic elsewhere cannot leave it inconsistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for StatusBoard {
    fn default() -> Self {
        Self::new()
    }
}

//! What triggers [`Reloader::reload`] (docs/operations.md): file-system events on the watched
//! folders (debounced, so an editor's write-then-rename or a Kubernetes `..data` swap is one
//! reload), `SIGHUP` (a forced reload), and a periodic re-check that compares content hashes,
//! for file systems where events get lost. No event is trusted to name the right file: every
//! trigger re-reads everything and lets the hashes decide.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::Reloader;
use crate::config::ReloadTiming;
use crate::shutdown::Shutdown;

type FolderWatcher = Debouncer<notify_debouncer_full::notify::RecommendedWatcher, RecommendedCache>;

/// The triggers of one sidecar's reloads. Installed before the first read of the sources
/// ([`Triggers::install`]), so that a change landing while the first state is built is not
/// lost: its event waits (as one pending reload) until [`Triggers::spawn`] runs the loop
/// (both called by [`super::Loops`]).
pub(super) struct Triggers {
    changed: Arc<Notify>,
    watcher: Option<FolderWatcher>,
    hangup: Option<Signal>,
    timing: ReloadTiming,
}

impl Triggers {
    /// Starts watching `folders` (if `timing.watch_files`) and listening for SIGHUP. Call it
    /// from within the runtime: the SIGHUP handler is installed before this returns, so a
    /// SIGHUP sent right after start-up is neither lost nor kills the process (SIGHUP's
    /// default action).
    pub(super) fn install(folders: &[PathBuf], timing: ReloadTiming) -> Self {
        let changed = Arc::new(Notify::new());
        let watcher = if timing.watch_files {
            watch(folders, timing.debounce, changed.clone())
        } else {
            None
        };
        let hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; file events and polling remain");
                None
            }
        };
        Self {
            changed,
            watcher,
            hangup,
            timing,
        }
    }

    /// Calls `reloader.reload` on every trigger until `shutdown`; an event that came before
    /// this call is the first trigger.
    pub(super) fn spawn(self, reloader: Arc<Reloader>, mut shutdown: Shutdown) -> JoinHandle<()> {
        let Self {
            changed,
            watcher,
            mut hangup,
            timing,
        } = self;
        tokio::spawn(async move {
            // The watcher lives as long as this task.
            let _watcher = watcher;
            let mut poll = tokio::time::interval(timing.poll);
            poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
            poll.tick().await;
            loop {
                let force = tokio::select! {
                    () = changed.notified() => false,
                    Some(()) = recv(&mut hangup) => {
                        tracing::info!("SIGHUP: reloading policy, certificate and bundles");
                        true
                    }
                    _ = poll.tick() => false,
                    () = shutdown.wait() => break,
                };
                reloader.reload(force).await;
            }
        })
    }
}

/// The next SIGHUP, or never if none can be received.
async fn recv(hangup: &mut Option<Signal>) -> Option<()> {
    match hangup {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Watches each folder (not recursively); a folder that cannot be watched is logged and left
/// to the periodic re-check.
fn watch(folders: &[PathBuf], debounce: Duration, changed: Arc<Notify>) -> Option<FolderWatcher> {
    let handler = move |result: DebounceEventResult| {
        if let Err(errors) = result {
            tracing::debug!(?errors, "file watch errors; re-checking anyway");
        }
        changed.notify_one();
    };
    let mut watcher = match new_debouncer(debounce, None, handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch files; relying on the periodic re-check");
            return None;
        }
    };
    for folder in folders {
        if let Err(error) = watcher.watch(folder, RecursiveMode::NonRecursive) {
            tracing::warn!(folder = %folder.display(), %error, "cannot watch folder");
        }
    }
    Some(watcher)
}

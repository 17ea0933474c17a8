//! The sidecar's event loops (`limits.worker_threads`, docs/performance.md): N single-threaded
//! loops, each running its own copy of the proxy state with its own upstream pools — the
//! Envoy and HAProxy worker model, without tokio's work stealing (which on two cores cost as
//! much CPU per request as it gained in throughput).
//!
//! Loop 0 is the thread that started the sidecar; it also runs the admin listener, the
//! reloader and every listener's accept loop. Loops 1..N are threads of their own
//! (`segward-loop-N`). A listener accepts on loop 0 and hands each connection to the loop
//! holding the fewest of that listener's open connections (Envoy's "exact balance"): the
//! few long-lived HTTP/2 connections between two sidecars spread over the loops, where the
//! kernel's `SO_REUSEPORT` hash could pile them onto one. The hand-over costs two `epoll_ctl`
//! calls per connection, never anything per request.
//!
//! Everything the loops share is already thread-safe: the live policy and TLS material
//! (`arc-swap`), metrics (atomics), the decision-log sink, the shutdown signal (tokio's sync
//! primitives work across runtimes).

use std::io;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

use crate::shutdown::{self, Trigger};

/// Why the event loops could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    /// The OS refused a thread or an event loop.
    #[error("starting event loop {index}: {source}")]
    Spawn {
        /// Which loop.
        index: usize,
        /// What the OS said.
        source: io::Error,
    },
}

/// The running loops. Dropping it stops loops 1..N (their unfinished tasks are dropped).
#[derive(Debug)]
pub struct Workers {
    /// Loops 1..N, in order.
    handles: Vec<Handle>,
    stop: Trigger,
    done: Vec<oneshot::Receiver<()>>,
}

impl Workers {
    /// Starts `loops - 1` threads, each with its own single-threaded tokio runtime; the
    /// caller's runtime is loop 0.
    ///
    /// # Errors
    /// [`WorkersError::Spawn`] if a runtime or thread could not be created (those already
    /// started stop again).
    pub fn start(loops: usize) -> Result<Workers, WorkersError> {
        let (stop, stopped) = shutdown::channel();
        let mut workers = Workers {
            handles: Vec::with_capacity(loops.saturating_sub(1)),
            stop,
            done: Vec::with_capacity(loops.saturating_sub(1)),
        };
        for index in 1..loops {
            let spawn = |source| WorkersError::Spawn { index, source };
            let runtime = Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(spawn)?;
            let handle = runtime.handle().clone();
            let (done, finished) = oneshot::channel();
            let mut stopped = stopped.clone();
            std::thread::Builder::new()
                .name(format!("segward-loop-{index}"))
                .spawn(move || {
                    runtime.block_on(stopped.wait());
                    // Drops whatever is left on this loop (connections past the drain).
                    drop(runtime);
                    let _ = done.send(());
                })
                .map_err(spawn)?;
            workers.handles.push(handle);
            workers.done.push(finished);
        }
        Ok(workers)
    }

    /// The loops, in order: `None` for loop 0 (the caller's runtime), then a handle to each
    /// loop's runtime.
    pub fn loops(&self) -> impl Iterator<Item = Option<&Handle>> {
        std::iter::once(None).chain(self.handles.iter().map(Some))
    }

    /// How many loops run, loop 0 included.
    pub fn len(&self) -> usize {
        self.handles.len() + 1
    }

    /// Always false: loop 0 always runs.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Stops loops 1..N and waits until each has dropped its runtime. Call it after the
    /// listeners have drained.
    pub async fn stop(self) {
        self.stop.fire();
        for finished in self.done {
            // An error means the thread ended without saying so (it panicked): it is gone.
            let _ = finished.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn each_loop_runs_on_its_own_thread_and_stops() {
        let workers = Workers::start(3).unwrap();
        assert_eq!(workers.len(), 3);
        let main = std::thread::current().id();
        let ran = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for handle in workers.loops().flatten() {
            let ran = ran.clone();
            let id = handle
                .spawn(async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    std::thread::current().id()
                })
                .await
                .unwrap();
            assert_ne!(id, main);
            threads.push(id);
        }
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert_ne!(threads[0], threads[1]);
        let handles: Vec<Handle> = workers.loops().flatten().cloned().collect();
        workers.stop().await;
        // A stopped loop runs nothing more.
        for handle in handles {
            assert!(handle.spawn(async {}).await.is_err());
        }
    }
}

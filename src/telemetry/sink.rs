//! [`Stderr`]: the one way `segward run` writes its logs to stderr. Decision lines are
//! gathered in memory and written in batches; human-readable lines are written at once.
//!
//! Why: a decision line per request written with its own `write(2)` was one of three
//! syscalls per proxied request on each sidecar. Batching is what Envoy's access log does
//! (`--file-flush-interval-msec`). The price, documented for operators: a decision line
//! reaches stderr at most [`FLUSH_INTERVAL`] after its request (or as soon as
//! [`FLUSH_BYTES`] are pending), and lines still pending when the process is killed with
//! SIGKILL are lost. A normal exit (SIGTERM, ctrl-c, a start-up error) writes them out.
//!
//! Lines never interleave: both kinds go through one lock, and a human-readable line first
//! writes out the decision lines pending before it, so stderr keeps the order of events.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, Thread};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Pending decision lines are written at least this often.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Pending decision lines are written as soon as they reach this size.
pub const FLUSH_BYTES: usize = 32 * 1024;

/// The process' stderr with a buffer for decision lines; see the module docs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stderr(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Parked while nothing is pending; woken by the first line after a flush.
    flusher: OnceLock<Thread>,
}

impl Stderr {
    /// The process-wide instance (its flusher thread starts with the first decision line).
    pub fn global() -> Self {
        static GLOBAL: OnceLock<Stderr> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                Stderr(Arc::new(Shared {
                    pending: Mutex::new(Vec::new()),
                    flusher: OnceLock::new(),
                }))
            })
            .clone()
    }

    /// Writes out every pending decision line now.
    pub fn flush(&self) {
        let mut pending = self.lock();
        write_out(&mut pending);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves at worst a partial buffer: keep logging.
        self.0
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake_flusher(&self) {
        let flusher = self.0.flusher.get_or_init(|| {
            let shared = self.clone();
            let spawned = thread::Builder::new()
                .name("segward-log-flush".into())
                .stack_size(64 * 1024)
                .spawn(move || shared.flush_loop());
            match spawned {
                Ok(handle) => handle.thread().clone(),
                // No thread: lines still go out when the buffer fills and at exit.
                Err(_) => thread::current(),
            }
        });
        flusher.unpark();
    }

    fn flush_loop(&self) {
        loop {
            thread::park();
            thread::sleep(FLUSH_INTERVAL);
            self.flush();
        }
    }
}

/// Writes everything pending to stderr; on error the lines are dropped (a log sink that
/// refuses a line must not take the proxy down with it).
fn write_out(pending: &mut Vec<u8>) {
    if pending.is_empty() {
        return;
    }
    let _ = io::stderr().lock().write_all(pending);
    pending.clear();
}

/// A writer for one kind of line (see [`Stderr`]): decision lines are buffered,
/// human-readable lines go out at once after the pending decision lines.
#[derive(Debug, Clone)]
pub struct Lines {
    stderr: Stderr,
    buffered: bool,
}

impl Stderr {
    /// A writer of decision lines: buffered.
    pub fn decisions(&self) -> Lines {
        Lines {
            stderr: self.clone(),
            buffered: true,
        }
    }

    /// A writer of human-readable lines: unbuffered, after the pending decision lines.
    pub fn text(&self) -> Lines {
        Lines {
            stderr: self.clone(),
            buffered: false,
        }
    }
}

impl Write for &Lines {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.stderr.lock();
        if !self.buffered {
            write_out(&mut pending);
            io::stderr().lock().write_all(line)?;
            return Ok(line.len());
        }
        let was_empty = pending.is_empty();
        pending.extend_from_slice(line);
        if pending.len() >= FLUSH_BYTES {
            write_out(&mut pending);
        } else if was_empty {
            drop(pending);
            self.stderr.wake_flusher();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Lines {
    type Writer = &'w Lines;

    fn make_writer(&'w self) -> Self::Writer {
        self
    }
}

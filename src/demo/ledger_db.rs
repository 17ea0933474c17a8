//! The ledger database of the L4 act (docs/l4.md, ISSUE 16): a tiny in-process
//! line-protocol store (`INSERT <entry>`, `SELECT`) — the demo needs nothing but the binary,
//! so it cannot count on a PostgreSQL server being installed (the integration tests run a
//! real one). It sits behind an inbound `protocol: tcp` sidecar; the ledger service and the
//! CI runner reach it through a `protocol: tcp` destination of their own sidecars, as an app
//! reaches `localhost:5432`. The act itself is `l4.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The TCP destination name every app uses for the database.
pub const DESTINATION: &str = "ledger-db";

/// The demo database: rows in memory, one line per command, and a count of the connections
/// that reached it (so the demo can show a refused one never did). Dropping it stops it.
pub struct LedgerDb {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl LedgerDb {
    /// Starts the database on an ephemeral 127.0.0.1 port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start() -> std::io::Result<LedgerDb> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let rows = Arc::new(Mutex::new(Vec::<String>::new()));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(session(tcp, rows.clone()));
            }
        });
        Ok(LedgerDb {
            addr,
            accepted,
            task,
        })
    }

    /// Where it listens (its sidecar's `upstream`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections reached it.
    pub(super) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for LedgerDb {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client session: `INSERT <entry>` → `INSERT 0 1`; `SELECT` → `<n> rows: a | b`.
async fn session(tcp: TcpStream, rows: Arc<Mutex<Vec<String>>>) {
    let (read, mut write) = tcp.into_split();
    // A line longer than this is not a command; the session ends.
    let mut lines = BufReader::new(read.take(1 << 20)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = {
            let mut rows = rows.lock().unwrap_or_else(PoisonError::into_inner);
            match line.split_once(' ') {
                Some(("INSERT", entry)) => {
                    rows.push(entry.to_owned());
                    "INSERT 0 1".to_owned()
                }
                _ if line == "SELECT" => format!("{} rows: {}", rows.len(), rows.join(" | ")),
                _ => "ERROR unknown command".to_owned(),
            }
        };
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

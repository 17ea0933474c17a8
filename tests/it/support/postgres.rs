//! A real PostgreSQL server for L4 tests (issue 16), from Debian's `postgresql` package
//! (`scripts/test.sh` installs it when missing): `initdb` into a temporary folder, `postgres` on a free
//! 127.0.0.1 port with trust auth and `log_connections=on`, run as a non-root user (as the
//! `postgres` user through `runuser` when the tests run as root), stopped by PID when dropped.
//! [`connect`] opens a `tokio-postgres` session through any address: the server's or a sidecar's.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_postgres::{Client, NoTls};

/// Where Debian's packages put each major version's server binaries.
const INSTALL_ROOT: &str = "/usr/lib/postgresql";

/// How long the server may take to accept its first session.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How long a fast shutdown may take before the server is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The unprivileged user Debian's package creates; the server refuses to run as root.
const SERVER_USER: &str = "postgres";

/// The superuser `initdb` creates, and the database every session opens.
pub const SUPERUSER: &str = "postgres";

/// A running PostgreSQL server; stopped, and its folder removed, when dropped.
pub struct Postgres {
    dir: TempDir,
    addr: SocketAddr,
    /// `postgres` itself, or `runuser` running it when the tests run as root.
    child: Child,
}

impl Postgres {
    /// Initialises a cluster in a new temporary folder and starts a server on a free
    /// 127.0.0.1 port; returns once it accepts a session. Panics, naming `.ci/run`, if
    /// PostgreSQL is not installed.
    pub async fn start() -> Postgres {
        let bin = binaries();
        let as_root = euid_is_root();
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        if as_root {
            chown_to_server_user(dir.path());
        }
        run_to_end(
            server_command(as_root, &bin.join("initdb"), dir.path())
                .arg("--pgdata")
                .arg(&data)
                .args(["--username", SUPERUSER, "--auth", "trust"])
                .args(["--encoding", "UTF8", "--locale", "C", "--no-sync"]),
        );
        // Only sessions over loopback TCP (and the server's own socket), without passwords.
        fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = File::create(dir.path().join("server.log")).unwrap();
        let child = server_command(as_root, &bin.join("postgres"), dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("port={}", addr.port()))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            // A throwaway cluster: durability buys nothing, speed does.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=20"])
            .args(["-c", "logging_collector=off", "-c", "log_connections=on"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.join("postgres").display()));
        let mut server = Postgres { dir, addr, child };
        server.wait_ready().await;
        server
    }

    /// Where it accepts TCP sessions.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A superuser session straight to the server (no sidecar), to look at it from inside.
    pub async fn superuser(&self) -> Client {
        connect(self.addr, "superuser").await.unwrap()
    }

    /// How many TCP connections the server has received so far: its `log_connections` lines
    /// "connection received", written by the server as it accepts each one, before any
    /// authentication — so a connection that reached it is counted even if it then failed.
    pub fn connections_received(&self) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains("connection received:"))
            .count()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Polls a session until one opens, within [`READY_WITHIN`]; panics with the server's log
    /// if it exits or does not become ready.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            // Refused until it listens; then refused as "starting up" until it is ready.
            if let Ok(tcp) = TcpStream::connect(self.addr).await
                && let Ok(client) = over(tcp, "readiness").await
                && client.simple_query("SELECT 1").await.is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "PostgreSQL exited before accepting a session ({status}); its log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept a session on {} within {READY_WITHIN:?}; its log:\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The postmaster's PID, as the server records it (first line of `postmaster.pid`); when it
    /// runs under `runuser`, that is not the child's PID.
    fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        let text = fs::read_to_string(pid_file).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl Drop for Postgres {
    /// Fast shutdown (SIGINT to the postmaster: sessions are ended, no checkpoint wait), then
    /// waits for it within [`STOP_WITHIN`]; kills the child if it is still there. The
    /// temporary folder is removed after.
    fn drop(&mut self) {
        let pid = self.postmaster_pid().unwrap_or_else(|| self.child.id());
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session as the superuser through `addr` (the server, or a sidecar's `local:` port that
/// tunnels to it), named `application` in `pg_stat_activity`; its connection is driven on a
/// task, so [`Client::is_closed`] turns true once the far side closes it.
pub async fn connect(addr: SocketAddr, application: &str) -> Result<Client, tokio_postgres::Error> {
    over(TcpStream::connect(addr).await.unwrap(), application).await
}

/// A superuser session over `tcp`, named `application`; see [`connect`].
async fn over(tcp: TcpStream, application: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .user(SUPERUSER)
        .dbname(SUPERUSER)
        .application_name(application)
        .connect_raw(tcp, NoTls)
        .await?;
    tokio::spawn(async move {
        // Ends with the session: closed by either side, or cut.
        let _ = connection.await;
    });
    Ok(client)
}

/// The newest installed major version's `bin` folder; panics, naming `scripts/test.sh`, if none.
fn binaries() -> PathBuf {
    newest_binaries().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: no {INSTALL_ROOT}/*/bin/{{initdb,postgres}}. The \
             PostgreSQL test needs Debian's `postgresql` package, which `scripts/test.sh` \
             installs when missing (or: apt-get install postgresql)"
        )
    })
}

/// Whether Debian's `postgresql` server binaries are installed (see [`binaries`]).
pub fn installed() -> bool {
    newest_binaries().is_some()
}

/// The `bin` folder of the newest installed major version that has `initdb` and `postgres`.
fn newest_binaries() -> Option<PathBuf> {
    fs::read_dir(INSTALL_ROOT)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

/// Whether this process runs as root (then the server must run as [`SERVER_USER`]).
fn euid_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Gives `dir` (and what is in it) to [`SERVER_USER`], so the server can write its cluster.
fn chown_to_server_user(dir: &Path) {
    run_to_end(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{SERVER_USER}:{SERVER_USER}"))
            .arg(dir),
    );
}

/// `program`, run directly, or as [`SERVER_USER`] through `runuser` when `as_root`; in `dir`,
/// so the server user never needs to read the test's own working directory.
fn server_command(as_root: bool, program: &Path, dir: &Path) -> Command {
    let mut command = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", SERVER_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command.current_dir(dir);
    command
}

/// Runs `command` to completion; panics with its output if it fails.
fn run_to_end(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 127.0.0.1 port nothing listens on now (the OS picks it; the server binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

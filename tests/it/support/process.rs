//! The real binary as a child process: `segward run --config FILE` with its stderr captured,
//! for tests of the process itself (signals, exit codes, log lines, resident memory). Dropping
//! a [`Segward`] kills and reaps it, so a failing test never leaves one behind.

use std::fs::File;
use std::io::{Read as _, Seek as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;

use super::eventually;

/// How long a child may take to listen, or to exit once it should.
pub const WAIT: Duration = Duration::from_secs(15);

/// A running `segward run --config FILE`, its stderr captured in a file; dropping it kills and
/// reaps the process, so a failing test never leaves one behind.
pub struct Segward {
    child: Child,
    stderr: File,
}

/// The segward binary these tests run: `$SEGWARD_BIN` when set (CI points the abuse tests at
/// the release artifact of `scripts/build-release.sh`), else the one cargo built for this run.
pub fn binary() -> PathBuf {
    std::env::var_os("SEGWARD_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_segward")),
        PathBuf::from,
    )
}

/// `/proc/<pid>/status` of a running process.
pub fn status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

/// The value of a `kB` line of a `/proc/<pid>/status` text, e.g. `VmRSS:` or `VmHWM:`.
pub fn status_kib(status: &str, key: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

impl Segward {
    /// Starts `segward run --config config` with the default log filter.
    pub fn spawn(config: &Path) -> Segward {
        Self::spawn_logging(config, None)
    }

    /// Starts `segward run --config config` with `SEGWARD_LOG=filter` (default if `None`).
    pub fn spawn_logging(config: &Path, filter: Option<&str>) -> Segward {
        let mut command = Command::new(binary());
        match filter {
            Some(filter) => command.env("SEGWARD_LOG", filter),
            None => command.env_remove("SEGWARD_LOG"),
        };
        Self::spawn_command(command, config)
    }

    /// Starts `segward run --config config` with the variables `env` set as well.
    pub fn spawn_with_env(config: &Path, env: &[(&str, &str)]) -> Segward {
        let mut command = Command::new(binary());
        command.env_remove("SEGWARD_LOG").envs(env.iter().copied());
        Self::spawn_command(command, config)
    }

    fn spawn_command(mut command: Command, config: &Path) -> Segward {
        let stderr = tempfile::tempfile().unwrap();
        let child = command
            .arg("run")
            .arg("--config")
            .arg(config)
            .env_remove("SEGWARD_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.try_clone().unwrap())
            .spawn()
            .unwrap();
        Segward { child, stderr }
    }

    /// Waits until `addr` accepts TCP connections; fails the test (with stderr) otherwise.
    pub async fn until_listening(&mut self, addr: SocketAddr) {
        let up = eventually(
            WAIT,
            || async move { TcpStream::connect(addr).await.is_ok() },
        )
        .await;
        assert!(up, "segward never listened on {addr}:\n{}", self.stderr());
    }

    /// Sends SIGTERM, as Kubernetes and Docker do.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success(), "kill -TERM {pid}: {status}");
    }

    /// SIGTERM, then the process must exit 0 within [`WAIT`]; returns all it wrote to stderr.
    pub async fn stop(&mut self) -> String {
        self.terminate();
        let code = self.exit_code().await;
        let stderr = self.stderr();
        assert_eq!(code, 0, "{stderr}");
        stderr
    }

    /// The exit code, once the process exits on its own within [`WAIT`].
    pub async fn exit_code(&mut self) -> i32 {
        self.exit_code_watching(None).await.0
    }

    /// Like [`Segward::exit_code`], also trying to connect to `watch` (if any) at each poll;
    /// returns whether a connection ever succeeded.
    pub async fn exit_code_watching(&mut self, watch: Option<SocketAddr>) -> (i32, bool) {
        let (child, mut status, mut listened) = (&mut self.child, None, false);
        let exited = eventually(WAIT, || {
            status = status.or_else(|| child.try_wait().unwrap());
            // A blocking connect is fine here: on loopback it is refused at once.
            listened |= watch.is_some_and(|addr| std::net::TcpStream::connect(addr).is_ok());
            let done = status.is_some();
            async move { done }
        })
        .await;
        assert!(
            exited,
            "segward still running after {WAIT:?}:\n{}",
            self.stderr()
        );
        let status = status.unwrap();
        let code = status.code();
        (code.unwrap_or_else(|| panic!("killed: {status}")), listened)
    }

    /// Whether it is still running (not exited, or exited but not yet reaped by us).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Its process id (for reading `/proc/<pid>/…`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory (VmRSS), bytes.
    pub fn rss(&self) -> u64 {
        status_kib(&status(self.pid()), "VmRSS:") * 1024
    }

    /// Everything written to stderr so far.
    pub fn stderr(&mut self) -> String {
        self.stderr.rewind().unwrap();
        let mut text = String::new();
        self.stderr.read_to_string(&mut text).unwrap();
        text
    }
}

impl Drop for Segward {
    fn drop(&mut self) {
        // Errors mean it has exited and been reaped already: nothing left to clean up.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

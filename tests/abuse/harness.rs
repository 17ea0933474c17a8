//! What every abuse scenario stands on: the target ([`Target`]: `segward run` as api's inbound
//! sidecar in front of a [`Workload`] that counts what reaches it), the process's resource use
//! ([`Usage`], read from `/proc`), a normal client measuring its latency on a connection of
//! its own while the attack runs ([`Probe`]), attackers on a thread and runtime of their own
//! ([`attacker`]), and the one lock ([`SERIAL`]) that keeps scenarios from overlapping: they
//! measure CPU and memory, so they must never share the machine with each other.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use segward::certs::IssuedSvid;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::support::backend::Backend;
use crate::support::client::{Alpn, ClientError, Conn, MtlsClient, PlainClient};
use crate::support::eventually;
use crate::support::metrics::{count, scrape};
use crate::support::pki::Pki;
use crate::support::process::{Segward, WAIT, status, status_kib};
use crate::support::sidecar::{write_config, write_policy};

/// Held by each scenario for its whole run: no two ever measure at the same time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The trust domain of every identity here.
pub const TD: &str = "example.org";
/// The sidecar's own identity: the destination of every request.
pub const API: &str = "spiffe://example.org/ns/prod/sa/api";
/// The normal client's identity.
pub const WEB: &str = "spiffe://example.org/ns/prod/sa/web";
/// The attacker: an authenticated, allowed workload gone bad (the worst case: its requests
/// pass the policy and reach the backend).
pub const ATTACKER: &str = "spiffe://example.org/ns/prod/sa/attacker";

/// Every prod identity may call api's `/v1/**`.
const POLICY: &str = r#"
segments:
  api: { identities: ["spiffe://example.org/ns/prod/sa/api"] }
  prod: { identities: ["spiffe://example.org/ns/prod/sa/*"] }
rules:
  - { name: prod-calls-api, from: [prod], to: [api], paths: ["/v1/**"] }
"#;

/// The normal client's path (counted apart from the attackers' paths).
pub const PROBE_PATH: &str = "/v1/probe";

/// Answers the normal client must get during an attack (it asks every 10 ms, so an attack of
/// a second gives it about 80; a loaded machine slows the client's own runtime too).
const MIN_PROBES: usize = 10;

/// How often the normal client sends a request while an attack runs.
const PROBE_EVERY: Duration = Duration::from_millis(10);

/// Whether the segward under test is a debug build, as `cargo test` builds it unless given
/// `--release`: its handshakes and frame handling then cost several times the CPU, and on a
/// sidecar with one event loop (the default `worker_threads: 1`) that CPU shows up as queueing
/// latency for the loop's other connections. `SEGWARD_BIN` (see `support::process::binary`)
/// names another binary: CI points it at the release artifact, where the release bounds hold.
pub fn debug_target() -> bool {
    cfg!(debug_assertions) && std::env::var_os("SEGWARD_BIN").is_none()
}

/// A latency bound: `release_ms` against a release build, `debug_ms` against a debug one
/// ([`debug_target`]). Each use states the figures measured for both on the 2-core shared
/// machine the bounds were set on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    release_ms: u64,
    debug_ms: u64,
}

/// See [`Bound`].
pub const fn bound(release_ms: u64, debug_ms: u64) -> Bound {
    Bound {
        release_ms,
        debug_ms,
    }
}

impl Bound {
    /// The bound for the binary under test.
    pub fn get(self) -> Duration {
        Duration::from_millis(if debug_target() {
            self.debug_ms
        } else {
            self.release_ms
        })
    }
}

/// One KiB.
pub const KIB: u64 = 1024;
/// One MiB.
pub const MIB: u64 = 1024 * KIB;

/// `segward run` as api's inbound sidecar in front of a [`Workload`], on fixed loopback ports
/// picked free at start (a child process cannot report its port 0 picks).
pub struct Target {
    pub pki: Pki,
    pub workload: Workload,
    pub segward: Segward,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
}

impl Target {
    /// Starts the sidecar with `limits` (the body of a `limits:` block, each line indented
    /// two spaces; empty for the defaults); returns once `/readyz` answers 200.
    pub async fn start(limits: &str) -> Target {
        let pki = Pki::new(&[TD]);
        let workload = Workload::start();
        let (inbound, admin) = (Backend::unused_addr(), Backend::unused_addr());
        let mut listeners = format!(
            "inbound:\n  listen: {inbound}\n  upstream: {}\nadmin:\n  listen: {admin}\n",
            workload.addr()
        );
        if !limits.is_empty() {
            listeners.push_str("limits:\n");
            listeners.push_str(limits);
        }
        let policy = write_policy(&pki, POLICY);
        let config = write_config(&pki, &pki.issue(API), &[TD], &policy, &listeners);
        let mut segward = Segward::spawn(&config);
        let ready = eventually(WAIT, || async move {
            let reply = PlainClient::get(admin, "/readyz").await;
            reply.is_ok_and(|r| r.status == StatusCode::OK)
        })
        .await;
        assert!(ready, "segward never got ready:\n{}", segward.stderr());
        Target {
            pki,
            workload,
            segward,
            inbound,
            admin,
        }
    }

    /// A fresh SVID for `id`, signed by the test CA.
    pub fn svid(&self, id: &str) -> IssuedSvid {
        self.pki.issue(id).pem
    }

    /// An mTLS client presenting a fresh SVID for `id`, offering `alpn`.
    pub fn client(&self, id: &str, alpn: Alpn) -> MtlsClient {
        MtlsClient::new(Some(&self.svid(id)), &self.pki.bundle_pems(), alpn)
    }

    /// The process's CPU time and memory now.
    pub fn usage(&self) -> Usage {
        Usage::of(self.segward.pid())
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> BTreeMap<String, f64> {
        scrape(self.admin).await
    }

    /// One series of `/metrics` (0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        count(&self.metrics().await, series)
    }

    /// Fails the test unless this process and segward may each open `n` file descriptors
    /// (soft `RLIMIT_NOFILE`): a flood that runs out of them would measure the wrong thing.
    pub fn need_fds(&self, n: u64) {
        for (who, pid) in [("the test", "self".to_owned()), ("segward", self.pid())] {
            let soft = open_files_limit(&pid);
            assert!(
                soft >= n,
                "{who} may open {soft} files, this scenario needs {n}: raise the soft limit \
                 (`ulimit -n {n}`) before `cargo test`"
            );
        }
    }

    fn pid(&self) -> String {
        self.segward.pid().to_string()
    }
}

/// The soft "Max open files" of process `pid` (or `self`), from `/proc/<pid>/limits`.
fn open_files_limit(pid: &str) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft = line.split_whitespace().nth(3).unwrap();
    soft.parse().unwrap_or(u64::MAX)
}

// --- the workload behind the sidecar ---------------------------------------------------------

/// The application behind the sidecar: plain HTTP/1.1, counting every request head that
/// reaches it by path (before answering, so a request whose answer never comes still counts).
/// `GET /v1/big?bytes=N` answers N bytes, generated as hyper asks for them and counted in
/// [`Workload::streamed`], so a test can see how far backpressure let it get;
/// `/v1/hold` never answers; anything else gets `200 ok`.
pub struct Workload {
    addr: SocketAddr,
    hits: Hits,
    streamed: Counter,
    connections: Counter,
    stop: Option<oneshot::Sender<()>>,
}

impl Workload {
    /// Starts it on a thread and runtime of its own, as a backend process would be: its
    /// work never delays the normal client's task in the test's runtime.
    fn start() -> Workload {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (hits, streamed, connections) =
            (Hits::default(), Counter::default(), Counter::default());
        let counters = (hits.clone(), streamed.clone(), connections.clone());
        let (stop, stopped) = oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    () = accept(listener, counters) => {}
                    _ = stopped => {}
                }
            });
        });
        Workload {
            addr,
            hits,
            streamed,
            connections,
            stop: Some(stop),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests for `path` received so far.
    pub fn hits(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Body bytes of `/v1/big` handed to hyper so far (all answers together).
    pub fn streamed(&self) -> u64 {
        self.streamed.load(Ordering::Relaxed)
    }

    /// Connections segward opened to it so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // Its runtime ends with the accept loop, and every connection with it.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Hits = Arc<Mutex<HashMap<String, u64>>>;

async fn accept(listener: TcpListener, (hits, streamed, accepted): (Hits, Counter, Counter)) {
    let mut connections = JoinSet::new();
    while let Ok((tcp, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::Relaxed);
        let (hits, streamed) = (hits.clone(), streamed.clone());
        let service = service_fn(move |req| answer(req, hits.clone(), streamed.clone()));
        connections.spawn(async move {
            let io = TokioIo::new(tcp);
            let _ = http1::Builder::new().serve_connection(io, service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

type Counter = Arc<AtomicU64>;
type Answer = Response<Either<Full<Bytes>, Generated>>;

async fn answer(
    req: Request<Incoming>,
    hits: Hits,
    streamed: Counter,
) -> Result<Answer, Infallible> {
    let path = req.uri().path().to_owned();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let body = match path.as_str() {
        "/v1/hold" => std::future::pending().await,
        "/v1/big" => {
            let query = req.uri().query().unwrap_or_default();
            let left = query
                .strip_prefix("bytes=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Either::Right(Generated { left, streamed })
        }
        _ => Either::Left(Full::new(Bytes::from_static(b"ok"))),
    };
    Ok(Response::new(body))
}

/// What a `/v1/big` body is made of.
static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// A body of `left` bytes, generated chunk by chunk only when hyper polls for more.
pub struct Generated {
    left: u64,
    streamed: Counter,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len() as u64);
        self.left -= n;
        self.streamed.fetch_add(n, Ordering::Relaxed);
        let chunk = Bytes::from_static(&CHUNK[..n as usize]);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

// --- resource use ------------------------------------------------------------------------------

/// A process's CPU time and memory at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User + system CPU time so far, ms.
    pub cpu_ms: u64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (the peak VmRSS so far), KiB.
    pub hwm_kib: u64,
}

impl Usage {
    /// Reads `/proc/<pid>/stat` (utime, stime in clock ticks) and `/proc/<pid>/status`.
    pub fn of(pid: u32) -> Usage {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name, which may itself hold spaces and parentheses:
        // state is field 3, utime field 14 and stime field 15.
        let (_, rest) = stat.rsplit_once(')').unwrap();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let status = status(pid);
        Usage {
            cpu_ms: ticks * 1000 / clock_ticks(),
            rss_kib: status_kib(&status, "VmRSS:"),
            hwm_kib: status_kib(&status, "VmHWM:"),
        }
    }

    /// CPU ms spent since `before`.
    pub fn cpu_since(&self, before: &Usage) -> u64 {
        self.cpu_ms.saturating_sub(before.cpu_ms)
    }

    /// How far the peak RSS rose above `before`'s RSS, KiB: an upper bound on what the
    /// attack between the two readings made the process hold at once.
    pub fn peak_growth_since(&self, before: &Usage) -> u64 {
        self.hwm_kib.saturating_sub(before.rss_kib)
    }

    /// Fails the test if, since `before`, the process spent more than `cpu_ms` of CPU or its
    /// peak RSS rose more than `rss_kib` above the RSS it had then.
    pub fn assert_bounded(&self, before: &Usage, cpu_ms: u64, rss_kib: u64) {
        let (spent, grew) = (self.cpu_since(before), self.peak_growth_since(before));
        assert!(spent < cpu_ms, "CPU {spent} ms, the bound is {cpu_ms} ms");
        assert!(
            grew < rss_kib,
            "peak RSS +{grew} KiB, the bound is {rss_kib} KiB"
        );
    }

    /// `cpu N ms, rss A -> B KiB (hwm H KiB, peak +P KiB)` since `before`.
    pub fn describe_since(&self, before: &Usage) -> String {
        format!(
            "cpu {} ms, rss {} -> {} KiB (hwm {} KiB, peak +{} KiB)",
            self.cpu_since(before),
            before.rss_kib,
            self.rss_kib,
            self.hwm_kib,
            self.peak_growth_since(before)
        )
    }
}

/// `getconf CLK_TCK`: the unit of utime and stime (100 on Linux, but asked, not assumed).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    })
}

// --- the normal client -------------------------------------------------------------------------

/// A normal client (web, a real hyper HTTP/2 client over mTLS) on a connection of its own,
/// sending `GET /v1/probe` every 10 ms and timing each answer until [`Probe::stop`].
pub struct Probe {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Latency>>,
    task: JoinHandle<()>,
}

/// What the normal client saw.
#[derive(Debug, Default)]
pub struct Latency {
    /// Each served request's latency, in order.
    pub samples: Vec<Duration>,
    /// Requests not answered 200, and why.
    pub failures: Vec<String>,
}

impl Probe {
    /// Connects (the connection is up before the attack starts) and starts probing.
    pub async fn start(target: &Target) -> Probe {
        let client = target.client(WEB, Alpn::H2);
        let mut conn = client.connect(target.inbound).await.unwrap();
        assert_eq!(conn.get(PROBE_PATH).await.unwrap().status, StatusCode::OK);
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Latency::default()));
        let (addr, flag, record) = (target.inbound, stop.clone(), seen.clone());
        let task = tokio::spawn(async move { probe(client, addr, conn, &flag, &record).await });
        Probe { stop, seen, task }
    }

    /// What it saw since it started or since the last lap; it goes on probing.
    pub fn lap(&self) -> Latency {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Stops probing; what it saw since it started or since the last lap.
    pub async fn stop(self) -> Latency {
        self.stop.store(true, Ordering::Relaxed);
        let Probe { seen, task, .. } = self;
        task.await.unwrap();
        std::mem::take(&mut *seen.lock().unwrap())
    }
}

async fn probe(
    client: MtlsClient,
    addr: SocketAddr,
    mut conn: Conn,
    stop: &AtomicBool,
    seen: &Mutex<Latency>,
) {
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let outcome = conn.get(PROBE_PATH).await;
        let elapsed = started.elapsed();
        let failed = outcome.is_err();
        {
            let mut seen = seen.lock().unwrap();
            match outcome {
                Ok(reply) if reply.status == StatusCode::OK => seen.samples.push(elapsed),
                Ok(reply) => seen.failures.push(format!("status {}", reply.status)),
                Err(error) => seen.failures.push(error.to_string()),
            }
        }
        if failed {
            conn = reconnect(&client, addr).await;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

async fn reconnect(client: &MtlsClient, addr: SocketAddr) -> Conn {
    let conn: Result<Conn, ClientError> = client.connect(addr).await;
    conn.unwrap()
}

impl Latency {
    /// The slowest answer.
    pub fn max(&self) -> Duration {
        self.samples.iter().copied().max().unwrap_or_default()
    }

    /// The 99th percentile (nearest rank).
    pub fn p99(&self) -> Duration {
        self.percentile(99)
    }

    /// The median.
    pub fn p50(&self) -> Duration {
        self.percentile(50)
    }

    fn percentile(&self, p: usize) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let rank = (sorted.len() * p).div_ceil(100).max(1);
        sorted.get(rank - 1).copied().unwrap_or_default()
    }

    /// `probe N ok, F failed, p50 …, p99 …, max …`.
    pub fn describe(&self) -> String {
        format!(
            "probe {} ok / {} failed, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.samples.len(),
            self.failures.len(),
            ms(self.p50()),
            ms(self.p99()),
            ms(self.max())
        )
    }

    /// Fails the test unless the client was served (at least [`MIN_PROBES`] answers, so it
    /// ran during the attack), none failed, and the slowest took less than `max`.
    pub fn assert_served(&self, max: Duration) {
        assert!(
            self.failures.is_empty(),
            "probe failures: {:?}",
            self.failures
        );
        assert!(
            self.samples.len() >= MIN_PROBES,
            "only {} probe requests were served, want {MIN_PROBES}",
            self.samples.len()
        );
        assert!(
            self.max() < max,
            "slowest probe request {:.1} ms, the bound is {max:?} ({})",
            ms(self.max()),
            self.describe()
        );
    }
}

/// `d` in milliseconds, fractional.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints one scenario's figures where `--nocapture` shows them, prefixed for grepping.
/// The machine's load average is part of each line: other work on the box skews latencies.
pub fn figures(scenario: &str, text: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("abuse-figures: {scenario}: {text}; loadavg {load}");
}

// --- attackers ---------------------------------------------------------------------------------

/// Runs `attack` on a thread and a current-thread runtime of its own, so that a busy attacker
/// never delays the normal client's task in the test's runtime (the latency measured is the
/// sidecar's); its result arrives on the receiver (an error there means it panicked).
pub fn attacker<T, F, Fut>(attack: F) -> oneshot::Receiver<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = tx.send(runtime.block_on(attack()));
    });
    rx
}

//! L4 (TCP) mode under load and at its limits (docs/l4.md "half-close, backpressure and
//! large transfers are carried faithfully; idle timeout and max connections apply", §4
//! bounded resources; issue 16). The transfer, backpressure and decision-log stories run the
//! real `segward run` binary twice — an app's sidecar with a TCP destination and the
//! database's sidecar with a TCP inbound listener — so that each process's memory can be read
//! from /proc and its decision log from stderr; the limit stories run sidecars in process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use segward::app::Sidecar;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::support::backend::Backend;
use crate::support::client::{Alpn, MtlsClient, PlainClient};
use crate::support::eventually;
use crate::support::pki::Pki;
use crate::support::process::{Segward, WAIT};
use crate::support::sidecar::{
    ANY_PORT, start, tcp_inbound_block, tcp_outbound_block, write_config, write_policy,
};
use crate::support::tcp::{
    Answerer, Echo, Pattern, Received, Script, closed_within, read_pattern, round_trip,
    write_pattern,
};

const TD: &str = "example.org";
const DB: &str = "spiffe://example.org/ns/prod/sa/ledger-db";
const PAYMENTS: &str = "spiffe://example.org/ns/prod/sa/payments";

const POLICY: &str = r#"
segments:
  prod: { identities: ["spiffe://example.org/ns/prod/sa/*"] }
  ledger-db: { identities: ["spiffe://example.org/ns/prod/sa/ledger-db"] }
rules:
  - { name: prod-uses-ledger-db, from: [prod], to: [ledger-db] }
"#;

const MIB: u64 = 1024 * 1024;

/// Seeds of what the app sends and what the workload answers: two different streams.
const APP_SEED: u64 = 0x5E6_3A4D;
const DB_SEED: u64 = 0xDA7A_BA5E;

// --- half-close and a large transfer both ways ----------------------------------------------

/// The app streams 256 MiB and shuts its write side; the workload checks every byte, and only
/// after that EOF answers 256 MiB of its own and closes; the app checks those and sees EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_transfer_each_way_with_half_close_arrives_byte_exact() {
    const LEN: u64 = 256 * MIB;
    let db = Answerer::start(script(LEN)).await;
    let pair = ProcessPair::start(db.addr()).await;

    let started = Instant::now();
    let mut app = TcpStream::connect(pair.local).await.unwrap();
    let got = exchange(&mut app, LEN).await;
    let took = started.elapsed();
    eprintln!("256 MiB each way through the pair: {took:?}");

    assert_eq!(got, intact(LEN), "what the app read back");
    assert_eq!(db.results(), [Ok(intact(LEN))], "what the workload read");
    assert_eq!(db.accepted(), 1);
}

// --- backpressure and bounded memory --------------------------------------------------------

/// "RSS growth < 16 MiB" (issue 16) while a writer outpaces a stalled reader.
const RSS_GROWTH: u64 = 16 * MIB;

/// The writer's stream: far more than every buffer on the way holds.
const FLOOD: u64 = 512 * MIB;

/// What the writer may get into the path while the reader reads nothing: the kernel's socket
/// buffers of three loopback hops, which autotune (up to `tcp_rmem`/`tcp_wmem` max, 32 + 4 MiB
/// a hop on a stock Linux; 14–26 MiB in all were measured), and the sidecars' own 64 KiB copy
/// buffers. A quarter of [`FLOOD`]: the rest is held back by backpressure, not buffered.
const IN_FLIGHT: u64 = 128 * MIB;

/// No byte moved for this long: the writer is blocked.
const STALLED: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_blocks_the_writer_and_neither_sidecar_buffers_the_stream() {
    let db = Answerer::start(script(0)).await;
    let pair = ProcessPair::start(db.addr()).await;
    // Warm-up: one tunnel end to end, so each process has its buffers, TLS state and
    // allocator arenas; the baseline is measured after it.
    let mut warm = TcpStream::connect(pair.local).await.unwrap();
    assert_eq!(exchange(&mut warm, 8 * MIB).await, intact(0));
    let baseline = pair.rss();

    db.set_open(false);
    let written = Arc::new(AtomicU64::new(0));
    let progress = written.clone();
    let local = pair.local;
    let writer = tokio::spawn(async move {
        let mut app = TcpStream::connect(local).await.unwrap();
        write_pattern(&mut app, APP_SEED, FLOOD, &progress).await?;
        app.shutdown().await?;
        let mut rest = Vec::new();
        app.read_to_end(&mut rest).await.map(|_| rest.len())
    });
    let mut peak = baseline;
    let stalled_at = stall(&written, || peak = higher(peak, pair.rss())).await;
    peak = higher(peak, pair.rss());
    eprintln!(
        "writer blocked after {} MiB; RSS app {} → {} KiB, db {} → {} KiB",
        stalled_at / MIB,
        baseline.0 / 1024,
        peak.0 / 1024,
        baseline.1 / 1024,
        peak.1 / 1024
    );
    assert_eq!(db.read(), 8 * MIB, "the stalled reader read nothing more");
    assert!(
        stalled_at > 0 && stalled_at < IN_FLIGHT,
        "the writer got {} MiB in while the reader read nothing",
        stalled_at / MIB
    );
    assert!(!writer.is_finished());
    assert_grew_less(baseline, peak);

    // The reader drains: the rest arrives, every byte, and memory stays flat meanwhile.
    db.set_open(true);
    let drained = eventually(TRANSFER, || {
        peak = higher(peak, pair.rss());
        let done = writer.is_finished();
        async move { done }
    })
    .await;
    assert!(drained, "the writer never finished: {} B", db.read());
    assert_eq!(writer.await.unwrap().unwrap(), 0, "nothing answered");
    eprintln!(
        "peak RSS while draining: app {} KiB, db {} KiB",
        peak.0 / 1024,
        peak.1 / 1024
    );
    let results = db.results();
    assert_eq!(results, [Ok(intact(8 * MIB)), Ok(intact(FLOOD))]);
    assert_grew_less(baseline, peak);
}

/// Polls until `written` has not moved for [`STALLED`] (calling `sample` at each poll);
/// returns where it stopped.
async fn stall(written: &AtomicU64, mut sample: impl FnMut()) -> u64 {
    let mut last = (0, Instant::now());
    let blocked = eventually(Duration::from_secs(60), || {
        sample();
        let now = written.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
        let still = now > 0 && last.1.elapsed() >= STALLED;
        async move { still }
    })
    .await;
    assert!(blocked, "the writer never blocked: {} B written", last.0);
    last.0
}

/// Each process's higher figure of two (app, db) samples.
fn higher(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    (a.0.max(b.0), a.1.max(b.1))
}

fn assert_grew_less(baseline: (u64, u64), peak: (u64, u64)) {
    let growth = (peak.0 - baseline.0, peak.1 - baseline.1);
    assert!(
        growth.0 < RSS_GROWTH,
        "the app's sidecar grew {} KiB",
        growth.0 / 1024
    );
    assert!(
        growth.1 < RSS_GROWTH,
        "the db's sidecar grew {} KiB",
        growth.1 / 1024
    );
}

// --- the decision log of one tunnel ---------------------------------------------------------

/// Each sidecar writes an `open` line with the decision and a `close` line counting exactly
/// the bytes that crossed (`bytes_in` from the app, `bytes_out` to it), `finished`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sidecar_logs_the_tunnel_open_and_its_exact_bytes_at_close() {
    const SENT: u64 = 3 * MIB + 17;
    const ANSWERED: u64 = MIB + 5;
    let db = Answerer::start(script(ANSWERED)).await;
    let mut pair = ProcessPair::start(db.addr()).await;

    let mut app = TcpStream::connect(pair.local).await.unwrap();
    assert_eq!(exchange(&mut app, SENT).await, intact(ANSWERED));

    let (app_log, db_log) = pair.stop_when_closed().await;
    for (log, direction) in [(app_log, "outbound"), (db_log, "inbound")] {
        let (open, close) = tunnel_lines(&log);
        assert_eq!(open["direction"], direction, "{open}");
        assert_eq!(open["protocol"], "tcp", "{open}");
        assert_eq!(open["decision"], "allow", "{open}");
        assert_eq!(open["rule"], "prod-uses-ledger-db", "{open}");
        assert_eq!(open["source_id"], PAYMENTS, "{open}");
        assert_eq!(open["destination_id"], DB, "{open}");
        assert_eq!(close["request_id"], open["request_id"], "{close}");
        assert_eq!(close["decision"], "allow", "{close}");
        assert_eq!(close["bytes_in"], SENT, "{close}");
        assert_eq!(close["bytes_out"], ANSWERED, "{close}");
        assert_eq!(close["close_reason"], "finished", "{close}");
        assert!(close["duration_ms"].is_number(), "{close}");
    }
}

/// The one tunnel's `open` and `close` lines in a sidecar's stderr.
fn tunnel_lines(stderr: &str) -> (Value, Value) {
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let event = |name: &str| {
        let found: Vec<_> = lines.iter().filter(|l| l["event"] == name).collect();
        assert_eq!(found.len(), 1, "{name} lines:\n{stderr}");
        found[0].clone()
    };
    (event("open"), event("close"))
}

// --- idle timeout -----------------------------------------------------------------------------

/// `limits.idle_timeout`: ten times the busy tunnel's 100 ms beat, so a loaded test machine
/// does not make it look idle.
const IDLE: Duration = Duration::from_secs(1);

/// A tunnel with no traffic for `limits.idle_timeout` is closed; one that moves a byte every
/// 100 ms outlives it three times over.
#[tokio::test]
async fn a_quiet_tunnel_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    let f = InProcess::start(|limits| limits.idle = IDLE).await;
    let mut quiet = f.connect().await;
    let mut busy = f.connect().await;
    round_trip(&mut quiet, b"x").await;
    round_trip(&mut busy, b"x").await;
    let since = Instant::now();

    let keep_busy = async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while since.elapsed() < IDLE * 3 {
            tick.tick().await;
            round_trip(&mut busy, b"y").await;
        }
    };
    let (closed, ()) = tokio::join!(closed_within(&mut quiet, IDLE * 4), keep_busy);
    let quiet_for = closed.expect("the quiet tunnel was not closed within 4× the idle timeout");
    assert!(
        quiet_for >= IDLE - Duration::from_millis(50),
        "closed early: {quiet_for:?}"
    );
    // The busy one is open after 3× the timeout.
    round_trip(&mut busy, b"still here").await;
    assert_eq!(f.echo.accepted(), 2);
}

// --- max connections --------------------------------------------------------------------------

/// With `limits.max_connections: 2` a third client waits in the backlog — no handshake, no
/// byte to the workload — until one of the two closes; then it is served.
#[tokio::test]
async fn a_connection_past_max_connections_waits_until_one_closes() {
    let f = InProcess::start(|limits| limits.max_connections = 2).await;
    let mut first = f.connect().await;
    let mut second = f.connect().await;
    round_trip(&mut first, b"one").await;
    round_trip(&mut second, b"two").await;

    let client = f.client(PAYMENTS);
    let addr = f.sidecar.inbound_addr().unwrap();
    let mut third = tokio::spawn(async move {
        let mut stream = client.stream(addr).await.unwrap();
        round_trip(&mut stream, b"three").await;
        stream
    });
    // Not served for a while: a negative can only be waited out.
    let held = timeout(Duration::from_millis(700), &mut third).await;
    assert!(
        held.is_err(),
        "the third connection was served past the limit"
    );
    assert_eq!(f.echo.accepted(), 2);

    first.shutdown().await.unwrap();
    assert!(
        closed_within(&mut first, Duration::from_secs(5))
            .await
            .is_some()
    );
    let mut third = timeout(Duration::from_secs(10), third)
        .await
        .expect("the third connection was not served once a slot freed")
        .unwrap();
    assert_eq!(f.echo.accepted(), 3);
    round_trip(&mut second, b"two again").await;
    round_trip(&mut third, b"three again").await;
}

// --- clients without a trusted certificate ----------------------------------------------------

/// A TLS client without a certificate, and one whose certificate another CA signed (for the
/// same SPIFFE ID), fail the handshake or the first read; the workload never sees them.
#[tokio::test]
async fn clients_without_a_trusted_certificate_never_reach_the_workload() {
    let f = InProcess::start(|_| {}).await;
    let addr = f.sidecar.inbound_addr().unwrap();
    let roots = f.pki.bundle_pems();
    let stranger = Pki::new(&[TD]);
    let forged = stranger.issue(PAYMENTS);
    let clients = [
        ("no certificate", MtlsClient::new(None, &roots, Alpn::None)),
        (
            "untrusted CA",
            MtlsClient::new(Some(&forged.pem), &roots, Alpn::None),
        ),
    ];
    for (what, client) in clients {
        if let Ok(mut stream) = client.stream(addr).await {
            // TLS 1.3: the server's refusal arrives after the client finished.
            let _ = stream.write_all(b"SELECT 1;").await;
            let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
            assert!(closed.is_some(), "{what}: the connection stayed open");
        }
    }
    // A trusted client after them is served: had they reached the workload, it would count 3.
    let mut good = f.connect().await;
    round_trip(&mut good, b"SELECT 1;").await;
    assert_eq!(
        f.echo.accepted(),
        1,
        "only the trusted client reached the workload"
    );
}

// --- fixtures ---------------------------------------------------------------------------------

/// The byte-exact checks above are only as good as the streams: seeded, not constant, and
/// one changed byte is caught wherever the reads split.
#[test]
fn the_test_streams_differ_by_seed_and_a_changed_byte_is_caught() {
    let mut sent = Vec::new();
    let mut app = Pattern::new(APP_SEED);
    while sent.len() < 200_000 {
        sent.extend_from_slice(app.take(70_000));
    }
    let mut db = Pattern::new(DB_SEED);
    assert_ne!(&sent[..4096], db.take(4096));
    assert_ne!(&sent[..4096], &sent[65_536..65_536 + 4096], "blocks repeat");
    assert!(sent.windows(2).take(4096).any(|w| w[0] != w[1]), "constant");
    let check = |data: &[u8]| {
        let mut pattern = Pattern::new(APP_SEED);
        data.chunks(1000).all(|chunk| pattern.matches(chunk))
    };
    assert!(check(&sent));
    sent[131_073] ^= 1;
    assert!(!check(&sent));
}

fn script(answer_len: u64) -> Script {
    Script {
        expect: APP_SEED,
        answer: DB_SEED,
        answer_len,
    }
}

fn intact(bytes: u64) -> Received {
    Received {
        bytes,
        intact: true,
    }
}

/// The longest [`exchange`] or drain may take (256 MiB each way took ~3 s in a debug build).
const TRANSFER: Duration = Duration::from_secs(180);

/// The app's side of an [`Answerer`] exchange: sends `len` bytes of its pattern, shuts its
/// write side, then reads the answer to EOF; within [`TRANSFER`].
async fn exchange(app: &mut TcpStream, len: u64) -> Received {
    let progress = AtomicU64::new(0);
    let exchange = async {
        write_pattern(app, APP_SEED, len, &progress).await.unwrap();
        app.shutdown().await.unwrap();
        read_pattern(app, DB_SEED, &progress).await.unwrap()
    };
    let over = || {
        format!(
            "over {TRANSFER:?}: {} B moved",
            progress.load(Ordering::SeqCst)
        )
    };
    timeout(TRANSFER, exchange)
        .await
        .unwrap_or_else(|_| panic!("{}", over()))
}

/// The database's sidecar in process, inbound TCP to an [`Echo`], its limits tuned.
struct InProcess {
    pki: Pki,
    echo: Echo,
    sidecar: Sidecar,
}

impl InProcess {
    async fn start(tune: impl FnOnce(&mut segward::config::Limits)) -> InProcess {
        let pki = Pki::new(&[TD]);
        let echo = Echo::start().await;
        let policy = write_policy(&pki, POLICY);
        let inbound = tcp_inbound_block(ANY_PORT, echo.addr());
        let config = write_config(&pki, &pki.issue(DB), &[TD], &policy, &inbound);
        let sidecar = start(&config, |config| tune(&mut config.limits)).await;
        InProcess { pki, echo, sidecar }
    }

    fn client(&self, id: &str) -> MtlsClient {
        let svid = self.pki.issue(id);
        MtlsClient::new(Some(&svid.pem), &self.pki.bundle_pems(), Alpn::None)
    }

    /// A direct mTLS connection as payments.
    async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let addr = self.sidecar.inbound_addr().unwrap();
        self.client(PAYMENTS).stream(addr).await.unwrap()
    }
}

/// Two `segward run` processes: payments' sidecar, whose `ledger-db` TCP destination listens
/// on `local`, and the database's sidecar in front of the workload.
struct ProcessPair {
    _pki: Pki,
    app: Segward,
    db: Segward,
    local: SocketAddr,
}

impl ProcessPair {
    async fn start(workload: SocketAddr) -> ProcessPair {
        let pki = Pki::new(&[TD]);
        let (listen, local) = (Backend::unused_addr(), Backend::unused_addr());
        let inbound = tcp_inbound_block(listen, workload);
        let outbound = tcp_outbound_block(listen, DB, local);
        let db = start_process(&pki, DB, &inbound).await;
        let app = start_process(&pki, PAYMENTS, &outbound).await;
        ProcessPair {
            _pki: pki,
            app,
            db,
            local,
        }
    }

    /// VmRSS of (app, db), bytes.
    fn rss(&self) -> (u64, u64) {
        (self.app.rss(), self.db.rss())
    }

    /// Once both sidecars logged a tunnel's close, SIGTERM both; their stderr (app, db).
    async fn stop_when_closed(&mut self) -> (String, String) {
        for segward in [&mut self.app, &mut self.db] {
            let closed = eventually(WAIT, || {
                let logged = segward.stderr().contains(r#""event":"close""#);
                async move { logged }
            })
            .await;
            assert!(closed, "no close line:\n{}", segward.stderr());
        }
        (self.app.stop().await, self.db.stop().await)
    }
}

/// Starts `id`'s sidecar as a process with `listeners` and an admin port of its own; returns
/// once `/readyz` answers 200 (every listener is bound by then).
async fn start_process(pki: &Pki, id: &str, listeners: &str) -> Segward {
    let admin = Backend::unused_addr();
    let policy = write_policy(pki, POLICY);
    let listeners = format!("{listeners}admin:\n  listen: {admin}\n");
    let config = write_config(pki, &pki.issue(id), &[TD], &policy, &listeners);
    let mut segward = Segward::spawn(&config);
    let ready = eventually(WAIT, || async move {
        let reply = PlainClient::get(admin, "/readyz").await;
        reply.is_ok_and(|r| r.status == StatusCode::OK)
    })
    .await;
    assert!(
        ready,
        "{id}'s sidecar never got ready:\n{}",
        segward.stderr()
    );
    segward
}

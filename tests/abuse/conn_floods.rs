//! Connection floods (issue 18 part 3, scenarios 6–8):
//! - **slowloris + idle**: 2,000 idle TLS connections (handshake done, ALPN h2, not one byte
//!   sent) and 500 slowloris connections (HTTP/1.1, a request head dribbled a byte a second)
//!   at once, `max_connections: 3000`. Asserted: while all are open a normal client's 200
//!   requests have p99 < 50 ms; each slowloris connection is cut at `header_read_timeout`
//!   (4 s here) however steadily it dribbles; the idle ones stay open (no timeout of theirs is
//!   due); memory per idle connection is measured and bounded;
//! - **max_connections**: with `max_connections: 50` held by open connections, 500 more
//!   clients arrive at once. As documented (README `limits:`: "more wait in the accept
//!   backlog"), none is served and none refused while the 50 stay open —
//!   `segward_connections_active` never passes 50 — and an open connection is served
//!   meanwhile; once the 50 close, all 500 are served;
//! - **handshake flood**: 200 clients open TCP and stall — a third send nothing, a third a
//!   partial TLS record, a third a whole ClientHello (the server does its key exchange and
//!   signs, then waits) — with `tls_handshake_timeout: 1s`. Asserted: each is closed by the
//!   server between 0.9 s and 2.5 s after connecting, exactly 200 are counted in
//!   `segward_tls_handshake_failures_total{reason="timeout"}`, and new mTLS clients complete
//!   their handshakes and are served meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_rustls::client::TlsStream;

use crate::harness::{
    ATTACKER, Bound, KIB, MIB, PROBE_PATH, Probe, SERIAL, Target, WEB, attacker, bound, figures, ms,
};
use crate::support::client::{Alpn, MtlsClient};
use crate::support::eventually;
use crate::support::metrics::{count, scrape};

// The normal client's slowest answers: 100 ms as issue 18 asks, except where a debug build
// (cargo test's default) on this 2-core shared machine (load average 2-5) measured more:
// its handshakes cost about 1 ms of CPU each, and with one event loop (the default) a burst
// of them delays every other connection. Figures are maxima over 5-10 runs each.

/// On its open connection while the listener is full: release 5-9 ms, debug 7-18 ms.
const HELD_PROBE_MAX: Bound = bound(100, 100);

/// On its open connection while the 500 are served, [`LIMIT`] - 1 handshakes at a time:
/// release 35-45 ms, debug 120-285 ms.
const DRAINING_MAX: Bound = bound(100, 500);

/// On its open connection during the handshake flood (a third of the stallers send a
/// ClientHello the server answers at once: key exchange, signature): release 5-16 ms, debug
/// 71-163 ms.
const HANDSHAKE_PROBE_MAX: Bound = bound(100, 250);

/// A new client's handshake and request during the handshake flood: release 12-20 ms, debug
/// 26-220 ms.
const FRESH_MAX: Bound = bound(100, 300);

/// CPU segward may spend on one scenario: a few hundred handshakes (debug build, about 1 ms
/// each)...
const CPU_MS: u64 = 5_000;

/// ...or the 2,500 of the slowloris + idle scenario.
const SLOWLORIS_CPU_MS: u64 = 20_000;

/// How far segward's peak RSS may rise over a scenario of a few hundred connections.
const RSS_KIB: u64 = 16 * MIB / KIB;

/// How many handshakes the test runs at once while it opens a flood.
const OPENING: usize = 32;

// --- 6. slowloris + idle ---------------------------------------------------------------------

const IDLE: usize = 2_000;
const SLOWLORIS: usize = 500;

/// `header_read_timeout` in this scenario.
const HEADER_READ: Duration = Duration::from_secs(4);

/// How often a slowloris connection sends its next byte.
const DRIBBLE: Duration = Duration::from_secs(1);

/// The normal client's requests while the flood is open, and their p99 bound.
const PROBES: usize = 200;
const P99: Duration = Duration::from_millis(50);

/// Memory segward may hold per idle connection.
const PER_IDLE_KIB: u64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_cut_at_the_header_timeout_while_idle_ones_cost_little() {
    let _serial = SERIAL.lock().await;
    let limits = format!(
        "  max_connections: 3000\n  header_read_timeout: {}s\n  idle_timeout: 2m\n",
        HEADER_READ.as_secs()
    );
    let target = Target::start(&limits).await;
    target.need_fds(3_000);
    let mut probe = target
        .client(WEB, Alpn::H2)
        .connect(target.inbound)
        .await
        .unwrap();
    assert_eq!(probe.get(PROBE_PATH).await.unwrap().status, StatusCode::OK);
    let before = target.usage();

    // 2,000 idle connections: handshake done, nothing sent.
    let started = Instant::now();
    let idle = open_many(IDLE, target.client(ATTACKER, Alpn::H2), target.inbound).await;
    let idle_took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_idle = target.usage();
    let per_idle = (with_idle.rss_kib.saturating_sub(before.rss_kib)) * 1024 / IDLE as u64;
    let idle_watch: Vec<_> = idle.into_iter().map(watch_close).collect();

    // 500 slowloris connections, each dribbling from its handshake on.
    let started = Instant::now();
    let (connected, gate) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(Semaphore::new(OPENING)),
    );
    let (slow_client, addr) = (target.client(ATTACKER, Alpn::H1), target.inbound);
    let slowloris: Vec<_> = (0..SLOWLORIS)
        .map(|_| {
            let (client, connected, gate) = (slow_client.clone(), connected.clone(), gate.clone());
            tokio::spawn(async move {
                let turn = gate.acquire().await.unwrap();
                let tls = client.stream(addr).await.unwrap();
                drop(turn);
                connected.fetch_add(1, Ordering::Relaxed);
                dribble(tls, Instant::now()).await
            })
        })
        .collect();
    let all_connected = eventually(Duration::from_secs(30), || {
        let n = connected.load(Ordering::Relaxed);
        async move { n == SLOWLORIS as u64 }
    });
    assert!(all_connected.await, "slowloris connections not all up");
    let slow_took = started.elapsed();

    // The normal client, back to back, while every flood connection is open.
    let mut latency = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let sent = Instant::now();
        assert_eq!(probe.get(PROBE_PATH).await.unwrap().status, StatusCode::OK);
        latency.push(sent.elapsed());
    }
    let all_open = Instant::now();
    let with_all = target.usage();
    let active = target
        .metric(r#"segward_connections_active{direction="inbound"}"#)
        .await;

    let mut cut = Vec::new();
    for task in slowloris {
        cut.push(task.await.unwrap());
    }
    let idle_closed = idle_watch.iter().filter(|w| w.is_finished()).count();
    let after = target.usage();

    latency.sort();
    let p99 = latency[PROBES * 99 / 100 - 1];
    let max = latency[PROBES - 1];
    let lifetimes: Vec<Duration> = cut.iter().filter_map(|c| c.lifetime).collect();
    let (shortest, longest) = (
        lifetimes.iter().min().copied().unwrap_or_default(),
        lifetimes.iter().max().copied().unwrap_or_default(),
    );
    let most_bytes = cut.iter().map(|c| c.sent).max().unwrap_or(0);
    let least_bytes = cut.iter().map(|c| c.sent).min().unwrap_or(0);
    let probe_during_slowloris = cut
        .iter()
        .filter_map(|c| c.closed_at)
        .min()
        .is_some_and(|first| first > all_open);
    figures(
        "slowloris + idle",
        &format!(
            "{IDLE} idle opened in {idle_took:?} ({:.0} handshakes/s): rss {} -> {} KiB, \
             {per_idle} bytes per idle connection; {SLOWLORIS} slowloris opened in \
             {slow_took:?}; with all open: {} active, rss {} KiB; {PROBES} requests meanwhile: \
             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; slowloris cut after {:.2}–{:.2} s \
             (header_read_timeout {HEADER_READ:?}), having sent {least_bytes}–{most_bytes} bytes each; \
             idle closed meanwhile: {idle_closed}; whole scenario: {}",
            IDLE as f64 / idle_took.as_secs_f64(),
            before.rss_kib,
            with_idle.rss_kib,
            active,
            with_all.rss_kib,
            ms(latency[PROBES / 2]),
            ms(p99),
            ms(max),
            shortest.as_secs_f64(),
            longest.as_secs_f64(),
            after.describe_since(&before)
        ),
    );
    assert!(
        probe_during_slowloris,
        "a slowloris connection was cut before the normal client finished: the figures \
         were not taken with all of them open"
    );
    assert_eq!(active, (IDLE + SLOWLORIS + 1) as f64);
    assert!(p99 < P99, "p99 {:.1} ms", ms(p99));
    assert_eq!(
        lifetimes.len(),
        SLOWLORIS,
        "slowloris connections never cut"
    );
    assert!(
        shortest >= HEADER_READ - Duration::from_millis(100),
        "{shortest:?}"
    );
    assert!(
        longest < HEADER_READ + Duration::from_secs(2),
        "{longest:?}"
    );
    // Each kept dribbling (a byte a second) and was cut all the same.
    assert!(
        least_bytes >= 3,
        "a slowloris connection sent {least_bytes} bytes"
    );
    assert_eq!(
        idle_closed, 0,
        "idle connections closed before their idle timeout"
    );
    assert!(
        per_idle < PER_IDLE_KIB * KIB,
        "{per_idle} bytes per idle connection"
    );
    after.assert_bounded(
        &before,
        SLOWLORIS_CPU_MS,
        (PER_IDLE_KIB * KIB * 3_000 + 16 * MIB) / KIB,
    );
}

/// Opens `n` TLS connections with `client`, [`OPENING`] handshakes at a time; each with the
/// moment its handshake completed.
async fn open_many(
    n: usize,
    client: MtlsClient,
    addr: SocketAddr,
) -> Vec<(TlsStream<TcpStream>, Instant)> {
    let gate = Arc::new(Semaphore::new(OPENING));
    let mut opening = JoinSet::new();
    for _ in 0..n {
        let (client, gate) = (client.clone(), gate.clone());
        opening.spawn(async move {
            let _turn = gate.acquire().await.unwrap();
            let tls = client.stream(addr).await.unwrap();
            (tls, Instant::now())
        });
    }
    opening.join_all().await
}

/// Reads from an idle connection until the server closes it (the task then finishes).
fn watch_close((mut tls, _): (TlsStream<TcpStream>, Instant)) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0; 1024];
        while let Ok(1..) = tls.read(&mut buf).await {}
    })
}

/// One slowloris connection's end.
#[derive(Debug)]
struct Dribbled {
    /// Bytes of the request head it got to send.
    sent: u64,
    /// From its handshake to the server's close; `None` if never closed.
    lifetime: Option<Duration>,
    closed_at: Option<Instant>,
}

/// Sends a request head that never ends, a byte every [`DRIBBLE`], until the server closes
/// the connection (or far past the time it should have).
async fn dribble(tls: TlsStream<TcpStream>, opened: Instant) -> Dribbled {
    let head = b"GET /v1/slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let (mut read, mut write) = tokio::io::split(tls);
    let (mut sent, mut buf) = (0_u64, [0; 1024]);
    let give_up = opened + HEADER_READ + Duration::from_secs(5);
    let closed = |sent| {
        let now = Instant::now();
        Dribbled {
            sent,
            lifetime: Some(now - opened),
            closed_at: Some(now),
        }
    };
    let mut next = opened;
    while Instant::now() < give_up {
        tokio::select! {
            got = read.read(&mut buf) => {
                if !matches!(got, Ok(1..)) {
                    return closed(sent);
                }
            }
            () = tokio::time::sleep_until(next) => {
                let byte = head.get(sent as usize).copied().unwrap_or(b'a');
                if write.write_all(&[byte]).await.is_err() || write.flush().await.is_err() {
                    return closed(sent);
                }
                sent += 1;
                next += DRIBBLE;
            }
        }
    }
    Dribbled {
        sent,
        lifetime: None,
        closed_at: None,
    }
}

// --- 7. max_connections --------------------------------------------------------------------

const LIMIT: usize = 50;
const ARRIVALS: usize = 500;

/// How long the 500 wait while the limit is held, before the holders let go.
const HELD_FOR: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_clients_wait_in_the_backlog_and_are_all_served_once_it_frees() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&format!("  max_connections: {LIMIT}\n")).await;
    target.need_fds(1_000);
    let probe = Probe::start(&target).await;
    let before = target.usage();
    // The probe's connection and 49 more hold the limit.
    let holder = target.client(WEB, Alpn::H2);
    let mut holders = Vec::new();
    for _ in 1..LIMIT {
        let mut conn = holder.connect(target.inbound).await.unwrap();
        assert_eq!(
            conn.get("/v1/hold-slot").await.unwrap().status,
            StatusCode::OK
        );
        holders.push(conn);
    }
    let active = r#"segward_connections_active{direction="inbound"}"#;
    assert_eq!(target.metric(active).await, LIMIT as f64);
    let most_active = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn(watch_gauge(target.admin, active, most_active.clone()));

    // The arrivals run on a runtime of their own: their 500 client handshakes must not delay
    // the normal client's task.
    let (arrivals, addr) = (target.client(ATTACKER, Alpn::H1), target.inbound);
    let ended = Arc::new(AtomicU64::new(0));
    let ending = ended.clone();
    let attack = attacker(move || async move {
        let mut waiting = JoinSet::new();
        for _ in 0..ARRIVALS {
            let (client, ending) = (arrivals.clone(), ending.clone());
            waiting.spawn(async move {
                let reply = client.get(addr, "/v1/arrival").await;
                ending.fetch_add(1, Ordering::Relaxed);
                (reply.map(|r| r.status), Instant::now())
            });
        }
        waiting.join_all().await
    });
    tokio::time::sleep(HELD_FOR).await;
    let served_while_held = target.workload.hits("/v1/arrival");
    let ended_while_held = ended.load(Ordering::Relaxed);
    let held = target.usage();
    let while_held = probe.lap();

    drop(holders);
    let release = Instant::now();
    let results = attack.await.unwrap();
    let drained = release.elapsed();
    let while_draining = probe.stop().await;
    let after = target.usage();
    watcher.abort();
    let most_active = most_active.load(Ordering::Relaxed);
    let ok = results
        .iter()
        .filter(|(r, _)| r.as_ref().is_ok_and(|s| *s == StatusCode::OK))
        .count();
    let failed: Vec<_> = results.iter().filter(|(r, _)| r.is_err()).collect();
    let last = results.iter().map(|(_, at)| *at).max().unwrap();
    figures(
        "max_connections flood",
        &format!(
            "limit {LIMIT} held; {ARRIVALS} arrivals: served while held {served_while_held}; \
             after release all {ok} served in {:?} (last {:.0} ms after release), {} failed; \
             most connections active at once {most_active}; held: {}, {}; whole: {}, \
             while draining {}",
            drained,
            ms(last - release),
            failed.len(),
            held.describe_since(&before),
            while_held.describe(),
            after.describe_since(&before),
            while_draining.describe()
        ),
    );
    assert_eq!(served_while_held, 0, "served past the limit");
    assert_eq!(
        ended_while_held, 0,
        "arrivals ended (refused?) while the limit was held"
    );
    assert_eq!(ok, ARRIVALS, "failures: {failed:?}");
    assert_eq!(target.workload.hits("/v1/arrival"), ARRIVALS as u64);
    assert!(
        most_active <= LIMIT as u64,
        "{most_active} connections active at once"
    );
    after.assert_bounded(&before, CPU_MS, RSS_KIB);
    while_held.assert_served(HELD_PROBE_MAX.get());
    while_draining.assert_served(DRAINING_MAX.get());
}

/// Scrapes `series` every 20 ms, keeping the largest value in `most`.
async fn watch_gauge(admin: SocketAddr, series: &'static str, most: Arc<AtomicU64>) {
    loop {
        let value = count(&scrape(admin).await, series) as u64;
        most.fetch_max(value, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- 8. handshake flood --------------------------------------------------------------------

const STALLERS: usize = 200;

/// `tls_handshake_timeout` in this scenario.
const HANDSHAKE: Duration = Duration::from_secs(1);

/// How a staller stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// TCP only, not a byte.
    Silent,
    /// A TLS record header announcing 512 bytes, and 10 of them.
    PartialRecord,
    /// A whole ClientHello, then nothing: the server answers (key exchange, signature) and
    /// waits for the client's certificate.
    ClientHello,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_are_cut_at_the_handshake_timeout_and_counted() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&format!(
        "  tls_handshake_timeout: {}s\n",
        HANDSHAKE.as_secs()
    ))
    .await;
    target.need_fds(1_000);
    let series = r#"segward_tls_handshake_failures_total{reason="timeout"}"#;
    let timeouts_before = target.metric(series).await;
    let probe = Probe::start(&target).await;
    let before = target.usage();

    let (hello, addr) = (client_hello_config(&target), target.inbound);
    let attack = attacker(move || async move {
        let mut stallers = JoinSet::new();
        for n in 0..STALLERS {
            let stall = [Stall::Silent, Stall::PartialRecord, Stall::ClientHello][n % 3];
            let hello = hello.clone();
            stallers.spawn(async move { (stall, stall_handshake(addr, stall, hello).await) });
        }
        stallers.join_all().await
    });
    let mut attack = std::pin::pin!(attack);
    // New clients meanwhile: a fresh mTLS handshake and request every 100 ms.
    let fresh = target.client(WEB, Alpn::H1);
    let mut fresh_latency = Vec::new();
    let cut = loop {
        let started = Instant::now();
        let reply = fresh.get(target.inbound, PROBE_PATH).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        fresh_latency.push(started.elapsed());
        tokio::select! {
            cut = &mut attack => break cut.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    let latency = probe.stop().await;
    let after = target.usage();
    let counted = eventually(Duration::from_secs(2), || async {
        target.metric(series).await - timeouts_before >= STALLERS as f64
    })
    .await;
    let timeouts = target.metric(series).await - timeouts_before;

    let mut text = String::new();
    for stall in [Stall::Silent, Stall::PartialRecord, Stall::ClientHello] {
        let times: Vec<Duration> = cut
            .iter()
            .filter(|(s, _)| *s == stall)
            .filter_map(|(_, t)| *t)
            .collect();
        let (min, max) = (times.iter().min(), times.iter().max());
        text += &format!(
            "{stall:?}: {} closed by the server after {:.2}–{:.2} s; ",
            times.len(),
            min.map_or(0.0, Duration::as_secs_f64),
            max.map_or(0.0, Duration::as_secs_f64)
        );
    }
    let fresh_max = fresh_latency.iter().max().copied().unwrap_or_default();
    figures(
        "handshake flood",
        &format!(
            "{STALLERS} stalled handshakes (tls_handshake_timeout {HANDSHAKE:?}): {text}\
             counted as timeouts {timeouts}; {} fresh mTLS clients served meanwhile, slowest \
             {:.1} ms; {}; {}",
            fresh_latency.len(),
            ms(fresh_max),
            after.describe_since(&before),
            latency.describe()
        ),
    );
    for (stall, closed_after) in &cut {
        let closed_after = closed_after.unwrap_or_else(|| panic!("{stall:?} never closed"));
        assert!(
            closed_after >= HANDSHAKE - Duration::from_millis(100)
                && closed_after < HANDSHAKE + Duration::from_millis(1_500),
            "{stall:?} closed after {closed_after:?}"
        );
    }
    assert!(counted, "{timeouts} timeouts counted");
    assert_eq!(timeouts, STALLERS as f64);
    assert!(
        fresh_latency.len() >= 5,
        "{} fresh clients",
        fresh_latency.len()
    );
    assert!(fresh_max < FRESH_MAX.get(), "fresh client {fresh_max:?}");
    after.assert_bounded(&before, CPU_MS, RSS_KIB);
    latency.assert_served(HANDSHAKE_PROBE_MAX.get());
}

/// A TLS 1.3 client config for writing ClientHellos (it never gets to verify anything).
fn client_hello_config(target: &Target) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for pem in target.pki.bundle_pems() {
        use rustls::pki_types::pem::PemObject as _;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let config = ClientConfig::builder_with_provider(segward::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects, stalls as `stall` says, and waits (at most 5 s) for the server to close: how
/// long after connecting it did.
async fn stall_handshake(
    addr: SocketAddr,
    stall: Stall,
    config: Arc<ClientConfig>,
) -> Option<Duration> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let connected = Instant::now();
    match stall {
        Stall::Silent => {}
        Stall::PartialRecord => {
            let mut partial = vec![0x16, 0x03, 0x01, 0x02, 0x00];
            partial.extend_from_slice(&[0x01; 10]);
            tcp.write_all(&partial).await.unwrap();
        }
        Stall::ClientHello => {
            let name = ServerName::try_from("localhost").unwrap();
            let mut conn = ClientConnection::new(config, name).unwrap();
            let mut hello = Vec::new();
            conn.write_tls(&mut hello).unwrap();
            tcp.write_all(&hello).await.unwrap();
        }
    }
    let mut buf = [0; 4096];
    let deadline = connected + Duration::from_secs(5);
    loop {
        match timeout(deadline - Instant::now(), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(connected.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

//! HTTP/2 peers that hold resources rather than flood (issue 18 part 2, scenarios 4 and 5),
//! while a normal client on another connection keeps being served:
//! - **stream window 0** (a slow reader): SETTINGS_INITIAL_WINDOW_SIZE = 0 and no
//!   WINDOW_UPDATE, while asking for 20 answers of 32 MiB each. Asserted: the answers' heads
//!   arrive but not one DATA byte; segward pulls little of the bodies from the backend (it
//!   does not buffer them: the backend is held back) and its peak RSS grows far less than one
//!   body; once the client opens 1 MiB of window on one stream, exactly 1 MiB arrives;
//! - **streams past the limit**: with `h2_max_concurrent_streams: 10`, 10 streams that the
//!   backend never answers, then 2,000 more. Asserted: the server announced 10, exactly 10
//!   requests reach the backend, the others are refused (RST_STREAM REFUSED_STREAM) until h2
//!   gives up on the peer with GOAWAY ENHANCE_YOUR_CALM and closes the connection.

use std::time::Duration;

use crate::frames::{
    self, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM, REFUSED_STREAM, RawH2, Reading,
    SETTINGS_INITIAL_WINDOW_SIZE,
};
use crate::harness::{ATTACKER, Bound, KIB, MIB, Probe, SERIAL, Target, bound, figures};
use crate::support::client::Alpn;
use crate::support::eventually;

/// The normal client's slowest answer during an attack, as issue 18 asks. Measured (maxima
/// over 5-15 runs, 2-core shared machine, load average 2-5): window 0 release 10-46 ms (the
/// whole scenario), debug 17-49 ms (while held) — but on an idle machine, in the full
/// abuse run, debug held-probe maxima of 86, 120, 123, 125 and 172 ms came in 5 of 12 runs
/// (the debug binary reading the backend's 87 MiB into its buffers on the single loop), so
/// the debug bound is 250 ms; streams past the limit release 3-9 ms, debug 5-24 ms.
const WINDOW0_PROBE_MAX: Bound = bound(100, 250);

/// The bound for the streams past the limit (no debug allowance needed).
const PROBE_MAX: Bound = bound(100, 100);

/// CPU segward may spend on one attack.
const CPU_MS: u64 = 5_000;

// --- 4. stream window 0 --------------------------------------------------------------------

/// Answers asked for at once on the window-0 connection...
const BIG_STREAMS: u32 = 20;

/// ...each this long: 640 MiB in all, were segward to buffer them.
const BIG_BYTES: u64 = 32 * MIB;

/// How far segward's peak RSS may rise while the answers are held back: less than one body.
const WINDOW0_RSS_KIB: u64 = 24 * MIB / KIB;

/// The window the client finally opens on its first stream.
const OPENED: u32 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_opens_no_window_holds_the_backend_back_and_segward_buffers_little() {
    let _serial = SERIAL.lock().await;
    let target = Target::start("").await;
    let probe = Probe::start(&target).await;
    let before = target.usage();

    let client = target.client(ATTACKER, Alpn::H2);
    let no_window = [(SETTINGS_INITIAL_WINDOW_SIZE, 0)];
    let mut conn = RawH2::connect(&client, target.inbound, &no_window, Reading::Eager).await;
    let block = frames::request_block(&format!("/v1/big?bytes={BIG_BYTES}"));
    let mut requests = Vec::new();
    for n in 0..BIG_STREAMS {
        frames::headers(&mut requests, 1 + 2 * n, END_STREAM | END_HEADERS, &block);
    }
    conn.send(&requests).await.unwrap();
    let heads = conn.until(Duration::from_secs(10), |seen| {
        seen.responses == u64::from(BIG_STREAMS)
    });
    assert!(heads.await, "{:?}", conn.seen());
    let streamed = settled(|| target.workload.streamed()).await;
    let stalled = target.usage();
    let seen = conn.seen();
    // The attack is the hold; what follows only checks that flow control held it.
    let latency = probe.stop().await;

    // The client opens 1 MiB on stream 1 (and on the connection): that much, no more, comes.
    let mut window = Vec::new();
    frames::window_update(&mut window, 0, OPENED);
    frames::window_update(&mut window, 1, OPENED);
    conn.send(&window).await.unwrap();
    let opened = u64::from(OPENED);
    let arrived = conn.until(Duration::from_secs(10), |seen| seen.data_bytes >= opened);
    assert!(arrived.await, "{:?}", conn.seen());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data_after_opening = conn.seen().data_bytes;

    let after = target.usage();
    let hits = target.workload.hits("/v1/big");
    figures(
        "stream window 0",
        &format!(
            "{BIG_STREAMS} answers of {} MiB asked for ({} MiB in all), {} heads and {} DATA \
             bytes received at window 0; the backend got {hits} requests and was let to \
             produce {} KiB before backpressure held it; while held: {}; after opening {} KiB \
             on one stream: {} KiB arrived; over the whole scenario: {}; while held: {}",
            BIG_BYTES / MIB,
            u64::from(BIG_STREAMS) * BIG_BYTES / MIB,
            seen.responses,
            seen.data_bytes,
            streamed / KIB,
            stalled.describe_since(&before),
            opened / KIB,
            data_after_opening / KIB,
            after.describe_since(&before),
            latency.describe()
        ),
    );
    assert_eq!(seen.ok_responses, u64::from(BIG_STREAMS), "{seen:?}");
    assert_eq!(seen.data_bytes, 0, "DATA sent into a zero window");
    assert_eq!(hits, u64::from(BIG_STREAMS));
    let total = u64::from(BIG_STREAMS) * BIG_BYTES;
    assert!(
        streamed < total / 4,
        "segward pulled {} MiB of {} MiB from the backend for a reader that read nothing",
        streamed / MIB,
        total / MIB
    );
    assert_eq!(data_after_opening, opened, "the window opened, no more");
    stalled.assert_bounded(&before, CPU_MS, WINDOW0_RSS_KIB);
    after.assert_bounded(&before, CPU_MS, WINDOW0_RSS_KIB);
    latency.assert_served(WINDOW0_PROBE_MAX.get());
}

/// `read()` once it has not changed for half a second (at most 10 s).
async fn settled(read: impl Fn() -> u64) -> u64 {
    let mut last = read();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("still moving after 10 s: {last}");
}

// --- 5. streams past the limit -------------------------------------------------------------

/// The configured `h2_max_concurrent_streams`.
const MAX_STREAMS: u32 = 10;

/// Streams opened past the limit.
const EXTRA_STREAMS: u32 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limit_are_refused_and_never_reach_the_backend() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&format!("  h2_max_concurrent_streams: {MAX_STREAMS}\n")).await;
    let probe = Probe::start(&target).await;
    let before = target.usage();

    let client = target.client(ATTACKER, Alpn::H2);
    let mut conn = RawH2::connect(&client, target.inbound, &[], Reading::Eager).await;
    let announced = conn.until(Duration::from_secs(5), |seen| {
        seen.max_concurrent_streams.is_some()
    });
    assert!(announced.await);
    let block = frames::request_block("/v1/hold");
    let open = |from: u32, count: u32| {
        let mut batch = Vec::new();
        for n in from..from + count {
            frames::headers(&mut batch, 1 + 2 * n, END_STREAM | END_HEADERS, &block);
        }
        batch
    };
    // The limit's worth, each held by the backend...
    conn.send(&open(0, MAX_STREAMS)).await.unwrap();
    let workload = &target.workload;
    let held = eventually(Duration::from_secs(5), || async {
        workload.hits("/v1/hold") == u64::from(MAX_STREAMS)
    });
    assert!(held.await, "{} held", workload.hits("/v1/hold"));
    // ...then far more, all at once.
    let extra = open(MAX_STREAMS, EXTRA_STREAMS);
    let _ = conn.send(&extra).await;
    let done = conn.until(Duration::from_secs(10), |seen| {
        seen.closed_at.is_some() || seen.resets_with(REFUSED_STREAM) == u64::from(EXTRA_STREAMS)
    });
    assert!(done.await, "{:?}", conn.seen());
    // Refused streams must not reach the backend late either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = conn.seen();

    let latency = probe.stop().await;
    let after = target.usage();
    let hits = workload.hits("/v1/hold");
    figures(
        "streams past the limit",
        &format!(
            "limit announced {:?}; {MAX_STREAMS} held + {EXTRA_STREAMS} more opened: backend \
             hits {hits}, REFUSED_STREAM {}, GOAWAY {:?}, closed {}; {}; {}",
            seen.max_concurrent_streams,
            seen.resets_with(REFUSED_STREAM),
            seen.goaway
                .map(|g| (frames::code_name(g.code), g.last_stream)),
            seen.closed_at.is_some(),
            after.describe_since(&before),
            latency.describe()
        ),
    );
    assert_eq!(seen.max_concurrent_streams, Some(MAX_STREAMS));
    assert_eq!(
        hits,
        u64::from(MAX_STREAMS),
        "only the limit's worth reaches the backend"
    );
    let refused = seen.resets_with(REFUSED_STREAM);
    assert!(refused >= 1000, "{seen:?}");
    // Every extra stream refused, or h2 gave up on the peer (and hung up) first.
    let gave_up = seen.goaway_code() == Some(ENHANCE_YOUR_CALM) && seen.closed_at.is_some();
    assert!(refused == u64::from(EXTRA_STREAMS) || gave_up, "{seen:?}");
    after.assert_bounded(&before, CPU_MS, 16 * MIB / KIB);
    latency.assert_served(PROBE_MAX.get());
}

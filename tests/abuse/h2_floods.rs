//! HTTP/2 floods from an authenticated, allowed peer (issue 18 part 2, scenarios 1–3), each
//! while a normal client on another connection keeps being served:
//! - **rapid reset** (CVE-2023-44487): HEADERS then RST_STREAM, 20,000+ streams in a tight
//!   loop (100 pairs a write) for 3 s, reconnecting whenever the server hangs up. Asserted:
//!   every connection is closed, (nearly) each after GOAWAY ENHANCE_YOUR_CALM (h2's
//!   pending-accept reset limit, 20), having processed fewer than 100 streams, and no stream
//!   past those reached the backend. Then a paced variant, each RST_STREAM a millisecond
//!   after its HEADERS (the stream accepted and forwarded by then), on 4 connections for 2 s:
//!   its figures show what gets through, asserted bounded like the rest;
//! - **CONTINUATION flood**: HEADERS without END_HEADERS, then CONTINUATION frames without
//!   end, on many connections at once. Asserted: each connection gets a GOAWAY and is closed
//!   long before the flood is written, nothing reaches the backend, memory stays flat;
//! - **SETTINGS and PING floods**: frames that each demand an ACK, first without reading the
//!   ACKs (the server must stop reading rather than queue them), then reading them slowly.
//!   Asserted: the writer stalls (the server stopped reading, it neither queued the ACKs nor
//!   hung up) well before the flood is written, memory stays flat, and the normal client's
//!   slowest answer stays under 100 ms even in a debug build — it did not before reads were
//!   charged to the task's budget by the byte (`src/proxy/fair.rs`): the flood's connection
//!   held the event loop 100-300 ms at a time.
//!
//! Every scenario also bounds segward's CPU time and peak RSS over the attack, and the normal
//! client's slowest answer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use tokio::task::JoinSet;

use crate::frames::{
    self, Blocked, CANCEL, CONTINUATION, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM, MAX_FRAME,
    NO_ERROR, RawH2, Reading, SETTINGS_HEADER_TABLE_SIZE, SETTINGS_INITIAL_WINDOW_SIZE, Seen,
};
use crate::harness::{
    ATTACKER, Bound, KIB, MIB, Probe, SERIAL, Target, Usage, attacker, bound, figures,
};
use crate::support::client::{Alpn, MtlsClient};

// The normal client's slowest answer during each attack: 100 ms as issue 18 asks, except
// where a debug build (cargo test's default) on this 2-core shared machine (load average 2-5)
// measured more; figures are the maxima over 5-15 runs each.

/// Tight rapid reset: release 7-11 ms, debug 9-25 ms.
const RESET_PROBE_MAX: Bound = bound(100, 100);

/// Paced rapid reset: each of its streams is forwarded, then cancelled, so the backend sees a
/// new connection for most of them. Release 2-4 ms, debug 24-134 ms.
const PACED_PROBE_MAX: Bound = bound(100, 250);

/// CONTINUATION flood: each attacker reconnects at once, so this is also a flood of mTLS
/// handshakes (about 70 a second, about 1 ms of CPU each in a debug build). Release 7-9 ms,
/// debug 24-86 ms.
const CONTINUATION_PROBE_MAX: Bound = bound(100, 200);

/// SETTINGS and PING floods: release 4-5 ms, debug 17-64 ms (74-330 ms before reads were
/// charged by the byte, `src/proxy/fair.rs`).
const ACK_FLOOD_PROBE_MAX: Bound = bound(100, 100);

/// CPU segward may spend on one attack.
const CPU_MS: u64 = 5_000;

/// How far segward's peak RSS may rise over one attack.
const RSS_KIB: u64 = 16 * MIB / KIB;

/// A write the server does not take within this has stalled: it stopped reading.
const STALL: Duration = Duration::from_secs(1);

/// How long a server that sent GOAWAY may take to close the connection.
const CLOSE: Duration = Duration::from_secs(5);

// --- 1. rapid reset --------------------------------------------------------------------------

/// Streams the tight-loop attacker opens and cancels at least, over all its connections...
const RESET_STREAMS: u64 = 20_000;

/// ...and for at least this long, reconnecting whenever the server hangs up.
const RESET_FOR: Duration = Duration::from_secs(3);

/// Streams per write in the tight loop: HEADERS + RST_STREAM pairs back to back.
const RESET_BATCH: u64 = 100;

/// Connections of the paced attacker, each resetting a stream a millisecond after opening it
/// (so that the server has accepted it and its request is under way: no pending-accept
/// reset counts it).
const PACED_CONNS: usize = 4;

/// How long the paced attacker runs.
const PACED_FOR: Duration = Duration::from_secs(2);

const ATTACK_PATH: &str = "/v1/attack";
const PACED_PATH: &str = "/v1/paced";

/// Two attackers: the tight loop of CVE-2023-44487 (thousands of HEADERS + RST_STREAM pairs
/// in each write), then a paced one whose resets come after the server accepted the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_ends_each_connection_with_goaway_and_few_streams_reach_the_backend() {
    let _serial = SERIAL.lock().await;
    let target = Target::start("").await;
    let probe = Probe::start(&target).await;
    let before = target.usage();

    let (client, addr) = (target.client(ATTACKER, Alpn::H2), target.inbound);
    let attack = attacker(move || async move { rapid_reset(&client, addr).await });
    let tight = attack.await.unwrap();

    let latency = probe.stop().await;
    let after = target.usage();
    let hits = target.workload.hits(ATTACK_PATH);
    figures(
        "rapid reset (tight loop)",
        &format!(
            "{} streams on {} connections in {:?}, {} ended by GOAWAY ENHANCE_YOUR_CALM, {} \
             closed; the servers' GOAWAYs name {} streams processed; backend hits {hits}; {}; {}",
            tight.streams,
            tight.connections,
            tight.took,
            tight.calmed,
            tight.closed,
            tight.processed,
            after.describe_since(&before),
            latency.describe()
        ),
    );
    // Every connection the server cut, after processing a few dozen streams at most; none
    // past those reached the backend. (A GOAWAY may be lost to the TCP reset of a socket
    // closed with unread data, hence 90 % for the code.)
    assert!(tight.streams >= RESET_STREAMS);
    assert_eq!(tight.closed, tight.connections, "{tight:?}");
    assert!(tight.calmed * 10 >= tight.connections * 9, "{tight:?}");
    assert!(tight.processed < 100 * tight.connections, "{tight:?}");
    assert!(
        hits <= tight.processed,
        "{hits} reset streams reached the backend"
    );
    after.assert_bounded(&before, CPU_MS, RSS_KIB);
    latency.assert_served(RESET_PROBE_MAX.get());

    // Paced: each stream is accepted (and forwarded) before its reset arrives.
    let probe = Probe::start(&target).await;
    let (before, backend_conns) = (target.usage(), target.workload.connections());
    let (client, addr) = (target.client(ATTACKER, Alpn::H2), target.inbound);
    let attack = attacker(move || async move {
        let mut attackers = JoinSet::new();
        for _ in 0..PACED_CONNS {
            let client = client.clone();
            attackers.spawn(async move { paced_reset(&client, addr).await });
        }
        attackers.join_all().await
    });
    let paced = attack.await.unwrap();
    let latency = probe.stop().await;
    let after = target.usage();
    let hits = target.workload.hits(PACED_PATH);
    let streams: u64 = paced.iter().map(|(streams, _)| streams).sum();
    let codes: Vec<_> = paced
        .iter()
        .map(|(_, seen)| seen.goaway_code().map_or("none", frames::code_name))
        .collect();
    let backend_conns = target.workload.connections() - backend_conns;
    figures(
        "rapid reset (paced, 1 ms between HEADERS and RST_STREAM)",
        &format!(
            "{streams} streams on {PACED_CONNS} connections in {PACED_FOR:?}; GOAWAY codes \
             {codes:?}; backend hits {hits} over {backend_conns} new backend connections; {}; {}",
            after.describe_since(&before),
            latency.describe()
        ),
    );
    // Each stream at most once at the backend, on at most one new connection of its own.
    assert!(hits <= streams, "{hits} hits for {streams} streams");
    assert!(
        backend_conns <= streams + 1,
        "{backend_conns} backend connections"
    );
    after.assert_bounded(&before, CPU_MS, RSS_KIB);
    latency.assert_served(PACED_PROBE_MAX.get());
}

#[derive(Debug, Default)]
struct ResetOutcome {
    connections: u64,
    streams: u64,
    took: Duration,
    /// Connections the server ended with GOAWAY ENHANCE_YOUR_CALM.
    calmed: u64,
    /// Connections the server closed.
    closed: u64,
    /// The streams the servers' GOAWAYs said were processed, summed.
    processed: u64,
}

async fn rapid_reset(client: &MtlsClient, addr: SocketAddr) -> ResetOutcome {
    let block = frames::request_block(ATTACK_PATH);
    let mut outcome = ResetOutcome::default();
    let started = Instant::now();
    while outcome.streams < RESET_STREAMS || started.elapsed() < RESET_FOR {
        let mut conn = RawH2::connect(client, addr, &[], Reading::Eager).await;
        outcome.connections += 1;
        let mut id = 1;
        while conn.seen().goaway.is_none() {
            let mut batch = Vec::new();
            for _ in 0..RESET_BATCH {
                frames::headers(&mut batch, id, END_STREAM | END_HEADERS, &block);
                frames::rst_stream(&mut batch, id, CANCEL);
                id += 2;
            }
            if conn.send_within(&batch, STALL).await.is_err() {
                break;
            }
            outcome.streams += RESET_BATCH;
        }
        if conn.closed_within(CLOSE).await {
            outcome.closed += 1;
        }
        let seen = conn.seen();
        if seen.goaway_code() == Some(ENHANCE_YOUR_CALM) {
            outcome.calmed += 1;
        }
        outcome.processed += seen
            .goaway
            .map_or(0, |g| u64::from(g.last_stream.div_ceil(2)));
    }
    outcome.took = started.elapsed();
    outcome
}

/// One paced attacker connection: streams opened and reset, and what the server sent.
async fn paced_reset(client: &MtlsClient, addr: SocketAddr) -> (u64, Seen) {
    let block = frames::request_block(PACED_PATH);
    let mut conn = RawH2::connect(client, addr, &[], Reading::Eager).await;
    let (started, mut id, mut streams) = (Instant::now(), 1, 0);
    while started.elapsed() < PACED_FOR && conn.seen().goaway.is_none() {
        let mut open = Vec::new();
        frames::headers(&mut open, id, END_STREAM | END_HEADERS, &block);
        if conn.send_within(&open, STALL).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut reset = Vec::new();
        frames::rst_stream(&mut reset, id, CANCEL);
        if conn.send_within(&reset, STALL).await.is_err() {
            break;
        }
        (id, streams) = (id + 2, streams + 1);
    }
    (streams, conn.seen())
}

// --- 2. CONTINUATION flood -------------------------------------------------------------------

/// Attackers flooding at once, half with each [`Endless`] kind of header block; each
/// reconnects and floods again until [`CONTINUATION_FOR`] has passed.
const CONTINUATION_CONNS: usize = 4;

/// How long the attackers keep at it.
const CONTINUATION_FOR: Duration = Duration::from_secs(2);

/// What each connection tries to send as one header block.
const CONTINUATION_BYTES: u64 = 32 * MIB;

const FLOOD_PATH: &str = "/v1/flood";

/// How a header block is made to never end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endless {
    /// One header whose value is announced as 1 GiB long, its bytes spread over the frames.
    Value,
    /// Complete 110-byte headers, about 148 to a frame, forever (the header list grows).
    Headers,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_with_goaway_and_nothing_reaches_the_backend() {
    let _serial = SERIAL.lock().await;
    let target = Target::start("").await;
    let probe = Probe::start(&target).await;
    let before = target.usage();

    let (client, addr) = (target.client(ATTACKER, Alpn::H2), target.inbound);
    let attack = attacker(move || async move {
        let mut floods = JoinSet::new();
        for n in 0..CONTINUATION_CONNS {
            let client = client.clone();
            let kind = [Endless::Value, Endless::Headers][n % 2];
            floods.spawn(async move { keep_flooding(&client, addr, kind).await });
        }
        floods
            .join_all()
            .await
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    });
    let outcomes = attack.await.unwrap();

    let latency = probe.stop().await;
    let after = target.usage();
    let hits = target.workload.hits(FLOOD_PATH);
    let mut text = format!("{} connections in {CONTINUATION_FOR:?}", outcomes.len());
    for kind in [Endless::Value, Endless::Headers] {
        let of_kind = outcomes.iter().filter(|o| o.kind == kind);
        let most = of_kind.clone().map(|o| o.written).max().unwrap_or(0);
        let mut codes = std::collections::BTreeMap::<&str, u64>::new();
        for outcome in of_kind {
            let code = outcome.seen.goaway_code().map_or("none", frames::code_name);
            *codes.entry(code).or_default() += 1;
        }
        text += &format!(
            "; endless {kind:?}: at most {} KiB of a {} MiB block taken before the cut, \
             GOAWAY codes {codes:?}",
            most / KIB,
            CONTINUATION_BYTES / MIB
        );
    }
    figures(
        "continuation flood",
        &format!(
            "{text}; backend hits {hits}; {}; {}",
            after.describe_since(&before),
            latency.describe()
        ),
    );
    for outcome in &outcomes {
        let seen = &outcome.seen;
        assert!(
            seen.goaway_code().is_some_and(|c| c != NO_ERROR),
            "{outcome:?}"
        );
        assert!(seen.closed_at.is_some(), "still open: {outcome:?}");
        assert!(outcome.written < CONTINUATION_BYTES / 4, "{outcome:?}");
    }
    assert_eq!(hits, 0);
    after.assert_bounded(&before, CPU_MS, RSS_KIB);
    latency.assert_served(CONTINUATION_PROBE_MAX.get());
}

/// One connection's flood: how many bytes of the header block the server took before the
/// write failed or stalled, and what it sent.
#[derive(Debug)]
struct Flooded {
    kind: Endless,
    written: u64,
    seen: Seen,
}

/// Floods on one connection after another until [`CONTINUATION_FOR`] has passed.
async fn keep_flooding(client: &MtlsClient, addr: SocketAddr, kind: Endless) -> Vec<Flooded> {
    let (started, mut outcomes) = (Instant::now(), Vec::new());
    while started.elapsed() < CONTINUATION_FOR {
        outcomes.push(continuation_flood(client, addr, kind).await);
    }
    outcomes
}

async fn continuation_flood(client: &MtlsClient, addr: SocketAddr, kind: Endless) -> Flooded {
    let mut conn = RawH2::connect(client, addr, &[], Reading::Eager).await;
    let mut block = frames::request_block(FLOOD_PATH);
    let mut payload = Vec::with_capacity(MAX_FRAME);
    match kind {
        Endless::Value => {
            // The last header, `x-flood`, a literal (new name, no indexing) whose value is
            // announced as 1 GiB long: the block can only end after a gigabyte.
            block.extend_from_slice(&[0x00, 7]);
            block.extend_from_slice(b"x-flood");
            block.extend_from_slice(&hpack_length(1 << 30));
            payload.resize(MAX_FRAME, b'a');
        }
        Endless::Headers => {
            let mut header = vec![0x00, 7];
            header.extend_from_slice(b"x-flood");
            header.push(100);
            header.resize(header.len() + 100, b'a');
            while payload.len() + header.len() <= MAX_FRAME {
                payload.extend_from_slice(&header);
            }
        }
    }
    let mut start = Vec::new();
    frames::headers(&mut start, 1, END_STREAM, &block);
    let mut written = 0;
    if conn.send(&start).await.is_ok() {
        let mut batch = Vec::new();
        for _ in 0..16 {
            frames::frame(&mut batch, CONTINUATION, 0, 1, &payload);
        }
        while written < CONTINUATION_BYTES && conn.send_within(&batch, STALL).await.is_ok() {
            written += batch.len() as u64;
        }
    }
    conn.closed_within(CLOSE).await;
    Flooded {
        kind,
        written,
        seen: conn.seen(),
    }
}

/// An HPACK string length with the Huffman bit clear (RFC 7541 §5.1, 7-bit prefix).
fn hpack_length(mut n: u64) -> Vec<u8> {
    if n < 127 {
        return vec![n as u8];
    }
    let mut out = vec![0x7f];
    n -= 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
    out
}

// --- 3. SETTINGS and PING floods -------------------------------------------------------------

/// Frames the flooder tries to get in while it reads nothing.
const UNREAD_FRAMES: u64 = 4_000_000;

/// Frames per write.
const FLOOD_BATCH: u64 = 4096;

/// How long the flooder keeps writing once it reads the ACKs slowly.
const SLOW_READ_FOR: Duration = Duration::from_secs(2);

/// The slow reader: 4 KiB every 10 ms (400 KB/s).
const SLOW: Reading = Reading::Slow {
    chunk: 4096,
    every: Duration::from_millis(10),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_stalls_while_its_acks_are_unread_and_memory_stays_flat() {
    let mut frame = Vec::new();
    frames::settings(
        &mut frame,
        &[
            (SETTINGS_HEADER_TABLE_SIZE, 4096),
            (SETTINGS_INITIAL_WINDOW_SIZE, 65_535),
        ],
    );
    ack_flood("settings flood", frame, |seen| seen.settings_acks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_stalls_while_its_acks_are_unread_and_memory_stays_flat() {
    let mut frame = Vec::new();
    frames::ping(&mut frame, 0x5E6_3A4D);
    ack_flood("ping flood", frame, |seen| seen.ping_acks).await;
}

/// The flood of `frame` (which the server must ACK): unread, then read slowly.
async fn ack_flood(scenario: &'static str, frame: Vec<u8>, acks: fn(&Seen) -> u64) {
    let _serial = SERIAL.lock().await;
    let target = Target::start("").await;
    let probe = Probe::start(&target).await;
    let before = target.usage();

    let (client, addr, pid) = (
        target.client(ATTACKER, Alpn::H2),
        target.inbound,
        target.segward.pid(),
    );
    let attack = attacker(move || async move { flood(&client, addr, &frame, pid).await });
    let outcome = attack.await.unwrap();

    let latency = probe.stop().await;
    let after = target.usage();
    figures(
        scenario,
        &format!(
            "unread: the writer stalled after {} frames ({} KiB) of {UNREAD_FRAMES}, peak RSS \
             +{} KiB then; read slowly for {SLOW_READ_FOR:?}: {} more frames, {} ACKs read \
             in all, closed by the server: {}; {}; {}",
            outcome.unread,
            outcome.unread * outcome.frame_len / KIB,
            outcome.stalled.peak_growth_since(&before),
            outcome.slow,
            acks(&outcome.seen),
            outcome.seen.closed_at.is_some(),
            after.describe_since(&before),
            latency.describe()
        ),
    );
    // The server stopped reading once its ACKs could not leave (it neither queued them
    // without end nor hung up), after the socket buffers' worth.
    assert_eq!(outcome.ended, Some(Blocked::Stalled), "{outcome:?}");
    assert!(
        outcome.unread < UNREAD_FRAMES / 2,
        "the server took {} unacknowledged frames",
        outcome.unread
    );
    assert!(acks(&outcome.seen) > 0, "{:?}", outcome.seen);
    after.assert_bounded(&before, CPU_MS, RSS_KIB);
    latency.assert_served(ACK_FLOOD_PROBE_MAX.get());
}

#[derive(Debug)]
struct FloodOutcome {
    frame_len: u64,
    /// Why the unread phase ended: `None` if the server took all [`UNREAD_FRAMES`].
    ended: Option<Blocked>,
    /// Frames taken while the ACKs went unread, before the writer stalled.
    unread: u64,
    /// segward's resources once the writer stalled.
    stalled: Usage,
    /// Frames taken while reading slowly.
    slow: u64,
    seen: Seen,
}

async fn flood(client: &MtlsClient, addr: SocketAddr, frame: &[u8], pid: u32) -> FloodOutcome {
    let mut conn = RawH2::connect(client, addr, &[], Reading::Paused).await;
    let mut writer = Repeating::new(frame);
    let limit = UNREAD_FRAMES * writer.frame_len;
    let ended = loop {
        if writer.taken >= limit {
            break None;
        }
        if let Err(blocked) = writer.push(&mut conn).await {
            break Some(blocked);
        }
    };
    let unread = writer.frames();
    let stalled = Usage::of(pid);
    conn.read(SLOW);
    let until = tokio::time::Instant::now() + SLOW_READ_FOR;
    while tokio::time::Instant::now() < until && writer.push(&mut conn).await.is_ok() {}
    FloodOutcome {
        frame_len: writer.frame_len,
        ended,
        unread,
        stalled,
        slow: writer.frames() - unread,
        seen: conn.seen(),
    }
}

/// An endless repetition of one frame, written as fast as the server takes it, frames kept
/// whole across stalls.
struct Repeating {
    batch: Vec<u8>,
    frame_len: u64,
    /// Bytes the server took.
    taken: u64,
}

impl Repeating {
    fn new(frame: &[u8]) -> Repeating {
        Repeating {
            batch: frame.repeat(FLOOD_BATCH as usize),
            frame_len: frame.len() as u64,
            taken: 0,
        }
    }

    /// One write, from where the last one stopped.
    async fn push(&mut self, conn: &mut RawH2) -> Result<(), Blocked> {
        let at = (self.taken % self.batch.len() as u64) as usize;
        let n = conn.write_some(&self.batch[at..], STALL).await?;
        self.taken += n as u64;
        Ok(())
    }

    /// Whole frames taken.
    fn frames(&self) -> u64 {
        self.taken / self.frame_len
    }
}

//! A hostile HTTP/2 client written frame by frame (RFC 9113 §4, §6) over a tokio-rustls
//! connection with ALPN `h2` and a valid client SVID: it sends what the `h2` crate's client
//! refuses to (resets before the server answers, header blocks that never end, SETTINGS and
//! PING by the thousand, streams past the server's limit), and a reader task records what the
//! server sends back ([`Seen`]: GOAWAY, RST_STREAM by error code, responses, DATA, ACKs, EOF).
//! The reader can be paused or slowed, to let the server's answers pile up.
//!
//! Request header blocks use the HPACK static table (RFC 7541 Appendix A): `0x82` `:method
//! GET`, `0x87` `:scheme https`, then `:path` and `:authority` as literals without indexing
//! on their static names (`0x04`, `0x01`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::support::client::MtlsClient;
use crate::support::eventually;

/// Frame types (RFC 9113 §6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Frame flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Error codes (RFC 9113 §7).
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// SETTINGS parameters (RFC 9113 §6.5.2).
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The largest frame payload a peer must accept before it raises SETTINGS_MAX_FRAME_SIZE.
pub const MAX_FRAME: usize = 16_384;

/// Appends one frame to `out`.
pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24, "frame payload of {len} bytes");
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A complete request header block: `GET https://localhost{path}`.
pub fn request_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87];
    literal(&mut block, 0x04, path.as_bytes());
    literal(&mut block, 0x01, b"localhost");
    block
}

/// A literal header field without indexing, its name the static table's entry `index`.
fn literal(block: &mut Vec<u8>, index: u8, value: &[u8]) {
    assert!(index < 15 && value.len() < 127, "short literals only");
    block.push(index);
    block.push(u8::try_from(value.len()).unwrap());
    block.extend_from_slice(value);
}

/// HEADERS on `stream` with `flags` carrying `block`.
pub fn headers(out: &mut Vec<u8>, stream: u32, flags: u8, block: &[u8]) {
    frame(out, HEADERS, flags, stream, block);
}

/// RST_STREAM on `stream` with error `code`.
pub fn rst_stream(out: &mut Vec<u8>, stream: u32, code: u32) {
    frame(out, RST_STREAM, 0, stream, &code.to_be_bytes());
}

/// SETTINGS (not an ACK) with `params`.
pub fn settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    let mut payload = Vec::with_capacity(params.len() * 6);
    for (id, value) in params {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(out, SETTINGS, 0, 0, &payload);
}

/// PING (not an ACK) carrying `data`.
pub fn ping(out: &mut Vec<u8>, data: u64) {
    frame(out, PING, 0, 0, &data.to_be_bytes());
}

/// WINDOW_UPDATE on `stream` (0: the connection) by `increment`.
pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    frame(out, WINDOW_UPDATE, 0, stream, &increment.to_be_bytes());
}

/// GOAWAY as the server sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoAway {
    /// The last stream the server says it processed.
    pub last_stream: u32,
    /// Its error code.
    pub code: u32,
}

/// What the server sent on one connection, so far.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Frames read.
    pub frames: u64,
    /// The first GOAWAY.
    pub goaway: Option<GoAway>,
    /// RST_STREAM frames by error code.
    pub resets: BTreeMap<u32, u64>,
    /// HEADERS frames (responses).
    pub responses: u64,
    /// Responses whose first header is `:status 200` from the static table (`0x88`).
    pub ok_responses: u64,
    /// DATA payload bytes.
    pub data_bytes: u64,
    /// PING ACKs.
    pub ping_acks: u64,
    /// SETTINGS ACKs.
    pub settings_acks: u64,
    /// SETTINGS_MAX_CONCURRENT_STREAMS as the server announced it.
    pub max_concurrent_streams: Option<u32>,
    /// When the server closed the connection (EOF or a read error).
    pub closed_at: Option<Instant>,
}

impl Seen {
    /// RST_STREAM frames with `code`.
    pub fn resets_with(&self, code: u32) -> u64 {
        self.resets.get(&code).copied().unwrap_or(0)
    }

    /// The GOAWAY's error code, if one came.
    pub fn goaway_code(&self) -> Option<u32> {
        self.goaway.map(|g| g.code)
    }
}

/// How the reader task reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// As fast as the server sends.
    Eager,
    /// Not at all, until changed: the server's answers back up into its buffers.
    Paused,
    /// `chunk` bytes, then a pause of `every`: a slow reader.
    Slow { chunk: usize, every: Duration },
}

/// One hostile HTTP/2 connection: the write half for the attack, a task reading the rest.
pub struct RawH2 {
    writer: WriteHalf<TlsStream<TcpStream>>,
    seen: Arc<Mutex<Seen>>,
    reading: watch::Sender<Reading>,
    reader: JoinHandle<()>,
}

/// Why a write did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// The server stopped reading: the write did not finish in time.
    Stalled,
    /// The connection is gone (reset or closed by the server).
    Closed,
}

impl RawH2 {
    /// TLS with ALPN h2 (`client` must offer only h2), the preface and a SETTINGS frame with
    /// `params`; the reader starts in `reading` mode.
    pub async fn connect(
        client: &MtlsClient,
        addr: SocketAddr,
        params: &[(u16, u32)],
        reading: Reading,
    ) -> RawH2 {
        let tls = client.stream(addr).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (read, writer) = tokio::io::split(tls);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (mode, modes) = watch::channel(reading);
        let reader = tokio::spawn(read_frames(read, seen.clone(), modes));
        let mut conn = RawH2 {
            writer,
            seen,
            reading: mode,
            reader,
        };
        let mut hello = PREFACE.to_vec();
        settings(&mut hello, params);
        conn.send(&hello).await.unwrap();
        conn
    }

    /// Writes `bytes` and flushes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Writes `bytes` unless that takes longer than `limit` (the server stopped reading) or
    /// fails (the connection is gone).
    pub async fn send_within(&mut self, bytes: &[u8], limit: Duration) -> Result<(), Blocked> {
        match tokio::time::timeout(limit, self.send(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Blocked::Closed),
            Err(_) => Err(Blocked::Stalled),
        }
    }

    /// Writes some of `bytes` (cancel-safe: a stall writes nothing, so frames stay whole);
    /// how many were taken, unless nothing was within `limit` (the server stopped reading) or
    /// the connection is gone.
    pub async fn write_some(&mut self, bytes: &[u8], limit: Duration) -> Result<usize, Blocked> {
        match tokio::time::timeout(limit, self.writer.write(bytes)).await {
            Ok(Ok(0) | Err(_)) => Err(Blocked::Closed),
            Ok(Ok(n)) => Ok(n),
            Err(_) => Err(Blocked::Stalled),
        }
    }

    /// What the server sent so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Changes how the reader reads.
    pub fn read(&self, reading: Reading) {
        self.reading.send_replace(reading);
    }

    /// Waits up to `limit` for what the server sent to satisfy `check`.
    pub async fn until(&self, limit: Duration, check: impl Fn(&Seen) -> bool) -> bool {
        eventually(limit, || {
            let done = check(&self.seen.lock().unwrap());
            async move { done }
        })
        .await
    }

    /// Waits up to `limit` for the server to close the connection.
    pub async fn closed_within(&self, limit: Duration) -> bool {
        self.until(limit, |seen| seen.closed_at.is_some()).await
    }
}

impl Drop for RawH2 {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The reader task: frames parsed into `seen` until EOF or an error, at the pace `modes` says.
async fn read_frames(
    mut read: ReadHalf<TlsStream<TcpStream>>,
    seen: Arc<Mutex<Seen>>,
    mut modes: watch::Receiver<Reading>,
) {
    let (mut pending, mut chunk) = (Vec::new(), vec![0; 64 * 1024]);
    loop {
        let mode = *modes.borrow_and_update();
        let want = match mode {
            Reading::Paused => {
                if modes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Reading::Eager => chunk.len(),
            Reading::Slow { chunk: n, .. } => n.min(chunk.len()),
        };
        match read.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => {
                seen.lock().unwrap().closed_at = Some(Instant::now());
                return;
            }
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                parse(&mut pending, &mut seen.lock().unwrap());
            }
        }
        if let Reading::Slow { every, .. } = mode {
            tokio::time::sleep(every).await;
        }
    }
}

/// Consumes every complete frame at the front of `pending` into `seen`.
fn parse(pending: &mut Vec<u8>, seen: &mut Seen) {
    let mut at = 0;
    while pending.len() - at >= 9 {
        let head = &pending[at..at + 9];
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        if pending.len() - at - 9 < len {
            break;
        }
        let (kind, flags) = (head[3], head[4]);
        let payload = &pending[at + 9..at + 9 + len];
        record(seen, kind, flags, payload);
        at += 9 + len;
    }
    pending.drain(..at);
}

fn record(seen: &mut Seen, kind: u8, flags: u8, payload: &[u8]) {
    let word = |at: usize| {
        payload
            .get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    seen.frames += 1;
    match kind {
        DATA => seen.data_bytes += payload.len() as u64,
        HEADERS => {
            seen.responses += 1;
            // Without PADDED or PRIORITY flags (h2 sets neither) the block starts at once.
            if payload.first() == Some(&0x88) {
                seen.ok_responses += 1;
            }
        }
        RST_STREAM => *seen.resets.entry(word(0)).or_default() += 1,
        SETTINGS if flags & ACK != 0 => seen.settings_acks += 1,
        SETTINGS => {
            for param in payload.chunks_exact(6) {
                if u16::from_be_bytes([param[0], param[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS {
                    let value = u32::from_be_bytes([param[2], param[3], param[4], param[5]]);
                    seen.max_concurrent_streams = Some(value);
                }
            }
        }
        PING if flags & ACK != 0 => seen.ping_acks += 1,
        GOAWAY if seen.goaway.is_none() => {
            seen.goaway = Some(GoAway {
                last_stream: word(0) & 0x7fff_ffff,
                code: word(4),
            });
        }
        _ => {}
    }
}

/// The name of an HTTP/2 error code, for the figures.
pub fn code_name(code: u32) -> &'static str {
    match code {
        NO_ERROR => "NO_ERROR",
        PROTOCOL_ERROR => "PROTOCOL_ERROR",
        REFUSED_STREAM => "REFUSED_STREAM",
        CANCEL => "CANCEL",
        COMPRESSION_ERROR => "COMPRESSION_ERROR",
        ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
        _ => "other",
    }
}

//! TCP workloads for L4 tests, on 127.0.0.1:0, each counting the connections it accepted (so a
//! test can check that a denied connection never reached it):
//! - [`Echo`] echoes every byte back until its client half-closes, then closes its side;
//! - [`Answerer`] reads a seeded [`Pattern`] to EOF checking every byte, and only then answers
//!   with a pattern of its own and closes; it reads nothing while its gate is shut, so a test
//!   can stall it to build backpressure;
//! - [`round_trip`] and [`closed_within`]: what a client checks on a tunnel.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant, timeout};

/// The echo workload; stops when dropped.
pub struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Echo {
    /// Binds 127.0.0.1:0 and starts echoing.
    pub async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Echo {
            addr,
            accepted,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections reached it.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// [`Pattern`]'s block: what one generator step fills and the unit writers write.
const BLOCK: usize = 64 * 1024;

/// A seeded pseudo-random byte stream (splitmix64, one 64 KiB block at a time): cheap to make
/// and the same on both ends, so a reader checks every byte without a copy of what was sent.
pub struct Pattern {
    seed: u64,
    block: Vec<u8>,
    /// Index of the next block to generate.
    next: u64,
    /// How much of `block` has been taken.
    taken: usize,
}

impl Pattern {
    /// The stream of `seed`, from its first byte.
    pub fn new(seed: u64) -> Pattern {
        Pattern {
            seed,
            block: vec![0; BLOCK],
            next: 0,
            taken: BLOCK,
        }
    }

    /// The next bytes of the stream: at most `max`, fewer at a block's end.
    pub fn take(&mut self, max: usize) -> &[u8] {
        if self.taken == BLOCK {
            self.refill();
        }
        let n = max.min(BLOCK - self.taken);
        self.taken += n;
        &self.block[self.taken - n..self.taken]
    }

    /// Whether `data` is what comes next (the stream moves past it either way).
    pub fn matches(&mut self, mut data: &[u8]) -> bool {
        let mut same = true;
        while !data.is_empty() {
            let expected = self.take(data.len());
            let n = expected.len();
            same &= expected == &data[..n];
            data = &data[n..];
        }
        same
    }

    fn refill(&mut self) {
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut state = self.seed ^ self.next.wrapping_mul(GOLDEN).rotate_left(17);
        for word in self.block.chunks_exact_mut(8) {
            state = state.wrapping_add(GOLDEN);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        self.next += 1;
        self.taken = 0;
    }
}

/// What a reader of a [`Pattern`] got: how many bytes, and whether each was the expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes read before EOF.
    pub bytes: u64,
    /// Every byte matched the pattern.
    pub intact: bool,
}

/// Writes the first `len` bytes of the pattern of `seed` to `to`, adding each write to
/// `progress`.
pub async fn write_pattern<W: AsyncWrite + Unpin>(
    to: &mut W,
    seed: u64,
    len: u64,
    progress: &AtomicU64,
) -> io::Result<()> {
    let mut pattern = Pattern::new(seed);
    let mut left = len;
    while left > 0 {
        let chunk = pattern.take(usize::try_from(left).unwrap_or(BLOCK));
        to.write_all(chunk).await?;
        left -= chunk.len() as u64;
        progress.fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
    to.flush().await
}

/// Reads `from` to EOF checking it against the pattern of `seed`, adding each read to
/// `progress`.
pub async fn read_pattern<R: AsyncRead + Unpin>(
    from: &mut R,
    seed: u64,
    progress: &AtomicU64,
) -> io::Result<Received> {
    let mut pattern = Pattern::new(seed);
    let mut buf = vec![0u8; BLOCK];
    let mut received = Received {
        bytes: 0,
        intact: true,
    };
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(received);
        }
        received.bytes += n as u64;
        received.intact &= pattern.matches(&buf[..n]);
        progress.fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// The answering workload; stops when dropped.
pub struct Answerer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    read: Arc<AtomicU64>,
    results: Arc<Mutex<Vec<io::Result<Received>>>>,
    gate: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What an [`Answerer`] expects and says on each connection.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    /// The seed of the pattern it checks what it reads against.
    pub expect: u64,
    /// The seed of the pattern it answers with once it read EOF.
    pub answer: u64,
    /// How many bytes it answers.
    pub answer_len: u64,
}

impl Answerer {
    /// Binds 127.0.0.1:0 and serves each connection by `script`, the gate open.
    pub async fn start(script: Script) -> Answerer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (gate, open) = watch::channel(true);
        let accepted = Arc::new(AtomicUsize::new(0));
        let read = Arc::new(AtomicU64::new(0));
        let results = Arc::new(Mutex::new(Vec::new()));
        let (counter, progress, done) = (accepted.clone(), read.clone(), results.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let (open, progress, done) = (open.clone(), progress.clone(), done.clone());
                tokio::spawn(async move {
                    let result = answer(stream, script, open, &progress).await;
                    done.lock().unwrap().push(result);
                });
            }
        });
        Answerer {
            addr,
            accepted,
            read,
            results,
            gate,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections reached it.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Bytes read so far, over all connections.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::SeqCst)
    }

    /// What each finished connection received (or how it failed), in the order they ended.
    pub fn results(&self) -> Vec<Result<Received, String>> {
        let results = self.results.lock().unwrap();
        let each = results.iter().map(|r| r.as_ref().copied());
        each.map(|r| r.map_err(|e| e.to_string())).collect()
    }

    /// Shuts (`false`) or opens the gate: a connection accepted while it is shut reads
    /// nothing until it opens.
    pub fn set_open(&self, open: bool) {
        self.gate.send_replace(open);
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One [`Answerer`] connection: waits for the gate, reads to EOF, answers, closes.
async fn answer(
    mut stream: tokio::net::TcpStream,
    script: Script,
    mut open: watch::Receiver<bool>,
    progress: &AtomicU64,
) -> io::Result<Received> {
    open.wait_for(|open| *open)
        .await
        .map_err(|_| io::Error::other("the answerer stopped"))?;
    let received = read_pattern(&mut stream, script.expect, progress).await?;
    let written = AtomicU64::new(0);
    write_pattern(&mut stream, script.answer, script.answer_len, &written).await?;
    stream.shutdown().await?;
    Ok(received)
}

/// Writes `bytes`, reads the same number back, and checks they are the same.
pub async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    let mut back = vec![0u8; bytes.len()];
    timeout(Duration::from_secs(10), stream.read_exact(&mut back))
        .await
        .expect("echo within 10 s")
        .unwrap();
    assert_eq!(back, bytes);
}

/// How long until the far side closed (a read gives EOF or an error), if within `within`.
pub async fn closed_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut byte = [0u8; 1];
    match timeout(within, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => Some(started.elapsed()),
        _ => None,
    }
}

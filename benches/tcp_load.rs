//! The load client and the backend of the L4 pair benchmark (benches/pair_tcp.sh,
//! docs/l4.md): plain TCP on loopback, one small runtime each, so that what the proxies
//! in between cost is what the figures show.
//!
//!   tcp_load backend ADDR               # echo / sink server, until killed
//!   tcp_load stream ADDR BYTES          # one long stream: BYTES up, then the count back
//!   tcp_load conns ADDR CLIENTS SECS N  # new connections: connect, N bytes echoed, close
//!
//! Every connection starts with one byte that tells the backend what to do: `S` (sink:
//! read to end of stream, then answer the byte count as 8 bytes little-endian — so the
//! stream's figure counts delivery, and the half-close is carried through the pair) or `E`
//! (echo everything back until end of stream). Each mode prints one `key=value` line.
//! `cargo bench` passes `--bench` to a `harness = false` target; it is ignored.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Write and read size of the stream and the sink: as large as the proxies' own.
const CHUNK: usize = 256 * 1024;
/// A connection of the `conns` mode that takes longer than this counts as an error.
const CONN_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("runtime: {e}")),
    };
    let result = match args.as_slice() {
        ["backend", addr] => runtime.block_on(backend(addr)),
        ["stream", addr, bytes] => match bytes.parse() {
            Ok(bytes) => runtime.block_on(stream(addr, bytes)),
            Err(_) => Err(format!("BYTES `{bytes}` is not a number")),
        },
        ["conns", addr, clients, secs, size] => {
            match (clients.parse(), secs.parse(), size.parse()) {
                (Ok(clients), Ok(secs), Ok(size)) => {
                    runtime.block_on(conns(addr, clients, Duration::from_secs_f64(secs), size))
                }
                _ => Err("CLIENTS, SECS and N are numbers".to_owned()),
            }
        }
        _ => Err(
            "usage: tcp_load backend ADDR | stream ADDR BYTES | conns ADDR CLIENTS SECS N"
                .to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("tcp_load: {message}");
    ExitCode::FAILURE
}

/// Serves every connection (sink or echo) until the process is stopped.
async fn backend(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors or a reset before accept: go on serving the others.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        tokio::spawn(async move {
            let _ = serve(tcp).await;
        });
    }
}

async fn serve(mut tcp: TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    let mut buf = vec![0u8; CHUNK];
    let n = tcp.read(&mut buf).await?;
    let Some((&kind, rest)) = buf[..n].split_first() else {
        return Ok(());
    };
    match kind {
        b'S' => {
            let mut count = rest.len() as u64;
            loop {
                let n = tcp.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                count += n as u64;
            }
            tcp.write_all(&count.to_le_bytes()).await?;
            tcp.shutdown().await
        }
        b'E' => {
            if !rest.is_empty() {
                let rest = rest.to_vec();
                tcp.write_all(&rest).await?;
            }
            loop {
                let n = tcp.read(&mut buf).await?;
                if n == 0 {
                    return tcp.shutdown().await;
                }
                tcp.write_all(&buf[..n]).await?;
            }
        }
        _ => Ok(()),
    }
}

/// One connection, `bytes` written in big chunks, write side shut, then the backend's count
/// read back: the time is until the last byte is known delivered.
async fn stream(addr: &str, bytes: u64) -> Result<(), String> {
    let chunk = vec![0x5au8; CHUNK];
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("stream: {e}");
    tcp.set_nodelay(true).map_err(io)?;
    tcp.write_all(b"S").await.map_err(io)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        tcp.write_all(&chunk[..n]).await.map_err(io)?;
        left -= n as u64;
    }
    tcp.shutdown().await.map_err(io)?;
    let mut count = [0u8; 8];
    tcp.read_exact(&mut count).await.map_err(io)?;
    let secs = started.elapsed().as_secs_f64();
    let count = u64::from_le_bytes(count);
    if count != bytes {
        return Err(format!("backend received {count} bytes of {bytes}"));
    }
    println!(
        "bytes={bytes} secs={secs:.3} mbps={:.1}",
        bytes as f64 / secs / 1e6
    );
    Ok(())
}

/// `clients` loops, each: connect, send `E` and `size` bytes, read them back, close; new
/// connections are started until `duration` has passed, the ones under way are finished.
async fn conns(addr: &str, clients: usize, duration: Duration, size: usize) -> Result<(), String> {
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut message = vec![0x61u8; size + 1];
            message[0] = b'E';
            let mut back = vec![0u8; size];
            let (mut ok, mut err, mut latencies) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let one = tokio::time::timeout(CONN_TIMEOUT, async {
                    let mut tcp = TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    tcp.write_all(&message).await?;
                    tcp.read_exact(&mut back).await?;
                    Ok::<bool, std::io::Error>(back[..] == message[1..])
                })
                .await;
                match one {
                    Ok(Ok(true)) => {
                        ok += 1;
                        latencies.push(t0.elapsed().as_micros() as u64);
                    }
                    _ => {
                        err += 1;
                        // A refused or failed connection returns at once: do not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (ok, err, latencies)
        }));
    }
    let (mut ok, mut err, mut latencies) = (0u64, 0u64, Vec::new());
    for task in tasks {
        let (o, e, l) = task.await.map_err(|e| format!("client task: {e}"))?;
        ok += o;
        err += e;
        latencies.extend(l);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "ok={ok} err={err} secs={secs:.3} rate={:.0} p50_us={} p99_us={}",
        ok as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

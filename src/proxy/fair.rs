//! A connection's fair share of its event loop (docs/security.md bounded resources): reading
//! charges the task's tokio budget by the byte, so that one peer flooding cheap frames
//! (HTTP/2 PING, SETTINGS, resets) yields to the loop's other connections every
//! 64 KiB instead of every 512 KiB (tokio charges one unit of its 128 per socket read, and
//! rustls reads 4 KiB at a time). Knows nothing of HTTP; [`super::connection`] wraps
//! every HTTP connection's I/O in it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::coop;

/// Bytes read per unit of tokio's per-poll task budget (128 units): a task yields after
/// reading 64 KiB.
const BYTES_PER_UNIT: usize = 512;

/// An I/O object whose reads are charged to the task's budget; made by [`Fair::new`].
#[derive(Debug)]
pub struct Fair<I> {
    io: I,
}

impl<I> Fair<I> {
    /// `io`, its reads charged by the byte.
    pub fn new(io: I) -> Self {
        Self { io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Fair<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Out of budget: yield (tokio wakes the task again once the others had their turn).
        let unit = ready!(coop::poll_proceed(cx));
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            unit.made_progress();
            // The first unit paid for up to BYTES_PER_UNIT; charge the rest. Running out
            // here only makes the next read yield.
            let read = buf.filled().len() - before;
            for _ in 1..read.div_ceil(BYTES_PER_UNIT) {
                match coop::poll_proceed(cx) {
                    Poll::Ready(more) => more.made_progress(),
                    Poll::Pending => break,
                }
            }
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Fair<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one connection reads at most before its task yields (tokio's budget: 128).
    const BYTES_PER_POLL: usize = 128 * BYTES_PER_UNIT;

    /// A reader that always has 4 KiB ready and never consults the budget itself.
    struct Flood;

    impl AsyncRead for Flood {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = buf.remaining().min(4096);
            buf.put_slice(&[7; 4096][..n]);
            Poll::Ready(Ok(()))
        }
    }

    /// Reads from `io` within one poll of the task until it is told to yield; the bytes read.
    async fn read_until_yield(io: &mut (impl AsyncRead + Unpin)) -> usize {
        let mut chunk = [0; 4096];
        std::future::poll_fn(|cx| {
            let mut total = 0;
            loop {
                let mut buf = ReadBuf::new(&mut chunk);
                match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => total += buf.filled().len(),
                    Poll::Ready(Err(error)) => panic!("{error}"),
                    Poll::Pending => return Poll::Ready(total),
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn a_reader_that_always_has_data_yields_after_its_share_of_the_poll() {
        let mut fair = Fair::new(Flood);
        assert_eq!(read_until_yield(&mut fair).await, BYTES_PER_POLL);
        // Once the task yielded, its next poll has a fresh budget: the connection goes on.
        tokio::task::yield_now().await;
        assert_eq!(read_until_yield(&mut fair).await, BYTES_PER_POLL);
    }
}

//! The glue between hyper and smol: a timer and an IO wrapper.
//!
//! hyper is runtime-agnostic and asks for its own `rt` traits; this file owns the two adapters
//! the HTTP/1 server needs. `server.rs` hands `SmolTimer` to every connection builder (header
//! read timeouts run on it) and wraps each accepted stream, plain TCP or TLS, in `SmolIo`.
//!
//! No executor adapter lives here: the HTTP/1 server connection never spawns tasks (it is one
//! future per connection, which `server.rs` spawns on the smol `Executor` itself). An adapter
//! is only needed for HTTP/2 or hyper's client, neither of which this crate uses.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{ReadBufCursor, Sleep, Timer};
use smol::io::{AsyncRead, AsyncWrite};

/// `hyper::rt::Timer` backed by async-io's reactor timers (`smol::Timer`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SmolTimer;

impl Timer for SmolTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(SmolSleep(smol::Timer::after(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(SmolSleep(smol::Timer::at(deadline)))
    }

    // hyper resets the header-read timer once per request on a keep-alive connection; moving
    // the existing timer avoids a fresh allocation each time.
    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<SmolSleep>() {
            Some(mut ours) => ours.0.set_at(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// One pending sleep; completes with `()` as hyper expects.
struct SmolSleep(smol::Timer);

impl Future for SmolSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_fired_at| ())
    }
}

impl Sleep for SmolSleep {}

/// Smallest and first read window (see `SmolIo::window`).
const MIN_READ_WINDOW: usize = 1024;

/// Any futures-io stream (smol `TcpStream`, a futures-rustls `TlsStream`, …) as hyper IO.
///
/// With a write-stall limit, a write that makes no progress for that long fails with
/// `TimedOut`, so hyper drops a connection whose peer stopped reading (a stalled download or
/// event stream) instead of holding it forever.
#[derive(Debug)]
pub struct SmolIo<T> {
    io: T,
    stall_limit: Option<Duration>,
    /// Running while writes are blocked; cleared by any progress.
    stalled: Option<smol::Timer>,
    /// Bytes offered to the next read. Each read must zero what it offers (hyper's buffer is
    /// uninitialised every time), so offering hyper's whole spare capacity cost a memset of
    /// 8+ KiB per read, even for a 200-byte request head or a read that finds nothing. The
    /// window doubles while reads fill it and falls back to twice the last read otherwise.
    window: usize,
}

impl<T> SmolIo<T> {
    pub fn new(io: T) -> Self {
        SmolIo {
            io,
            stall_limit: None,
            stalled: None,
            window: MIN_READ_WINDOW,
        }
    }

    /// Fails writes that make no progress for `limit`.
    pub fn with_write_stall(mut self, limit: Duration) -> Self {
        self.stall_limit = Some(limit);
        self
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    pub fn into_inner(self) -> T {
        self.io
    }

    /// Passes a ready write result through (clearing the stall timer); turns a pending
    /// one into `TimedOut` once the stall limit has passed.
    fn watch<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let Some(limit) = self.stall_limit else {
                    return Poll::Pending;
                };
                let timer = self
                    .stalled
                    .get_or_insert_with(|| smol::Timer::after(limit));
                match Pin::new(timer).poll(cx) {
                    Poll::Ready(_) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "peer stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for SmolIo<T> {
    #[allow(unsafe_code)] // hyper's ReadBufCursor can only be advanced unsafely
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // futures-io reads into `&mut [u8]`, which must be initialised memory; hyper hands us a
        // possibly uninitialised cursor. `initialize_unfilled_to` zeroes the offered window
        // (safe, a memset of at most one window) so no `&mut [u8]` ever points at
        // uninitialised bytes.
        let this = self.get_mut();
        let offered = this.window.min(buf.remaining());
        let dst = buf.initialize_unfilled_to(offered);
        let n = match Pin::new(&mut this.io).poll_read(cx, dst) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        this.window = if n == offered {
            this.window.saturating_mul(2)
        } else {
            n.saturating_mul(2).max(MIN_READ_WINDOW)
        };
        // A well-behaved reader never claims more than it was given; a broken one must not
        // make us advance past the initialised region.
        if n > offered {
            return Poll::Ready(Err(io::Error::other(
                "reader reported more bytes than asked",
            )));
        }
        // SAFETY: `advance` requires the next `n` bytes to be initialised. The first `offered`
        // bytes were initialised by `initialize_unfilled_to` above, and `n <= offered` was
        // just checked; the reader also wrote them, so they hold the data read.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for SmolIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_close(cx);
        this.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::{Read, Write};
    use smol::future::poll_fn;

    #[test]
    fn reads_and_writes_pass_through() {
        smol::block_on(async {
            let mut io = SmolIo::new(smol::io::Cursor::new(b"hello".to_vec()));
            let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); 3];
            let mut rb = hyper::rt::ReadBuf::uninit(&mut storage);
            poll_fn(|cx| Pin::new(&mut io).poll_read(cx, rb.unfilled()))
                .await
                .unwrap();
            assert_eq!(rb.filled(), b"hel");

            let mut out = SmolIo::new(smol::io::Cursor::new(Vec::new()));
            let n = poll_fn(|cx| Pin::new(&mut out).poll_write(cx, b"abc"))
                .await
                .unwrap();
            assert_eq!(n, 3);
            assert_eq!(out.into_inner().into_inner(), b"abc");
        });
    }

    #[test]
    fn timer_sleeps_and_resets() {
        smol::block_on(async {
            let timer = SmolTimer;
            let mut sleep = timer.sleep(Duration::from_secs(3600));
            // Moving the deadline into the past must make the same sleep complete.
            timer.reset(&mut sleep, Instant::now());
            sleep.await;
            timer.sleep_until(Instant::now()).await;
        });
    }
}

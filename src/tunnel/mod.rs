//! The relay rung: reachability borrowed from another box.
//!
//! A box nobody can reach (carrier-grade NAT, a router that maps nothing) keeps one outbound
//! link to a relay box ([`link`]); the relay ([`relay`]) listens on a public port for it and
//! forwards every client connection through the link as a yamux stream. The relay never
//! holds a key of the box: the bytes it forwards are PubkyTLS, end to end between the client
//! and the box. [`wire`] has the link's opening lines.
//!
//! Each side keeps its report in the data directory ([`LINK_FILE`], [`RELAY_FILE`]) for
//! `pubky-edge status`.

pub mod link;
pub mod relay;
pub mod wire;

use std::io;
use std::time::Duration;

use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::limits::bandwidth::Throttle;

/// Time allowed for a link's TCP connect, TLS handshake and opening lines.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::announce::tunnel_state::{
    LinkState, RelayState, ServedState, LINK_FILE, RELAY_FILE,
};

/// Turns on TCP keep-alive probes (after 30 s idle, every 10 s, 3 misses) so a link whose
/// other end vanished without a FIN is noticed in about a minute and dialled again.
pub fn keepalive(tcp: &smol::net::TcpStream) {
    use rustix::net::sockopt;
    let set = sockopt::set_socket_keepalive(tcp, true)
        .and_then(|()| sockopt::set_tcp_keepidle(tcp, Duration::from_secs(30)))
        .and_then(|()| sockopt::set_tcp_keepintvl(tcp, Duration::from_secs(10)))
        .and_then(|()| sockopt::set_tcp_keepcnt(tcp, 3));
    if let Err(e) = set {
        tracing::debug!("TCP keep-alive on a relay link: {e}");
    }
}

/// The client side of a PubkyTLS handshake over `tcp` that accepts only `key`, the name
/// the handshake asks for.
pub async fn pubky_tls_connect(
    tcp: smol::net::TcpStream,
    key: &crate::pubkey::PublicKey,
) -> io::Result<futures_rustls::client::TlsStream<smol::net::TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(key.to_z32())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    futures_rustls::TlsConnector::from(crate::tls::client_config(key))
        .connect(name, tcp)
        .await
}

/// Reads one `\n`-terminated line of at most [`wire::MAX_LINE`] bytes, a byte at a time so
/// nothing after it is taken from the stream.
pub async fn read_line<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.last() != Some(&b'\n') {
        if line.len() >= wire::MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        s.read_exact(&mut b).await?;
        line.push(b[0]);
    }
    String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// A bandwidth bound shared by every connection of one box.
pub struct Pace<'a> {
    pub throttle: &'a Throttle,
    pub key: &'a str,
    /// Bytes per second; 0 is unlimited.
    pub rate: u64,
    /// Counts every byte as it goes through.
    pub moved: &'a std::sync::atomic::AtomicU64,
}

/// Copies `r` to `w` until `r` ends, then closes `w`'s sending side. Each chunk waits off
/// its share of `pace`. Returns the bytes copied.
pub async fn pump<R, W>(mut r: R, mut w: W, pace: Option<&Pace<'_>>) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            w.close().await?;
            return Ok(total);
        }
        if let Some(p) = pace {
            p.moved
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(p) = pace.filter(|p| p.rate > 0) {
            let rate = p.rate as f64;
            let wait = p
                .throttle
                .take(p.key, n, rate, rate, std::time::Instant::now());
            if !wait.is_zero() {
                smol::Timer::after(wait).await;
            }
        }
        w.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}

/// Forwards both ways between `a` and `b` until both directions have ended (or either
/// fails); returns the bytes moved.
pub async fn splice<A, B>(a: A, b: B, pace: Option<&Pace<'_>>) -> io::Result<u64>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, aw) = smol::io::split(a);
    let (br, bw) = smol::io::split(b);
    let (up, down) = smol::future::try_zip(pump(ar, bw, pace), pump(br, aw, pace)).await?;
    Ok(up + down)
}

/// Where a requested stream is delivered.
pub type Opened = smol::channel::Sender<io::Result<yamux::Stream>>;

/// Opens a stream on a link through its driver's request channel.
pub async fn open_stream(requests: &smol::channel::Sender<Opened>) -> io::Result<yamux::Stream> {
    let gone = || io::Error::new(io::ErrorKind::NotConnected, "the link ended");
    let (tx, rx) = smol::channel::bounded(1);
    requests.send(tx).await.map_err(|_| gone())?;
    rx.recv().await.map_err(|_| gone())?
}

/// Drives one link's yamux connection, on either side: opens a stream for each request,
/// hands each stream the other side opens to `inbound`, and ends (saying why) when the link
/// closes or every requester is gone (a newer link replaced this one).
pub async fn drive<T>(
    mut conn: yamux::Connection<T>,
    requests: smol::channel::Receiver<Opened>,
    mut inbound: impl FnMut(yamux::Stream),
) -> String
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    use smol::stream::Stream;
    use std::task::Poll;
    let mut requests = Box::pin(requests);
    let mut waiting: std::collections::VecDeque<Opened> = std::collections::VecDeque::new();
    smol::future::poll_fn(|cx| loop {
        while let Poll::Ready(r) = requests.as_mut().poll_next(cx) {
            match r {
                Some(w) => waiting.push_back(w),
                None => return Poll::Ready("replaced by a newer link".to_string()),
            }
        }
        while !waiting.is_empty() {
            match conn.poll_new_outbound(cx) {
                Poll::Ready(opened) => {
                    let failed = opened.is_err();
                    let opened = opened.map_err(|e| io::Error::other(e.to_string()));
                    if let Some(w) = waiting.pop_front() {
                        let _ = w.try_send(opened);
                    }
                    if failed {
                        return Poll::Ready("the link failed".to_string());
                    }
                }
                Poll::Pending => break,
            }
        }
        match conn.poll_next_inbound(cx) {
            Poll::Ready(None) => return Poll::Ready("closed by the other side".to_string()),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(e.to_string()),
            Poll::Ready(Some(Ok(stream))) => inbound(stream),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

/// The relay link's yamux settings: streams capped at `max_streams`, windows at yamux's
/// defaults (256 KiB a stream).
pub fn yamux_config(max_streams: usize) -> yamux::Config {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(max_streams);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_splice_moves_everything_both_ways_at_the_rate() {
        smol::block_on(async {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let echo = smol::spawn(async move {
                let (s, _) = listener.accept().await.unwrap();
                let (r, w) = smol::io::split(s);
                pump(r, w, None).await.unwrap()
            });
            let (near, far) = {
                let l = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let a = l.local_addr().unwrap();
                let c = smol::net::TcpStream::connect(a);
                let (c, s) = smol::future::zip(c, l.accept()).await;
                (c.unwrap(), s.unwrap().0)
            };
            let upstream = smol::net::TcpStream::connect(addr).await.unwrap();
            let throttle = Throttle::default();
            let moved = std::sync::atomic::AtomicU64::new(0);
            let start = std::time::Instant::now();
            let middle = async {
                let pace = Pace {
                    throttle: &throttle,
                    key: "box",
                    rate: 128 * 1024,
                    moved: &moved,
                };
                splice(far, upstream, Some(&pace)).await.unwrap()
            };
            let client = async {
                let mut near = near;
                let data = vec![7u8; 128 * 1024];
                let (mut r, mut w) = smol::io::split(&mut near);
                let send = async {
                    w.write_all(&data).await.unwrap();
                    w.close().await.unwrap();
                };
                let mut back = Vec::new();
                let recv = async { r.read_to_end(&mut back).await.unwrap() };
                smol::future::zip(send, recv).await;
                back
            };
            let (spliced, back) = smol::future::zip(middle, client).await;
            assert_eq!(back.len(), 128 * 1024);
            assert!(back.iter().all(|b| *b == 7));
            assert_eq!(spliced, 2 * 128 * 1024);
            assert_eq!(spliced, moved.load(std::sync::atomic::Ordering::Relaxed));
            assert_eq!(echo.await, 128 * 1024);
            // 256 KiB through a 128 KiB/s bucket that starts with 128 KiB: at least 1 s.
            assert!(start.elapsed() >= std::time::Duration::from_millis(950));
        });
    }
}

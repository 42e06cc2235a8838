//! The accept loop: one task per connection, limits, per-request logging, graceful drain.
//!
//! `serve` takes sockets off a listener, admits them under the connection cap (`capacity`),
//! runs the acceptor (identity for plain HTTP, a TLS handshake later) inside the connection's
//! own task, and drives a hyper HTTP/1 connection whose service calls the application handler.
//! The handler's `Response<Body>` goes back to hyper, which writes it; one log line per request
//! is emitted when the handler returns. On shutdown the listener is closed first, live
//! connections are asked to finish, and stragglers are dropped at the drain deadline.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body::Body as _;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::{TcpListener, TcpStream};
use smol::Executor;

use super::body::Body;
use super::capacity::{self, ConnStats, LiveGuard, Slot};
use super::rt::{SmolIo, SmolTimer};
use crate::config::TrustedProxies;
use crate::limits::peer::address_key;
use crate::runtime::shutdown::{Shutdown, ShutdownSignal};

/// How far hyper's read buffer may grow. It starts at 8 KiB and only doubles while reads fill
/// it, so idle and slow connections stay small; a fast body (an upload over loopback or a
/// LAN) is read in chunks of up to this size. Raising it from 16 KiB made 64 MiB uploads
/// 5-11% faster (`benches/load.rs --ops large`, alternated runs) for about 1 MiB more peak
/// RSS. Request heads stay limited by `max_header_bytes` (hyper's `max_header_size`).
const READ_BUF_MAX: usize = 256 * 1024;

/// Pause after a failed `accept` (e.g. EMFILE) so the loop does not spin on a full fd table.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Per-listener limits; values come from the config (board overlay).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Connections served at once; the next one gets `503` and is closed.
    pub max_connections: usize,
    /// Request line + headers, in bytes; more gets `431` and the connection is closed.
    pub max_header_bytes: usize,
    /// Time allowed for a complete request head, counted from when the server starts waiting
    /// for it, so it is also the idle timeout of a keep-alive connection. It also bounds the
    /// acceptor (TLS handshake).
    pub header_read_timeout: Duration,
    pub keep_alive: bool,
    /// The response to this request carries `Connection: close` (values below 1 act as 1).
    pub max_requests_per_connection: u32,
    /// A connection whose peer accepts no response bytes for this long is dropped.
    pub write_stall_timeout: Duration,
    /// Connections one address (IPv6: one /64) may hold; trusted proxies are not counted.
    pub max_connections_per_ip: usize,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// When set, only these proxies may connect and each connection opens with a PROXY
    /// protocol preface naming the client (`drive.*_client_identity`).
    pub proxy_protocol: Option<Arc<TrustedProxies>>,
}

/// Who is on the other end of a request's connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// The socket's peer.
    pub peer: SocketAddr,
    /// The key every per-address limit counts the client under ([`address_key`]: IPv6 cut to
    /// its /64) of the peer, or, when the peer is a trusted proxy, of the address its
    /// `X-Forwarded-For` names (set per request).
    pub client: IpAddr,
    pub tls: bool,
}

/// Turns an accepted TCP socket into the byte stream HTTP is spoken over. Runs inside the
/// connection's task under `header_read_timeout`, never in the accept loop.
pub trait Acceptor: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn is_tls(&self) -> bool;

    fn accept(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Plain HTTP: the socket as is.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainTcp;

impl Acceptor for PlainTcp {
    type Stream = TcpStream;

    fn is_tls(&self) -> bool {
        false
    }

    async fn accept(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// What every connection task of one `serve` call shares.
struct Shared<A, H> {
    acceptor: A,
    handler: H,
    builder: http1::Builder,
    limits: ServerLimits,
    shutdown: ShutdownSignal,
    /// Raised at the drain deadline: connection tasks stop at once, dropping their sockets.
    force: ShutdownSignal,
}

/// Serves HTTP/1.1 on `listener` until `shutdown` is triggered, then drains.
///
/// Connection tasks are spawned on `ex`, so the returned future must be driven while `ex` is
/// running (e.g. `ex.run(serve(&ex, …))`). Accept errors are logged and retried after a short
/// pause. Returns once every connection has ended, or once `shutdown.drain_timeout()` has
/// passed and the remaining connections have been dropped. Use one `stats` per call.
/// No accept error is treated as fatal today, so the result is always `Ok`.
pub async fn serve<A, H, F>(
    ex: &Executor<'static>,
    listener: TcpListener,
    acceptor: A,
    limits: ServerLimits,
    handler: H,
    shutdown: ShutdownSignal,
    stats: ConnStats,
) -> io::Result<()>
where
    A: Acceptor,
    H: Fn(Request<Incoming>, ConnInfo) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let tls = acceptor.is_tls();
    let builder = builder(&limits, tls);
    let force = Shutdown::new(Duration::ZERO);
    let shared = Arc::new(Shared {
        acceptor,
        handler,
        builder,
        limits,
        shutdown: shutdown.clone(),
        force: force.signal(),
    });

    enum Step {
        Accepted(io::Result<(TcpStream, SocketAddr)>),
        Stop,
    }
    loop {
        let step = async { Step::Accepted(listener.accept().await) }
            .or(async {
                shutdown.wait().await;
                Step::Stop
            })
            .await;
        let (tcp, peer) = match step {
            Step::Stop => break,
            Step::Accepted(Ok(conn)) => conn,
            Step::Accepted(Err(e)) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                smol::Timer::after(ACCEPT_BACKOFF)
                    .or(async {
                        shutdown.wait().await;
                        Instant::now()
                    })
                    .await;
                continue;
            }
        };
        if shutdown.is_triggered() {
            break;
        }
        let limits = &shared.limits;
        if let Some(proxies) = &limits.proxy_protocol {
            if !proxies.trusts(peer.ip()) {
                tracing::debug!(%peer, "not a trusted PROXY protocol peer; closed");
                continue;
            }
        }
        // A proxy's connections carry many clients: they are not one address's share.
        let proxied = limits.trusted_proxies.trusts(peer.ip()) || limits.proxy_protocol.is_some();
        let key = (!proxied).then(|| address_key(peer.ip()));
        let Some(live) =
            stats.try_admit(limits.max_connections, key, limits.max_connections_per_ip)
        else {
            tracing::debug!(%peer, "connection cap reached; refusing");
            capacity::refuse(ex, &stats, tcp, tls);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY failed");
        }
        ex.spawn(connection(shared.clone(), tcp, peer, live, stats.clone()))
            .detach();
    }

    // Closing the listener first makes new connects fail while the drain runs.
    drop(listener);
    drain(&stats, &shutdown, &force).await;
    Ok(())
}

/// hyper's connection settings from the limits.
fn builder(limits: &ServerLimits, tls: bool) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(SmolTimer)
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(READ_BUF_MAX))
        .keep_alive(limits.keep_alive)
        // Vectored writes save a copy of each body chunk on TCP; TLS streams write one slice
        // at a time anyway, so hyper should flatten for them.
        .writev(!tls);
    builder
}

/// Lets the live connections finish until the drain deadline, then drops the rest.
async fn drain(stats: &ConnStats, shutdown: &ShutdownSignal, force: &Shutdown) {
    let drain = shutdown.drain_timeout();
    tracing::info!(live = stats.live(), ?drain, "stopped accepting; draining");
    let drained = async {
        stats.wait_idle().await;
        true
    }
    .or(async {
        smol::Timer::after(drain).await;
        false
    })
    .await;
    if !drained {
        tracing::warn!(
            live = stats.live(),
            "drain deadline passed; dropping connections"
        );
        force.trigger();
        stats.wait_idle().await;
    }
}

/// One connection from accept to close. `live` keeps its slot under the cap until the end;
/// the connection is dropped early if it is evicted before its first request head.
async fn connection<A, H, F>(
    shared: Arc<Shared<A, H>>,
    tcp: TcpStream,
    peer: SocketAddr,
    live: LiveGuard,
    stats: ConnStats,
) where
    A: Acceptor,
    H: Fn(Request<Incoming>, ConnInfo) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let force = shared.force.clone();
    let slot = live.slot();
    let run = async {
        let handshake = async {
            let mut tcp = tcp;
            let origin = match &shared.limits.proxy_protocol {
                None => peer.ip(),
                Some(_) => match super::proxy_protocol::read_client(&mut tcp).await {
                    Ok(client) => client.ip(),
                    Err(e) => return Some(Err(e)),
                },
            };
            Some(shared.acceptor.accept(tcp).await.map(|s| (s, origin)))
        }
        .or(async {
            smol::Timer::after(shared.limits.header_read_timeout).await;
            None
        })
        .or(async {
            shared.shutdown.wait().await;
            None
        });
        let (stream, origin) = match handshake.await {
            Some(Ok(accepted)) => accepted,
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "acceptor failed");
                return;
            }
            None => {
                tracing::debug!(%peer, "acceptor timed out or shutdown began");
                return;
            }
        };
        let info = ConnInfo {
            peer,
            client: address_key(origin),
            tls: shared.acceptor.is_tls(),
        };
        let service = RequestService {
            shared: shared.clone(),
            info,
            origin,
            served: Cell::new(0),
            stats,
            slot: slot.clone(),
        };
        let mut conn = pin!(shared.builder.serve_connection(
            SmolIo::new(stream).with_write_stall(shared.limits.write_stall_timeout),
            service,
        ));
        let finished = async { Some(conn.as_mut().await) }
            .or(async {
                shared.shutdown.wait().await;
                None
            })
            .await;
        let result = match finished {
            Some(result) => result,
            None => {
                // In-flight requests finish; an idle keep-alive connection closes now.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            log_connection_error(peer, &e);
        }
    };
    let evicted = async {
        slot.evicted().await;
        tracing::debug!(%peer, "idle connection evicted at the connection cap");
    };
    run.or(force.wait()).or(evicted).await;
    drop(live);
}

fn log_connection_error(peer: SocketAddr, e: &hyper::Error) {
    if e.is_parse() || e.is_parse_too_large() {
        // hyper has already answered 400/414/431 and is closing; our handler never ran.
        tracing::info!(%peer, error = %e, "rejected request head");
    } else if e.is_timeout() {
        tracing::debug!(%peer, "request head not received in time; closed");
    } else {
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
}

/// The hyper service of one connection: counts requests, calls the handler, logs.
struct RequestService<A, H> {
    shared: Arc<Shared<A, H>>,
    info: ConnInfo,
    /// The client as the connection names it: the socket's peer, or what its PROXY preface
    /// said (a trusted `X-Forwarded-For` is read relative to it).
    origin: IpAddr,
    /// Requests seen on this connection; hyper calls the service one request at a time.
    served: Cell<u32>,
    stats: ConnStats,
    slot: Arc<Slot>,
}

impl<A, H, F> hyper::service::Service<Request<Incoming>> for RequestService<A, H>
where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        // Handlers that need the client (rate limits per IP) read it from the extensions.
        let mut info = self.info;
        let proxies = &self.shared.limits.trusted_proxies;
        if !proxies.is_empty() {
            let forwarded = req.headers().get_all("x-forwarded-for");
            info.client = address_key(proxies.client(
                self.origin,
                forwarded.iter().filter_map(|v| v.to_str().ok()),
            ));
        }
        req.extensions_mut().insert(info);
        let served = self.served.get().saturating_add(1);
        self.served.set(served);
        if served == 1 {
            LiveGuard::mark_active(&self.stats, &self.slot);
        }
        let last = served >= self.shared.limits.max_requests_per_connection;
        let start = Instant::now();
        let method = req.method().clone();
        // The path only, and without what follows `/priv/` or a signup token: query strings
        // and those segments carry tokens and private names that must stay out of logs.
        let path = loggable_path(req.uri().path());
        // Boxed at once: the handler's future is large, and moving it by value into the
        // outer future and then into that future's box cost several KiB of copying per request.
        let response = Box::pin((self.shared.handler)(req, info));
        Box::pin(async move {
            let mut response = response.await;
            if last {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            tracing::info!(
                %method,
                path = %path,
                status = response.status().as_u16(),
                bytes = response.body().size_hint().exact(),
                us = micros,
                "request"
            );
            Ok(response)
        })
    }
}

/// A request path as the log may show it: anything after a `/priv/` segment and the token
/// of `/signup_tokens/<token>` become `…`.
pub fn loggable_path(raw: &str) -> String {
    // Judged on the decoded path, so `/%70riv/…` is hidden too.
    let path = crate::storage_path::percent_decode(raw).unwrap_or_else(|_| raw.to_string());
    if let Some(i) = path.find("/priv/") {
        return format!("{}/priv/…", &path[..i]);
    }
    match path.strip_prefix("/signup_tokens/") {
        Some(t) if !t.is_empty() => "/signup_tokens/…".to_string(),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_paths_hide_private_names_and_tokens() {
        assert_eq!(loggable_path("/pub/a.txt"), "/pub/a.txt");
        assert_eq!(loggable_path("/priv/diary.txt"), "/priv/…");
        assert_eq!(loggable_path("/%70riv/diary.txt"), "/priv/…");
        assert_eq!(
            loggable_path("/storage/abc/priv/x/y"),
            "/storage/abc/priv/…"
        );
        assert_eq!(
            loggable_path("/signup_tokens/ABCD-EFGH-JKMN"),
            "/signup_tokens/…"
        );
        assert_eq!(loggable_path("/signup_tokens"), "/signup_tokens");
    }
}

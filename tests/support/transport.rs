//! Test harness for the HTTP server: a real `serve` on 127.0.0.1:0 in its own thread, and a
//! minimal HTTP/1.1 client over std `TcpStream`. Shared by the `http_*` integration tests.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use pubky_edge::http::{serve, Body, ConnInfo, ConnStats, PlainTcp, ServerLimits};
use pubky_edge::runtime::shutdown::Shutdown;

/// Upper bound on any single wait in a test, so a bug fails the test instead of hanging it.
pub const SAFETY: Duration = Duration::from_secs(10);

pub fn limits() -> ServerLimits {
    ServerLimits {
        max_connections: 16,
        max_header_bytes: 8192,
        header_read_timeout: Duration::from_secs(5),
        keep_alive: true,
        max_requests_per_connection: 100,
        write_stall_timeout: Duration::from_secs(30),
        max_connections_per_ip: 16,
        trusted_proxies: Default::default(),
        proxy_protocol: None,
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: ConnStats,
    pub shutdown: Shutdown,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn start<H, F>(limits: ServerLimits, drain: Duration, handler: H) -> TestServer
    where
        H: Fn(Request<Incoming>, ConnInfo) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let shutdown = Shutdown::new(drain);
        let signal = shutdown.signal();
        let stats = ConnStats::new();
        let server_stats = stats.clone();
        let thread = std::thread::spawn(move || {
            let ex = smol::Executor::new();
            let listener = smol::net::TcpListener::try_from(std_listener)?;
            smol::block_on(ex.run(serve(
                &ex,
                listener,
                PlainTcp,
                limits,
                handler,
                signal,
                server_stats,
            )))
        });
        TestServer {
            addr,
            stats,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Waits for `serve` to return (after `shutdown.trigger()`).
    pub fn join(&mut self) -> std::io::Result<()> {
        match self.thread.take() {
            Some(t) => t.join().expect("server thread panicked"),
            None => Ok(()),
        }
    }

    /// Polls `cond` until it holds; panics after `SAFETY`.
    pub fn wait_until(&self, what: &str, cond: impl Fn(&TestServer) -> bool) {
        let deadline = Instant::now() + SAFETY;
        while !cond(self) {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        let _ = self.join();
    }
}

pub use super::Resp;

pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(SAFETY))?;
        stream.set_write_timeout(Some(SAFETY))?;
        Ok(Client {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    pub fn send(&mut self, raw: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(raw)?;
        self.writer.flush()
    }

    pub fn get(&mut self, path: &str) -> Resp {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.send(req.as_bytes()).unwrap();
        self.read_response()
    }

    /// Reads one response whose body is delimited by `Content-Length`.
    pub fn read_response(&mut self) -> Resp {
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header without colon");
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = resp
            .header("content-length")
            .expect("response without content-length")
            .parse()
            .unwrap();
        resp.body = vec![0; len];
        self.reader.read_exact(&mut resp.body).unwrap();
        resp
    }

    /// Asserts the server closed the connection: EOF or a reset, never more data and never a
    /// read that merely timed out.
    pub fn expect_closed(&mut self) {
        let mut buf = [0u8; 256];
        match self.reader.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected close, got {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ),
                "expected close, got {e}"
            ),
        }
    }
}

/// `limits()` with one field changed, for readable test setup.
pub trait ServerLimitsExt {
    fn with(self, f: impl FnOnce(&mut ServerLimits)) -> ServerLimits;
}

impl ServerLimitsExt for ServerLimits {
    fn with(mut self, f: impl FnOnce(&mut ServerLimits)) -> ServerLimits {
        f(&mut self);
        self
    }
}

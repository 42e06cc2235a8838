//! A keep-alive HTTP/1.1 client for the benchmarks, over plain TCP or PubkyTLS (verifying
//! the homeserver's raw key as the SDK does), and the percentile helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use pubky_edge::pubkey::PublicKey;

/// One keep-alive connection speaking just enough HTTP/1.1.
/// Plain TCP or PubkyTLS (verifying the homeserver's raw key like the SDK does).
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub struct Conn {
    addr: SocketAddr,
    tls: Option<PublicKey>,
    io: BufReader<Stream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        Self::connect(addr, None)
    }

    pub fn connect(addr: SocketAddr, tls: Option<PublicKey>) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let stream = match &tls {
            None => Stream::Tcp(s),
            Some(key) => {
                let name = rustls::pki_types::ServerName::try_from(key.to_string()).expect("name");
                let conn = rustls::ClientConnection::new(pubky_edge::tls::client_config(key), name)
                    .expect("tls client");
                let mut tls = rustls::StreamOwned::new(conn, s);
                // Complete the handshake now, so `tls-hs` measures it in full.
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .expect("PubkyTLS handshake");
                }
                Stream::Tls(Box::new(tls))
            }
        };
        Conn {
            addr,
            tls,
            io: BufReader::new(stream),
        }
    }

    pub fn call(&mut self, method: &str, path: &str, extra: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\n{extra}content-length: {}\r\n\r\n",
            body.len()
        );
        if body.len() <= 64 << 10 {
            // one write, so a small request goes out in one segment
            let mut msg = head.into_bytes();
            msg.extend_from_slice(body);
            self.io.get_mut().write_all(&msg).expect("write");
        } else {
            // a large body is sent from where it is: copying it first would be timed too
            self.io.get_mut().write_all(head.as_bytes()).expect("write");
            self.io.get_mut().write_all(body).expect("write");
        }
        let mut line = String::new();
        self.io.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut len = 0usize;
        let mut close = false;
        loop {
            line.clear();
            self.io.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().expect("length");
                }
                if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut buf = vec![0; len];
        self.io.read_exact(&mut buf).expect("body");
        if close {
            // the server ends keep-alive connections after a number of requests
            *self = Conn::connect(self.addr, self.tls);
        }
        (status, buf)
    }
}

/// The `p` quantile of latencies in microseconds, in milliseconds.
pub fn pct(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

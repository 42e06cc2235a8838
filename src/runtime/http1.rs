//! A small blocking HTTP/1.1 client over `std::net::TcpStream`, for the command line:
//! one request per connection (`connection: close`), a body read as it arrives whether it
//! is sized, chunked or runs to the end of the connection. The admin CLI talks to the admin
//! API with it, and `import` reads a WebDAV server with it. Plain HTTP only: both are on
//! the same machine or the household's LAN.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A request: extra headers besides `host`, `connection` and `content-length`.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

enum Framing {
    Length(u64),
    /// Bytes left in the current chunk; `None` before a size line; `done` at the end.
    Chunked {
        left: Option<u64>,
        done: bool,
    },
    ToEof,
}

/// A connection to send a request on: TCP, or TLS over it.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A response whose body is read from the connection as it is consumed.
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    conn: BufReader<Box<dyn Stream>>,
    framing: Framing,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The whole body.
    pub fn read_all(mut self) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.read_to_end(&mut v)?;
        Ok(v)
    }
}

impl Read for Reply {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.framing {
                Framing::Length(0) => return Ok(0),
                Framing::Length(left) => {
                    let want = buf.len().min(*left as usize);
                    let n = self.conn.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    *left -= n as u64;
                    return Ok(n);
                }
                Framing::ToEof => return self.conn.read(buf),
                Framing::Chunked { done: true, .. } => return Ok(0),
                Framing::Chunked { left: Some(0), .. } => {
                    let mut crlf = [0u8; 2];
                    self.conn.read_exact(&mut crlf)?;
                    self.framing = Framing::Chunked {
                        left: None,
                        done: false,
                    };
                }
                Framing::Chunked {
                    left: Some(left), ..
                } => {
                    let want = buf.len().min(*left as usize);
                    let n = self.conn.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    *left -= n as u64;
                    return Ok(n);
                }
                Framing::Chunked { left: None, .. } => {
                    let line = read_line(&mut self.conn)?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, "malformed chunk size")
                    })?;
                    if size == 0 {
                        // trailers, up to the empty line
                        while !read_line(&mut self.conn)?.is_empty() {}
                        self.framing = Framing::Chunked {
                            left: None,
                            done: true,
                        };
                    } else {
                        self.framing = Framing::Chunked {
                            left: Some(size),
                            done: false,
                        };
                    }
                }
            }
        }
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

/// A TCP connection whose reads give up after `timeout` of silence.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    Ok(s)
}

/// Sends `c` to `addr` (with `host` as the Host header) and reads the response head.
pub fn call(addr: SocketAddr, host: &str, c: &Call<'_>, timeout: Duration) -> Result<Reply> {
    call_on(Box::new(connect(addr, timeout)?), host, c)
}

/// [`call`] on a connection made by the caller (PubkyTLS, for one).
pub fn call_on(s: Box<dyn Stream>, host: &str, c: &Call<'_>) -> Result<Reply> {
    let mut body = c.body;
    call_streaming(s, host, c, &mut body, c.body.len() as u64)
}

/// [`call_on`] with the body read from `body` (exactly `len` bytes) as it is sent, so a
/// large file never has to be in memory; `c.body` is not used.
pub fn call_streaming(
    mut s: Box<dyn Stream>,
    host: &str,
    c: &Call<'_>,
    body: &mut dyn Read,
    len: u64,
) -> Result<Reply> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {len}\r\n",
        c.method, c.path,
    );
    for (k, v) in c.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let sent = io::copy(&mut body.take(len), &mut s)?;
    if sent != len {
        bail!("the request body ended after {sent} of {len} bytes");
    }
    s.flush()?;
    let mut conn = BufReader::with_capacity(64 * 1024, s);
    let status_line = read_line(&mut conn).context("the server closed the connection early")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed status line")?;
    let mut headers = Vec::new();
    let mut size = 0;
    loop {
        let line = read_line(&mut conn)?;
        if line.is_empty() {
            break;
        }
        size += line.len();
        if size > MAX_HEAD {
            bail!("response head too large");
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut reply = Reply {
        status,
        headers,
        conn,
        framing: Framing::ToEof,
    };
    reply.framing = if c.method == "HEAD" || status == 204 || status == 304 {
        Framing::Length(0)
    } else if reply
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        Framing::Chunked {
            left: None,
            done: false,
        }
    } else if let Some(n) = reply.header("content-length") {
        Framing::Length(n.parse().context("malformed content-length")?)
    } else {
        Framing::ToEof
    };
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server that answers `raw` and returns what it received.
    fn serve(raw: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // the whole request: its head, then as many bytes as it announces (the head
            // and the body may arrive in separate reads)
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.parse().unwrap());
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(raw).unwrap();
            got
        });
        (addr, t)
    }

    fn get(raw: &'static [u8]) -> (Reply, String) {
        let (addr, t) = serve(raw);
        let call = Call {
            method: "PROPFIND",
            path: "/dav/",
            headers: &[("depth", "1")],
            body: b"<x/>",
        };
        let r = super::call(addr, "box", &call, Duration::from_secs(5)).unwrap();
        (r, String::from_utf8(t.join().unwrap()).unwrap())
    }

    #[test]
    fn chunked_sized_and_unsized_bodies_are_read() {
        let (r, sent) = get(b"HTTP/1.1 207 Multi-Status\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n");
        assert!(
            sent.starts_with("PROPFIND /dav/ HTTP/1.1\r\nhost: box\r\n"),
            "{sent}"
        );
        assert!(
            sent.contains("depth: 1\r\n") && sent.ends_with("\r\n\r\n<x/>"),
            "{sent}"
        );
        assert_eq!(r.status, 207);
        assert_eq!(r.read_all().unwrap(), b"helloabc");
        let (r, _) = get(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbodyEXTRA");
        assert_eq!(r.header("content-length"), Some("4"));
        assert_eq!(r.read_all().unwrap(), b"body");
        let (r, _) = get(b"HTTP/1.1 200 OK\r\n\r\nuntil the end");
        assert_eq!(r.read_all().unwrap(), b"until the end");
        let (r, _) = get(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        assert!(r.read_all().is_err(), "a cut body is an error");
    }
}

//! A blocking Server-Sent Events client for tests: sends one GET, parses the response head,
//! then decodes the chunked body incrementally into events and comments as they arrive.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub kind: String,
    pub data: Vec<String>,
}

impl SseEvent {
    pub fn uri(&self) -> &str {
        &self.data[0]
    }
    pub fn cursor(&self) -> u64 {
        self.field("cursor: ").unwrap().parse().unwrap()
    }
    pub fn field(&self, prefix: &str) -> Option<&str> {
        self.data.iter().find_map(|d| d.strip_prefix(prefix))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Event(SseEvent),
    Comment,
}

pub struct Sse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Non-200 responses: the whole body.
    pub error_body: String,
    stream: TcpStream,
    raw: Vec<u8>,
    text: String,
    pub closed: bool,
    /// The server sent the final chunk (a clean end, not a dropped connection).
    pub ended_cleanly: bool,
}

impl Sse {
    pub fn open(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> Sse {
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut req = format!("GET {path_and_query} HTTP/1.1\r\nhost: localhost\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut raw = Vec::new();
        let end = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the response head");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let rest = raw[end + 4..].to_vec();
        let mut sse = Sse {
            status,
            headers,
            error_body: String::new(),
            stream,
            raw: rest,
            text: String::new(),
            closed: false,
            ended_cleanly: false,
        };
        if status != 200 {
            let len: usize = sse.header("content-length").unwrap_or("0").parse().unwrap();
            while sse.raw.len() < len {
                let mut buf = [0u8; 4096];
                let n = sse.stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                sse.raw.extend_from_slice(&buf[..n]);
            }
            sse.error_body = String::from_utf8_lossy(&sse.raw).into_owned();
        }
        sse
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Moves complete chunks from `raw` into `text`; marks the end chunk.
    fn dechunk(&mut self) {
        loop {
            let Some(le) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.raw[..le]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                self.closed = true;
                self.ended_cleanly = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < le + 2 + size + 2 {
                return;
            }
            let data = self.raw[le + 2..le + 2 + size].to_vec();
            self.text.push_str(std::str::from_utf8(&data).unwrap());
            self.raw.drain(..le + 2 + size + 2);
        }
    }

    /// The next event or comment, or `None` when the stream ended or `wait` passed.
    pub fn next(&mut self, wait: Duration) -> Option<Item> {
        let deadline = Instant::now() + wait;
        loop {
            self.dechunk();
            if let Some(p) = self.text.find("\n\n") {
                let block: String = self.text.drain(..p + 2).collect();
                let block = block.trim_end_matches('\n');
                if block.starts_with(':') {
                    return Some(Item::Comment);
                }
                let mut kind = String::new();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(k) = line.strip_prefix("event: ") {
                        kind = k.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push(d.to_string());
                    }
                }
                return Some(Item::Event(SseEvent { kind, data }));
            }
            if self.closed {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 16384];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                }
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return None
                }
                Err(_) => self.closed = true,
            }
        }
    }

    /// The next event, skipping comments.
    pub fn next_event(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            match self.next(deadline.saturating_duration_since(Instant::now()))? {
                Item::Event(e) => return Some(e),
                Item::Comment => continue,
            }
        }
    }

    /// Every event until the server ends the stream (batch mode).
    pub fn collect(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event(Duration::from_secs(10)) {
            out.push(e);
        }
        assert!(self.closed, "stream did not end");
        out
    }

    /// The next `n` events (panics if they do not arrive).
    pub fn collect_n(&mut self, n: usize) -> Vec<SseEvent> {
        (0..n)
            .map(|_| self.next_event(Duration::from_secs(10)).expect("event"))
            .collect()
    }
}

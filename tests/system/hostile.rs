//! Hostile load against the real binary: a normal client must still be served promptly
//! (each request within `PROMPT`) while the server faces 1,000 idle connections (twice its
//! connection cap), slowloris clients trickling header bytes, bodies over the upload limit,
//! a request flood from one IP (rate-limited) and event-stream subscribers that never read;
//! the server's peak RSS (VmHWM) stays under `RSS_BOUND_KIB` throughout.

use crate::support as common;
use crate::support::proc;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proc::{bearer, request, Node};

/// A generous bound for one request on loopback; the point is "not starved", not speed.
const PROMPT: Duration = Duration::from_secs(2);

/// Peak RSS allowed for the (debug build of the) server under these tests. The release
/// build is far smaller; see README for the benchmark figures.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// Raises this process's open-file limit (inherited by the server) to fit the flood.
fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

struct Fixture {
    node: Node,
    file_url: String,
    token: String,
    _tmp: tempfile::TempDir,
}

/// The flood and the normal client share 127.0.0.1 here: these tests are about the global
/// mechanisms (the cap, eviction, timeouts), so one address may use every slot and stream.
/// `attack.rs` covers what one address may hold.
fn fixture(extra_toml: &str) -> Fixture {
    raise_fd_limit(8192);
    let extra_toml = if extra_toml.contains("[limits]") {
        extra_toml.replace("[limits]\n", "[limits]\nmax_connections_per_ip = 512\n")
    } else {
        format!("{extra_toml}\n[limits]\nmax_connections_per_ip = 512\n")
    };
    let extra_toml = format!("{extra_toml}\n[events]\nmax_streams_per_ip = 256\n");
    let extra_toml = extra_toml.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::new(tmp.path(), &tmp.path().join("data"), extra_toml);
    node.start();
    let user = proc::random_key();
    let token = node.signup(&user);
    let file_url = format!("/storage/{}/pub/hello.txt", common::pk_of(&user));
    let r = request(node.addr, "PUT", &file_url, &bearer(&token), b"hello").unwrap();
    assert_eq!(r.status, 201);
    Fixture {
        node,
        file_url,
        token,
        _tmp: tmp,
    }
}

impl Fixture {
    /// A normal client's GET: must be answered 200 within `PROMPT`.
    fn normal_get(&self, during: &str) {
        let t = Instant::now();
        let r = request(self.node.addr, "GET", &self.file_url, "", &[])
            .unwrap_or_else(|e| panic!("{during}: normal GET failed: {e}"));
        let took = t.elapsed();
        assert_eq!(r.status, 200, "{during}: {}", r.text());
        assert_eq!(r.body, b"hello");
        assert!(took < PROMPT, "{during}: normal GET took {took:?}");
    }

    fn peak_rss_kib(&self) -> u64 {
        proc::status_kib(self.node.pid(), "VmHWM:")
    }
}

#[test]
fn idle_connection_flood_beyond_the_cap() {
    let _suite = crate::suite("hostile");
    let f = fixture("[limits]\nmax_connections = 512\n");
    let mut idle = Vec::new();
    for i in 0..1000 {
        match TcpStream::connect(f.node.addr) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect {i}: {e}"),
        }
    }
    // Give the accept loop time to admit or turn away every one of them.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        f.normal_get(&format!("1000 idle connections, request {i}"));
    }
    let rss = f.peak_rss_kib();
    eprintln!("peak RSS with 1000 idle connections: {} KiB", rss);
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB");
    drop(idle);
    f.normal_get("after the flood");
}

#[test]
fn slowloris_header_trickle() {
    let _suite = crate::suite("hostile");
    let f = fixture("[limits]\nheader_read_timeout_ms = 1500\n");
    let start = Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(f.node.addr).unwrap();
            s.write_all(b"GET /info HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    // Trickle one header byte per connection every 100 ms, past the timeout.
    let mut closed = vec![None; slow.len()];
    let mut tick = 0;
    while start.elapsed() < Duration::from_millis(3500) {
        for (i, s) in slow.iter_mut().enumerate() {
            if closed[i].is_none() && s.write_all(b"x").is_err() {
                closed[i] = Some(start.elapsed());
            }
        }
        if tick % 5 == 0 {
            f.normal_get(&format!("slowloris at {:?}", start.elapsed()));
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every trickler was cut off: the server closed it (408 or EOF) at the timeout.
    for s in slow.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            r.is_err() || text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    let rss = f.peak_rss_kib();
    eprintln!("peak RSS under slowloris: {rss} KiB");
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB");
}

#[test]
fn bodies_over_the_limit_are_refused_promptly() {
    let _suite = crate::suite("hostile");
    let f = fixture("[storage]\nmax_upload_mb = 1\n");
    let auth = bearer(&f.token);
    let url = f.file_url.replace("hello.txt", "big");
    // Declared too large: 413 before the body is read, then the connection closes.
    let t = Instant::now();
    let mut s = TcpStream::connect(f.node.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT {url} HTTP/1.1\r\nhost: x\r\n{auth}content-length: {}\r\n\r\n",
        64 << 20
    )
    .unwrap();
    s.write_all(&[0u8; 64 * 1024]).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf); // EOF: the server closed the connection
    let resp = common::parse_response(&buf, false).expect("a 413 response");
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert!(t.elapsed() < PROMPT, "413 took {:?}", t.elapsed());

    // Chunked, no length: cut off once the running total passes the limit.
    let t = Instant::now();
    let mut s = TcpStream::connect(f.node.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT {url} HTTP/1.1\r\nhost: x\r\n{auth}transfer-encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = [7u8; 64 * 1024];
    for _ in 0..40 {
        if write!(s, "{:x}\r\n", chunk.len()).is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let resp = common::parse_response(&buf, false).expect("a 413 response");
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert!(t.elapsed() < PROMPT, "413 took {:?}", t.elapsed());

    let r = request(f.node.addr, "GET", &url, "", &[]).unwrap();
    assert_eq!(r.status, 404, "a refused upload must leave nothing behind");
    f.normal_get("after oversized bodies");
    let rss = f.peak_rss_kib();
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB");
}

#[test]
fn flood_from_one_ip_is_rate_limited() {
    let _suite = crate::suite("hostile");
    let f = fixture(
        "[[drive.rate_limits]]\npath = \"/events/\"\nmethod = \"GET\"\nquota = \"20r/s\"\nkey = \"ip\"\n",
    );
    let addr = f.node.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut limited) = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match request(addr, "GET", "/events/", "", &[]).map(|r| r.status) {
                        Ok(200) => ok += 1,
                        Ok(429) => limited += 1,
                        other => panic!("flood request: {other:?}"),
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        f.normal_get(&format!("during the flood, request {i}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut limited) = (0, 0);
    for h in flooders {
        let (o, l) = h.join().unwrap();
        ok += o;
        limited += l;
    }
    eprintln!("flood: {ok} served, {limited} refused with 429");
    assert!(
        limited > ok,
        "the flood was not limited: {ok} served, {limited} refused"
    );
    assert!(ok <= 2 * 20 * 3, "more than the quota got through: {ok}");
    let rss = f.peak_rss_kib();
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB");
}

#[test]
fn event_subscribers_that_never_read() {
    let _suite = crate::suite("hostile");
    let f = fixture("[limits]\nwrite_stall_timeout_ms = 1000\n");
    let auth = bearer(&f.token);
    let dir = f.file_url.replace("hello.txt", "");
    let user = dir
        .trim_start_matches("/storage/")
        .trim_end_matches("/pub/")
        .to_string();
    // 200 live subscribers that send their request and then never read a byte.
    let subscribers: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(f.node.addr).unwrap();
            write!(
                s,
                "GET /events-stream?user={user}&live=true HTTP/1.1\r\nhost: x\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    // Writers keep producing events (with long paths, so the unread streams fill up).
    let long = "x".repeat(200);
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(3) {
        let path = format!("{dir}{long}/{n}");
        let w = Instant::now();
        let r = request(f.node.addr, "PUT", &path, &auth, b"event").unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(
            w.elapsed() < PROMPT,
            "a write waited {:?} on stalled readers",
            w.elapsed()
        );
        n += 1;
        if n % 50 == 0 {
            f.normal_get(&format!("200 stalled subscribers, {n} writes"));
        }
    }
    f.normal_get("after the writes");
    let rss = f.peak_rss_kib();
    eprintln!("peak RSS with 200 unread event streams and {n} writes: {rss} KiB");
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB");
    drop(subscribers);
}

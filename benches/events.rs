//! Event-stream measurements against the release binary on loopback:
//! 1. write → live SSE delivery latency with N live subscribers (default 100): one writer
//!    does durable 1 KiB PUTs at a steady pace; every subscriber timestamps each event as it
//!    parses it. Reported from the start of the PUT (includes the durable flush) and from
//!    the moment the writer has read its `201` (negative = delivered before the ack arrived).
//! 2. server RSS with M idle live subscribers (default 1000).
//!
//! `cargo bench --bench events -- [--subs 100] [--writes 200] [--idle 1000] [--pace-ms 20]`

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pubky_edge::pubkey::PublicKey;

use common::{key, proof, rss_kib, start_server, ServerProc};

struct Opts {
    subs: usize,
    writes: usize,
    idle: usize,
    pace: Duration,
    binary: PathBuf,
}

fn opts() -> Opts {
    let mut o = Opts {
        subs: 100,
        writes: 200,
        idle: 1000,
        pace: Duration::from_millis(20),
        binary: PathBuf::from(env!("CARGO_BIN_EXE_pubky-edge")),
    };
    for (a, v) in common::options() {
        match a.as_str() {
            "--subs" => o.subs = v.parse().expect("number"),
            "--writes" => o.writes = v.parse().expect("number"),
            "--idle" => o.idle = v.parse().expect("number"),
            "--pace-ms" => o.pace = Duration::from_millis(v.parse().expect("ms")),
            "--binary" => o.binary = v.into(),
            _ => panic!("unknown option {a}"),
        }
    }
    o
}

/// The server with room for `streams` event streams (and the other connections), all from
/// this one loopback address.
fn start(binary: &Path, streams: usize) -> ServerProc {
    let conns = 2 * streams + 64;
    start_server(
        binary,
        &format!(
            "[limits]\nmax_connections = {conns}\nmax_connections_per_ip = {conns}\n\
             [events]\nmax_streams = {streams}\nmax_streams_per_ip = {streams}\n"
        ),
    )
}

fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid, "VmRSS:") as f64 / 1024.0
}

/// One request on a keep-alive connection; returns status and body.
fn call(s: &mut BufReader<TcpStream>, method: &str, path: &str, extra: &str, body: &[u8]) -> u16 {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    );
    let w = s.get_mut();
    w.write_all(head.as_bytes()).expect("write");
    w.write_all(body).expect("write");
    let mut line = String::new();
    s.read_line(&mut line).expect("status");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        s.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut b = vec![0u8; len];
    s.read_exact(&mut b).expect("body");
    status
}

fn session(server: &ServerProc, user: &SigningKey) -> String {
    let mut c = BufReader::new(TcpStream::connect(server.addr).expect("connect"));
    let ct = "content-type: application/json\r\n";
    let p = proof(user, server.key, "pubky.signup", 300);
    assert_eq!(
        call(&mut c, "POST", "/auth/grant/signup", ct, p.as_bytes()),
        204
    );
    let p = proof(user, server.key, "bench", 86400);
    let head = format!(
        "POST /auth/grant/session HTTP/1.1\r\nhost: x\r\n{ct}content-length: {}\r\nconnection: close\r\n\r\n{p}",
        p.len()
    );
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.write_all(head.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let body = &out[out.find("\r\n\r\n").expect("head") + 4..];
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    v["token"].as_str().expect("token").to_string()
}

/// Opens a live stream and waits for its response head.
/// `after`: the cursor to start from (the idle subscribers skip the history).
fn subscribe(addr: SocketAddr, pk: &PublicKey, after: u64) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    write!(
        s,
        "GET /events-stream?user={pk}:{after}&live=true HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    .expect("w");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("status");
    assert!(line.contains(" 200 "), "subscribe: {line}");
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        if line == "\r\n" {
            return r;
        }
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let o = opts();
    let server = start(&o.binary, o.subs.max(o.idle) + 8);
    let pid = server.child.id();
    let user = key();
    let pk = PublicKey::from(user.verifying_key());
    let token = session(&server, &user);
    println!("pubky-edge events bench, server pid {pid}");
    println!("server RSS after start and signup: {:.1} MiB", rss_mib(pid));

    // 1. latency with `subs` live subscribers
    let received: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let mut readers = Vec::new();
    for _ in 0..o.subs {
        let mut r = subscribe(server.addr, &pk, 0);
        let received = received.clone();
        let expect = o.writes as u64;
        readers.push(std::thread::spawn(move || {
            let mut line = String::new();
            let mut seen = 0;
            while seen < expect {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(c) = line.trim_end().strip_prefix("data: cursor: ") {
                    let at = Instant::now();
                    received
                        .lock()
                        .expect("lock")
                        .push((c.parse().expect("cursor"), at));
                    seen += 1;
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "server RSS with {} live subscribers: {:.1} MiB",
        o.subs,
        rss_mib(pid)
    );
    let mut w = BufReader::new(TcpStream::connect(server.addr).expect("connect"));
    w.get_ref().set_nodelay(true).expect("nodelay");
    let auth = format!("authorization: Bearer {token}\r\n");
    let body = vec![b'x'; 1024];
    let mut sent = Vec::with_capacity(o.writes);
    for i in 0..o.writes {
        let t0 = Instant::now();
        let st = call(
            &mut w,
            "PUT",
            &format!("/storage/{pk}/pub/bench/{i}"),
            &auth,
            &body,
        );
        let acked = Instant::now();
        assert_eq!(st, 201);
        sent.push((t0, acked));
        std::thread::sleep(o.pace);
    }
    for r in readers {
        let _ = r.join();
    }
    let got = received.lock().expect("lock");
    let mut from_start = Vec::with_capacity(got.len());
    let mut from_ack = Vec::with_capacity(got.len());
    for (cursor, at) in got.iter() {
        let (t0, acked) = sent[(*cursor - 1) as usize];
        from_start.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        let signed = if *at >= acked {
            at.duration_since(acked).as_secs_f64()
        } else {
            -acked.duration_since(*at).as_secs_f64()
        };
        from_ack.push(signed * 1000.0);
    }
    from_start.sort_by(f64::total_cmp);
    from_ack.sort_by(f64::total_cmp);
    let ack: Vec<f64> = {
        let mut v: Vec<f64> = sent
            .iter()
            .map(|(t0, a)| a.duration_since(*t0).as_secs_f64() * 1000.0)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    println!(
        "{} writes x {} subscribers = {} deliveries (expected {})",
        o.writes,
        o.subs,
        got.len(),
        o.writes * o.subs
    );
    println!(
        "PUT ack latency          p50 {:.2} ms  p99 {:.2} ms",
        pct(&ack, 0.5),
        pct(&ack, 0.99)
    );
    println!(
        "delivery from PUT start  p50 {:.2} ms  p99 {:.2} ms",
        pct(&from_start, 0.5),
        pct(&from_start, 0.99)
    );
    println!(
        "delivery after the ack   p50 {:.2} ms  p99 {:.2} ms",
        pct(&from_ack, 0.5),
        pct(&from_ack, 0.99)
    );
    drop(got);

    // 2. RSS with `idle` idle live subscribers
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_mib(pid);
    let idle: Vec<_> = (0..o.idle)
        .map(|_| subscribe(server.addr, &pk, o.writes as u64))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let with = rss_mib(pid);
    println!(
        "server RSS: {before:.1} MiB before, {with:.1} MiB with {} idle live subscribers ({:.1} KiB each)",
        idle.len(),
        (with - before) * 1024.0 / idle.len().max(1) as f64
    );
}

//! Load generator: starts the release `pubky-edge` binary on loopback with a temp data
//! directory, signs up a user with a real grant, then drives N concurrent keep-alive
//! connections per operation: small GETs, durable small PUTs (each to a new file), LISTs of
//! a 100-file directory and DELETEs of the files the PUT phase created; then large-file
//! upload and download throughput, next to the disk's sequential write speed measured in
//! the same run (write + fsync of the same size into the data directory's filesystem).
//! Prints one table: requests/s, MiB/s, p50/p99 latency and the server's peak RSS (VmHWM).
//!
//! `--ops tls-get,tls-hs` measures PubkyTLS: `tls-get` is the same 1 KiB GET over keep-alive
//! TLS connections, `tls-hs` opens a fresh TLS connection (full TLS 1.3 handshake with the
//! raw-key check) for every request, so its rate is the handshake rate.
//!
//! `cargo bench --bench load -- [--conns 1,16,256] [--seconds 5] [--size 1024]
//!  [--ops get,put,list,del,large,tls-get,tls-hs] [--large-mib 64]`

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubky_edge::pubkey::PublicKey;

use common::client::{pct, Conn};
use common::{key, proof, rss_kib, start_server, ServerProc};

struct Opts {
    conns: Vec<usize>,
    seconds: u64,
    size: usize,
    ops: Vec<String>,
    large_mib: usize,
    binary: PathBuf,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        conns: vec![1, 16, 256],
        seconds: 5,
        size: 1024,
        ops: ["get", "put", "list", "del", "tls-get", "tls-hs", "large"]
            .map(String::from)
            .to_vec(),
        large_mib: 64,
        binary: PathBuf::from(env!("CARGO_BIN_EXE_pubky-edge")),
    };
    for (a, v) in common::options() {
        match a.as_str() {
            "--conns" => o.conns = v.split(',').map(|n| n.parse().expect("number")).collect(),
            "--seconds" => o.seconds = v.parse().expect("seconds"),
            "--size" => o.size = v.parse().expect("size"),
            "--ops" => o.ops = v.split(',').map(String::from).collect(),
            "--large-mib" => o.large_mib = v.parse().expect("MiB"),
            "--binary" => o.binary = v.into(),
            _ => panic!("unknown option {a}"),
        }
    }
    o
}

struct Phase {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    lat_us: Vec<u32>,
}

#[allow(clippy::too_many_arguments)]
fn run_phase(
    addr: SocketAddr,
    tls: Option<PublicKey>,
    conns: usize,
    secs: u64,
    op: &str,
    url: &str,
    auth: &str,
    body: &[u8],
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let stop = stop.clone();
            let (op, url, auth, body) = (
                op.to_string(),
                url.to_string(),
                auth.to_string(),
                body.to_vec(),
            );
            std::thread::spawn(move || {
                let mut c = Conn::connect(addr, tls);
                let mut lat = Vec::new();
                let mut errors = 0;
                let mut k = 0usize;
                let begun = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let (status, _) = match op.as_str() {
                        "tls-hs" => {
                            // A new connection per request: handshake + GET + close.
                            let mut fresh = Conn::connect(addr, tls);
                            fresh.call("GET", &url, "connection: close\r\n", &[])
                        }
                        "get" | "tls-get" | "list" => c.call("GET", &url, "", &[]),
                        "put" => c.call("PUT", &format!("{url}/c{i}/f{k}"), &auth, &body),
                        _ => c.call("DELETE", &format!("{url}/c{i}/f{k}"), &auth, &[]),
                    };
                    if op == "del" && status == 404 {
                        break; // every file this connection's PUT phase made is gone
                    }
                    k += 1;
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    if !(200..300).contains(&status) {
                        errors += 1;
                    }
                }
                (lat, errors, begun.elapsed())
            })
        })
        .collect();
    let deadline = start + Duration::from_secs(secs);
    while Instant::now() < deadline && !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    let mut elapsed = Duration::ZERO;
    for h in handles {
        let (l, e, took) = h.join().expect("worker");
        all.extend(l);
        errors += e;
        elapsed = elapsed.max(took);
    }
    all.sort_unstable();
    Phase {
        requests: all.len(),
        errors,
        elapsed,
        lat_us: all,
    }
}

fn main() {
    let o = parse_opts();
    let server = start_server(
        &o.binary,
        "[limits]\nmax_connections = 2048\nmax_connections_per_ip = 2048\n",
    );
    let hs = server.key;
    let pid = server.child.id();
    let idle_rss = rss_kib(pid, "VmRSS:");
    let user = key();
    let pk = PublicKey::from(user.verifying_key());
    let mut c = Conn::open(server.addr);
    let ct = "content-type: application/json\r\n";
    let (st, _) = c.call(
        "POST",
        "/auth/grant/signup",
        ct,
        proof(&user, hs, "pubky.signup", 300).as_bytes(),
    );
    assert_eq!(st, 204, "signup");
    let (st, resp) = c.call(
        "POST",
        "/auth/grant/session",
        ct,
        proof(&user, hs, "bench", 86400).as_bytes(),
    );
    assert_eq!(st, 200, "session");
    let v: serde_json::Value = serde_json::from_slice(&resp).expect("json");
    let token = v["token"].as_str().expect("token").to_string();
    let auth = format!("authorization: Bearer {token}\r\n");
    let body = vec![b'x'; o.size];
    let file = format!("/storage/{pk}/pub/bench/file");
    let (st, _) = c.call("PUT", &file, &auth, &body);
    assert_eq!(st, 201, "seed file");

    if o.ops.iter().any(|op| op == "list") {
        for k in 0..100 {
            let (st, _) = c.call(
                "PUT",
                &format!("/storage/{pk}/pub/bench/list/f{k:03}"),
                &auth,
                &body,
            );
            assert_eq!(st, 201, "seed listing");
        }
    }
    drop(c);

    println!(
        "pubky-edge load: {} B bodies, {} s per phase, server pid {pid}",
        o.size, o.seconds
    );
    println!(
        "server RSS idle after start: {:.1} MiB",
        idle_rss as f64 / 1024.0
    );
    let peak = || rss_kib(pid, "VmHWM:") as f64 / 1024.0;
    println!(
        "{:<9} {:>6} {:>10} {:>8} {:>9} {:>9} {:>7} {:>9}",
        "op", "conns", "req/s", "MiB/s", "p50 ms", "p99 ms", "errors", "peak MiB"
    );
    for op in o.ops.iter().filter(|op| *op != "large") {
        for &n in &o.conns {
            let url = match op.as_str() {
                "list" => format!("/storage/{pk}/pub/bench/list/"),
                // PUT creates new files; DELETE removes the ones the PUT phase created
                "put" | "del" => format!("/storage/{pk}/pub/bench/put{n}"),
                _ => file.clone(),
            };
            let (addr, tls) = if op.starts_with("tls-") {
                (server.tls_addr, Some(hs))
            } else {
                (server.addr, None)
            };
            let p = run_phase(addr, tls, n, o.seconds, op, &url, &auth, &body);
            let rps = p.requests as f64 / p.elapsed.as_secs_f64().max(1e-9);
            let mibs = if matches!(op.as_str(), "put" | "get" | "tls-get") {
                format!("{:.1}", rps * o.size as f64 / 1048576.0)
            } else {
                "-".into()
            };
            println!(
                "{:<9} {:>6} {:>10.0} {:>8} {:>9.2} {:>9.2} {:>7} {:>9.1}",
                op,
                n,
                rps,
                mibs,
                pct(&p.lat_us, 0.50),
                pct(&p.lat_us, 0.99),
                p.errors,
                peak()
            );
        }
    }
    if o.ops.iter().any(|op| op == "large") {
        large_files(&server, pk, &auth, o.large_mib, &peak);
    }
    println!("server peak RSS (VmHWM): {:.1} MiB", peak());
}

/// Large-file throughput: five uploads and five downloads of `mib` MiB on one
/// connection, and the disk's own sequential write (+ fsync) of the same size into the data
/// directory's filesystem, measured in between so both see the same disk conditions.
fn large_files(server: &ServerProc, pk: PublicKey, auth: &str, mib: usize, peak: &dyn Fn() -> f64) {
    const RUNS: usize = 5;
    let size = mib << 20;
    let mut body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut c = Conn::open(server.addr);
    let (mut up, mut down, mut disk) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = 0;
    for run in 0..RUNS {
        // distinct content each run, so no upload is deduplicated against an earlier one
        body[0] = run as u8;
        let url = format!("/storage/{pk}/pub/bench/large{run}");
        let t = Instant::now();
        let (st, _) = c.call("PUT", &url, auth, &body);
        up.push(t.elapsed());
        errors += usize::from(st != 201);
        let t = Instant::now();
        let (st, got) = c.call("GET", &url, "", &[]);
        down.push(t.elapsed());
        errors += usize::from(st != 200 || got.len() != size);
        disk.push(sequential_write(server.dir.path(), &body));
    }
    let row = |name: &str, times: &mut Vec<Duration>, errors: usize| {
        times.sort();
        let median = times[RUNS / 2].as_secs_f64();
        println!(
            "{:<9} {:>6} {:>10.2} {:>8.1} {:>9.1} {:>9.1} {:>7} {:>9.1}",
            name,
            1,
            1.0 / median,
            mib as f64 / median,
            median * 1000.0,
            times[RUNS - 1].as_secs_f64() * 1000.0,
            errors,
            peak()
        );
        mib as f64 / median
    };
    let up_mibs = row(&format!("put {mib}M"), &mut up, errors);
    row(&format!("get {mib}M"), &mut down, 0);
    let disk_mibs = row("disk seq", &mut disk, 0);
    println!(
        "large upload at {:.0}% of the disk's sequential write speed ({up_mibs:.1} vs {disk_mibs:.1} MiB/s)",
        100.0 * up_mibs / disk_mibs
    );
}

/// What `dd bs=1M conv=fsync` does: write `data` to a new file in `dir`, fsync, remove.
fn sequential_write(dir: &std::path::Path, data: &[u8]) -> Duration {
    let path = dir.join("disk-probe");
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).expect("probe file");
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).expect("probe write");
    }
    f.sync_all().expect("probe fsync");
    let took = t.elapsed();
    drop(f);
    let _ = std::fs::remove_file(path);
    took
}

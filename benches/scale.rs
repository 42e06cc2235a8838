//! Scale benchmark: how the box behaves as the household's data grows.
//!
//! Fills a data directory with `--files` small files (`--size` bytes each, spread over
//! `--users` accounts, 1,000 per directory) through the store's own API (fast, relaxed
//! durability, closed cleanly), sampling this process's RSS as it goes; then starts the
//! release server on it (optionally with `--board NAME`) and measures: time to ready, idle
//! RSS, a sample of files read back through HTTP, random GETs, directory listings and
//! `/events/` reads over 16 connections (rate, p50/p99, peak RSS), disk use against the
//! payload, what each tree of the database holds, and bytes written to disk per durable
//! PUT of a new `--size` file at 1 and 16 connections (`/proc/<pid>/io` `write_bytes`).
//! Last, the same GET and PUT phases against an empty store, for the ratio.
//!
//! `cargo bench --bench scale -- [--files 100000] [--users 10] [--size 1024] [--seconds 5]
//!  [--board pi-zero] [--plot fill-rss.svg] [--keep DIR] [--binary PATH]`
//!
//! `--keep DIR` keeps the filled store there and reuses it on the next run (skipping the
//! fill) when it is already there.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pubky_edge::pubkey::PublicKey;
use pubky_edge::storage_path::StoragePath;
use pubky_edge::store::{Durability, Store, StoreConfig};

use common::client::{pct, Conn};
use common::{disk_bytes, key, launch, proof, rss_kib};

struct Opts {
    files: usize,
    users: usize,
    size: usize,
    seconds: u64,
    board: Option<String>,
    plot: Option<PathBuf>,
    keep: Option<PathBuf>,
    binary: PathBuf,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        files: 100_000,
        users: 10,
        size: 1024,
        seconds: 5,
        board: None,
        plot: None,
        keep: None,
        binary: PathBuf::from(env!("CARGO_BIN_EXE_pubky-edge")),
    };
    for (a, v) in common::options() {
        match a.as_str() {
            "--files" => o.files = v.parse().expect("files"),
            "--users" => o.users = v.parse().expect("users"),
            "--size" => o.size = v.parse().expect("size"),
            "--seconds" => o.seconds = v.parse().expect("seconds"),
            "--board" => o.board = Some(v),
            "--plot" => o.plot = Some(v.into()),
            "--keep" => o.keep = Some(v.into()),
            "--binary" => o.binary = v.into(),
            _ => panic!("unknown option {a}"),
        }
    }
    o
}

/// splitmix64: picks files, directories and cursors.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// File `i`'s place: its owner (an index into the users) and its path.
fn place(i: usize, users: usize) -> (usize, String) {
    let n = i / users;
    (i % users, format!("/pub/scale/d{}/f{n}", n / 1000))
}

/// File `i`'s body: distinct per file, `size` bytes.
fn body(i: usize, size: usize) -> Vec<u8> {
    format!("{i:016x}").bytes().cycle().take(size).collect()
}

/// Writes the files through the store's API, sampling this process's RSS every 250 ms as
/// (files written, MiB).
fn fill(data: &Path, users: &[SigningKey], files: usize, size: usize) -> Vec<(usize, f64)> {
    let cfg = StoreConfig {
        cache_capacity_bytes: 8 << 20,
        inline_max: 16384,
        durability: Durability::Relaxed,
        default_quota_bytes: None,
    };
    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (written, done) = (written.clone(), done.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let rss = rss_kib(std::process::id(), "VmRSS:") as f64 / 1024.0;
                samples.push((written.load(Ordering::Relaxed), rss));
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        })
    };
    let started = Instant::now();
    smol::block_on(async {
        let store = Store::open(data, cfg).expect("open store");
        let pks: Vec<PublicKey> = users.iter().map(|k| k.verifying_key().into()).collect();
        for pk in &pks {
            store.create_user(pk, None, 0).await.expect("user");
        }
        for i in 0..files {
            let (u, path) = place(i, users.len());
            let mut up = store.upload();
            up.write(&body(i, size)).await.expect("write");
            let staged = up.finish().await.expect("finish");
            let path = StoragePath::strict(&path).expect("path");
            store
                .put(&pks[u], &path, staged, "application/octet-stream", 1)
                .await
                .expect("put");
            written.store(i + 1, Ordering::Relaxed);
        }
        // What the store's archiver has not moved yet (it works every few seconds).
        store.archive_events().expect("archive");
        store.close().await.expect("close");
    });
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    let took = started.elapsed().as_secs_f64();
    println!(
        "filled {files} files in {took:.1} s ({:.0} files/s), fill process peak RSS {:.1} MiB",
        files as f64 / took,
        rss_kib(std::process::id(), "VmHWM:") as f64 / 1024.0
    );
    samples
}

/// Keys and bytes per tree of the (closed) database: where the space goes.
fn census(db: &Path) {
    let db = sled::open(db).expect("open db for the census");
    println!(
        "{:<16} {:>10} {:>12} {:>12}",
        "tree", "keys", "key bytes", "value bytes"
    );
    for name in db.tree_names() {
        let tree = db.open_tree(&name).expect("tree");
        let (mut n, mut kb, mut vb) = (0u64, 0u64, 0u64);
        for kv in tree.iter() {
            let (k, v) = kv.expect("item");
            n += 1;
            kb += k.len() as u64;
            vb += v.len() as u64;
        }
        if n > 0 {
            let name = String::from_utf8_lossy(&name).into_owned();
            println!("{name:<16} {n:>10} {kb:>12} {vb:>12}");
        }
    }
}

/// What one phase measured.
struct Measured {
    requests: usize,
    errors: usize,
    rate: f64,
    lat_us: Vec<u32>,
}

type MakeRequest = dyn Fn(usize, &mut Rng) -> (String, String, String, Vec<u8>) + Send + Sync;

/// `conns` keep-alive connections issuing `make`'s requests for `secs`.
fn phase(addr: SocketAddr, conns: usize, secs: u64, make: Arc<MakeRequest>) -> Measured {
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let start = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|c| {
            let (stop, out, make) = (stop.clone(), out.clone(), make.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut rng = Rng(c as u64 * 7919 + 1);
                let (mut lat, mut errors) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    let (method, path, extra, body) = make(c, &mut rng);
                    let t = Instant::now();
                    let (status, _) = conn.call(&method, &path, &extra, &body);
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    errors += usize::from(!(200..300).contains(&status));
                }
                let mut o = out.lock().expect("results");
                o.0.extend(lat);
                o.1 += errors;
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut o = out.lock().expect("results");
    o.0.sort_unstable();
    Measured {
        requests: o.0.len(),
        errors: o.1,
        rate: o.0.len() as f64 / elapsed,
        lat_us: std::mem::take(&mut o.0),
    }
}

fn write_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A grant session for `user` on the server at `addr`; the bearer header line.
fn sign_in(addr: SocketAddr, hs: PublicKey, user: &SigningKey) -> String {
    let mut c = Conn::open(addr);
    let (st, resp) = c.call(
        "POST",
        "/auth/grant/session",
        "content-type: application/json\r\n",
        proof(user, hs, "scale", 86400).as_bytes(),
    );
    assert_eq!(st, 200, "sign-in: {}", String::from_utf8_lossy(&resp));
    let v: serde_json::Value = serde_json::from_slice(&resp).expect("json");
    format!(
        "authorization: Bearer {}\r\n",
        v["token"].as_str().expect("token")
    )
}

/// Durable PUTs of new files at `conns` connections; (rate, bytes written per PUT).
fn put_phase(
    addr: SocketAddr,
    pid: u32,
    conns: usize,
    secs: u64,
    pk: PublicKey,
    auth: &str,
    size: usize,
) -> (Measured, f64) {
    let auth = auth.to_string();
    let before = write_bytes(pid);
    let r = phase(
        addr,
        conns,
        secs,
        Arc::new(move |c, rng| {
            let path = format!("/storage/{pk}/pub/new{conns}/c{c}/{}", rng.below(u64::MAX));
            ("PUT".into(), path, auth.clone(), vec![b'n'; size])
        }),
    );
    let per = (write_bytes(pid) - before) as f64 / r.requests.max(1) as f64;
    (r, per)
}

fn row(name: &str, r: &Measured, peak_mib: f64) {
    println!(
        "{name:<22} {:>9.0} {:>9.2} {:>9.2} {:>7} {:>9.1}",
        r.rate,
        pct(&r.lat_us, 0.50),
        pct(&r.lat_us, 0.99),
        r.errors,
        peak_mib
    );
}

/// RSS over the fill as an SVG line chart.
fn plot(path: &Path, samples: &[(usize, f64)], files: usize) {
    let (w, h, m) = (800.0, 420.0, 60.0);
    let max_rss = samples.iter().map(|s| s.1).fold(1.0, f64::max) * 1.1;
    let x = |n: usize| m + (w - 2.0 * m) * n as f64 / files.max(1) as f64;
    let y = |mib: f64| h - m - (h - 2.0 * m) * mib / max_rss;
    let points: Vec<String> = samples
        .iter()
        .map(|(n, mib)| format!("{:.1},{:.1}", x(*n), y(*mib)))
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{m}\" y=\"24\" font-size=\"15\">RSS of the store while {files} files are written</text>\n\
         <line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - m,
        w - m,
        h - m,
        h - m
    );
    for k in 0..=4 {
        let mib = max_rss * k as f64 / 4.0;
        let n = files * k / 4;
        svg += &format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{mib:.0} MiB</text>\n\
             <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{n}</text>\n",
            m - 6.0,
            y(mib) + 4.0,
            x(n),
            h - m + 18.0
        );
    }
    svg += &format!(
        "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">files written</text>\n\
         <polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\" points=\"{}\"/>\n</svg>\n",
        w / 2.0,
        h - 16.0,
        points.join(" ")
    );
    std::fs::write(path, svg).expect("write plot");
    println!("RSS plot: {}", path.display());
}

fn main() {
    let o = parse_opts();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = o.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("dir");
    let data = dir.join("data");
    let keys_file = dir.join("users.seeds");
    let users: Vec<SigningKey> = match std::fs::read_to_string(&keys_file) {
        Ok(text) if data.join("db").exists() => {
            println!("reusing the store in {}", dir.display());
            text.lines()
                .map(|l| {
                    let seed: Vec<u8> = (0..32)
                        .map(|i| u8::from_str_radix(&l[2 * i..2 * i + 2], 16).expect("hex"))
                        .collect();
                    SigningKey::from_bytes(&seed.try_into().expect("32 bytes"))
                })
                .collect()
        }
        _ => {
            let users: Vec<SigningKey> = (0..o.users).map(|_| key()).collect();
            let hex: Vec<String> = users
                .iter()
                .map(|k| k.to_bytes().iter().map(|b| format!("{b:02x}")).collect())
                .collect();
            std::fs::write(&keys_file, hex.join("\n")).expect("seeds");
            let samples = fill(&data, &users, o.files, o.size);
            if let Some(p) = &o.plot {
                plot(p, &samples, o.files);
            }
            users
        }
    };
    let pks: Vec<PublicKey> = users.iter().map(|k| k.verifying_key().into()).collect();
    let payload = (o.files * o.size) as u64;
    let (db, archive, blobs) = (
        disk_bytes(&data.join("db")),
        disk_bytes(&data.join("events")),
        disk_bytes(&data.join("blobs")),
    );
    println!(
        "payload {:.1} MiB; database {:.1} MiB + event archive {:.1} MiB + blob files {:.1} MiB \
         = {:.2}x the payload",
        payload as f64 / 1048576.0,
        db as f64 / 1048576.0,
        archive as f64 / 1048576.0,
        blobs as f64 / 1048576.0,
        (db + archive + blobs) as f64 / payload.max(1) as f64
    );
    census(&data.join("db"));

    let board = o.board.as_deref();
    let mut server = launch(&o.binary, &dir, &data, "", board);
    let pid = server.child.id();
    println!(
        "board {}: ready {:.2} s after start",
        board.unwrap_or("(defaults)"),
        server.ready_after.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "idle RSS after restart: {:.1} MiB",
        rss_kib(pid, "VmRSS:") as f64 / 1024.0
    );
    // A sample read back through HTTP, byte for byte.
    let (addr, files, users_n, size) = (server.addr, o.files, o.users, o.size);
    let mut c = Conn::open(addr);
    let mut rng = Rng(42);
    for _ in 0..50 {
        let i = rng.below(files as u64) as usize;
        let (u, path) = place(i, users_n);
        let (st, got) = c.call("GET", &format!("/storage/{}{path}", pks[u]), "", &[]);
        assert_eq!(st, 200, "file {i}");
        assert_eq!(got, body(i, size), "file {i}");
    }
    drop(c);
    let peak = || rss_kib(pid, "VmHWM:") as f64 / 1024.0;
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>7} {:>9}",
        "phase (16 conns)", "req/s", "p50 ms", "p99 ms", "errors", "peak MiB"
    );
    let pks = Arc::new(pks);
    let get = {
        let pks = pks.clone();
        Arc::new(move |_: usize, rng: &mut Rng| {
            let i = rng.below(files as u64) as usize;
            let (u, path) = place(i, users_n);
            (
                "GET".into(),
                format!("/storage/{}{path}", pks[u]),
                String::new(),
                Vec::new(),
            )
        })
    };
    let r = phase(addr, 16, o.seconds, get);
    row("GET random file", &r, peak());
    let get_rate = r.rate;
    let dirs = (files / users_n / 1000).max(1) as u64;
    let list = {
        let pks = pks.clone();
        Arc::new(move |_: usize, rng: &mut Rng| {
            let u = rng.below(users_n as u64) as usize;
            let d = rng.below(dirs);
            let path = format!("/storage/{}/pub/scale/d{d}/?limit=100", pks[u]);
            ("GET".into(), path, String::new(), Vec::new())
        })
    };
    row(
        "list 100 of a dir",
        &phase(addr, 16, o.seconds, list),
        peak(),
    );
    let feed = Arc::new(move |_: usize, rng: &mut Rng| {
        let cursor = rng.below(files as u64);
        let path = format!("/events/?cursor={cursor}&limit=100");
        ("GET".into(), path, String::new(), Vec::new())
    });
    row("feed 100 events", &phase(addr, 16, o.seconds, feed), peak());
    let auth = sign_in(addr, server.key, &users[0]);
    let (r1, w1) = put_phase(addr, pid, 1, o.seconds, pks[0], &auth, size);
    row("PUT new file, 1 conn", &r1, peak());
    let (r16, w16) = put_phase(addr, pid, 16, o.seconds, pks[0], &auth, size);
    row("PUT new file, 16 conns", &r16, peak());
    println!(
        "written to disk per durable {size} B PUT: {:.1} KiB at 1 connection, {:.1} KiB at 16",
        w1 / 1024.0,
        w16 / 1024.0
    );
    println!("server peak RSS (VmHWM): {:.1} MiB", peak());
    let _ = server.child.kill();
    let _ = server.child.wait();

    // The same GET and PUT on an empty store (1,000 files to read).
    let empty_dir = tempfile::tempdir().expect("tempdir");
    let mut empty = launch(
        &o.binary,
        empty_dir.path(),
        &empty_dir.path().join("data"),
        "",
        board,
    );
    let user = key();
    let pk: PublicKey = user.verifying_key().into();
    let mut c = Conn::open(empty.addr);
    let (st, _) = c.call(
        "POST",
        "/auth/grant/signup",
        "content-type: application/json\r\n",
        proof(&user, empty.key, "pubky.signup", 300).as_bytes(),
    );
    assert_eq!(st, 204, "signup");
    let auth = sign_in(empty.addr, empty.key, &user);
    for i in 0..1000 {
        let (st, _) = c.call(
            "PUT",
            &format!("/storage/{pk}/pub/e/f{i}"),
            &auth,
            &body(i, size),
        );
        assert_eq!(st, 201);
    }
    drop(c);
    let get = Arc::new(move |_: usize, rng: &mut Rng| {
        let path = format!("/storage/{pk}/pub/e/f{}", rng.below(1000));
        ("GET".into(), path, String::new(), Vec::new())
    });
    let e_get = phase(empty.addr, 16, o.seconds, get);
    let epid = empty.child.id();
    let (e_put, _) = put_phase(empty.addr, epid, 16, o.seconds, pk, &auth, size);
    println!(
        "against an empty store: GET {:.0}/s ({:.0}% of it here), PUT at 16 conns {:.0}/s ({:.0}%)",
        e_get.rate,
        100.0 * get_rate / e_get.rate.max(1e-9),
        e_put.rate,
        100.0 * r16.rate / e_put.rate.max(1e-9)
    );
    let _ = empty.child.kill();
    let _ = empty.child.wait();
    let _ = std::io::stdout().flush();
}

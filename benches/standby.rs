//! Standby benchmark: how fast a standby follows its primary, on loopback, with the
//! release binary for both boxes (the standby reaches the primary over PubkyTLS, as it
//! would over the internet).
//!
//! 1. **Live lag.** The standby follows while `--conns` connections PUT new files of
//!    `--size` bytes on the primary for `--seconds`. Every 20 ms the primary's and the
//!    standby's last event are read (admin API) for the lag in events; every 50 ms a probe
//!    PUTs a file on the primary and times until the standby serves it: the lag in time,
//!    from the write's acknowledgement to its first read on the standby.
//! 2. **Catch-up.** The standby is stopped while `--backlog` more files (a tenth of them
//!    64 KiB blobs, the rest `--size` bytes) are written, then started again: events per
//!    second and MiB per second of bodies until it holds everything.
//!
//! `cargo bench --bench standby -- [--conns 16] [--seconds 10] [--size 1024] [--backlog 20000]`

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{pct, Conn};
use common::{key, launch, options, proof, rss_kib, Launched};
use pubky_edge::pubkey::PublicKey;

struct Opts {
    conns: usize,
    seconds: u64,
    size: usize,
    backlog: usize,
    binary: PathBuf,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        conns: 16,
        seconds: 10,
        size: 1024,
        backlog: 20_000,
        binary: PathBuf::from(env!("CARGO_BIN_EXE_pubky-edge")),
    };
    for (k, v) in options() {
        match k.as_str() {
            "--conns" => o.conns = v.parse().expect("number"),
            "--seconds" => o.seconds = v.parse().expect("number"),
            "--size" => o.size = v.parse().expect("number"),
            "--backlog" => o.backlog = v.parse().expect("number"),
            "--binary" => o.binary = v.into(),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A box: its config, data directory and admin address.
struct Box_ {
    dir: PathBuf,
    data: PathBuf,
    admin: SocketAddr,
    extra: String,
}

impl Box_ {
    fn new(root: &Path, name: &str) -> Box_ {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let extra = format!(
            "[admin]\nlisten_socket = \"{admin}\"\npassword = \"bench-admin\"\n\
             [limits]\nmax_connections = 2048\nmax_connections_per_ip = 2048\n"
        );
        Box_ {
            data: dir.join("data"),
            dir,
            admin,
            extra,
        }
    }

    fn start(&self, binary: &Path) -> Launched {
        launch(binary, &self.dir, &self.data, &self.extra, None)
    }

    fn admin(&self, method: &str, path: &str) -> serde_json::Value {
        let mut c = Conn::open(self.admin);
        let (st, body) = c.call(method, path, "x-admin-password: bench-admin\r\n", b"");
        assert_eq!(
            st,
            200,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("json")
    }

    fn head(&self) -> u64 {
        self.admin("GET", "/standby")["head"]
            .as_u64()
            .expect("head")
    }
}

fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// A user with a session on `addr`; the `authorization` header line.
fn user(addr: SocketAddr, hs: PublicKey) -> (PublicKey, String) {
    let u = key();
    let pk = PublicKey::from(u.verifying_key());
    let mut c = Conn::open(addr);
    let ct = "content-type: application/json\r\n";
    let (st, _) = c.call(
        "POST",
        "/auth/grant/signup",
        ct,
        proof(&u, hs, "pubky.signup", 300).as_bytes(),
    );
    assert_eq!(st, 204, "signup");
    let (st, resp) = c.call(
        "POST",
        "/auth/grant/session",
        ct,
        proof(&u, hs, "bench", 86400).as_bytes(),
    );
    assert_eq!(st, 200, "session");
    let v: serde_json::Value = serde_json::from_slice(&resp).expect("json");
    (
        pk,
        format!(
            "authorization: Bearer {}\r\n",
            v["token"].as_str().expect("token")
        ),
    )
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let o = parse_opts();
    let root = tempfile::tempdir().expect("tempdir");
    let p = Box_::new(root.path(), "primary");
    let s = Box_::new(root.path(), "standby");
    let primary = p.start(&o.binary);
    let hs = primary.key;
    let code = p.admin("POST", "/standby/code")["code"]
        .as_str()
        .expect("code")
        .to_string();
    // Pairing reads no listener settings; the DHT stays off (nothing leaves the machine).
    let pair_cfg = s.dir.join("pair.toml");
    std::fs::write(&pair_cfg, "[pkdns]\ndht = false\n").unwrap();
    let paired = Command::new(&o.binary)
        .arg("--config")
        .arg(&pair_cfg)
        .arg("--data-dir")
        .arg(&s.data)
        .args([
            "standby",
            "pair",
            &code,
            "--at",
            &primary.tls_addr.to_string(),
        ])
        .output()
        .expect("pair");
    assert!(
        paired.status.success(),
        "pair: {}",
        String::from_utf8_lossy(&paired.stderr)
    );
    let standby = s.start(&o.binary);

    // 1. Live lag under PUT load.
    let (pk, auth) = user(primary.addr, hs);
    let stop_load = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..o.conns)
        .map(|w| {
            let (stop_load, written, auth) = (stop_load.clone(), written.clone(), auth.clone());
            let (addr, size) = (primary.addr, o.size);
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                let body = vec![b'x'; size];
                let mut i = 0u64;
                while !stop_load.load(Ordering::Relaxed) {
                    let (st, _) = c.call(
                        "PUT",
                        &format!("/storage/{pk}/pub/load/{w}/{i}"),
                        &auth,
                        &body,
                    );
                    assert_eq!(st, 201, "PUT");
                    written.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let (mut lag_events, mut lag_us) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut probe = Conn::open(primary.addr);
    let mut reader = Conn::open(standby.addr);
    let mut n = 0u64;
    let mut peak_standby = 0u64;
    while started.elapsed() < Duration::from_secs(o.seconds) {
        let (head, follows) = (p.head(), s.head());
        lag_events.push(head.saturating_sub(follows) as u32);
        if lag_events.len() % 3 == 0 {
            n += 1;
            let path = format!("/storage/{pk}/pub/probe/{n}");
            let (st, _) = probe.call("PUT", &path, &auth, b"probe");
            assert_eq!(st, 201);
            let acked = Instant::now();
            loop {
                let (st, _) = reader.call("GET", &path, "", b"");
                if st == 200 {
                    break;
                }
                assert!(
                    acked.elapsed() < Duration::from_secs(30),
                    "probe never arrived"
                );
            }
            lag_us.push(acked.elapsed().as_micros() as u32);
        }
        peak_standby = peak_standby.max(rss_kib(standby.child.id(), "VmHWM:"));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_load.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let live_secs = started.elapsed().as_secs_f64();
    let live_writes = written.load(Ordering::Relaxed);
    wait_until("the standby did not catch up after the load", 120, || {
        s.head() >= p.head()
    });
    lag_events.sort_unstable();
    lag_us.sort_unstable();
    println!(
        "pubky-edge standby: {} connections of new {} B files for {} s, over PubkyTLS on loopback",
        o.conns, o.size, o.seconds
    );
    println!(
        "primary took {:.0} PUTs/s; lag in events p50 {:.0}, p99 {:.0}, max {} ({} samples)",
        live_writes as f64 / live_secs,
        pct_raw(&lag_events, 0.5),
        pct_raw(&lag_events, 0.99),
        lag_events.last().copied().unwrap_or(0),
        lag_events.len()
    );
    println!(
        "write acknowledged on the primary -> first read on the standby: p50 {:.1} ms, p99 {:.1} ms ({} probes)",
        pct(&lag_us, 0.5),
        pct(&lag_us, 0.99),
        lag_us.len()
    );
    println!("standby peak RSS: {:.1} MiB", peak_standby as f64 / 1024.0);

    // 2. Catch-up after the standby was away.
    stop(standby.child);
    let mut c = Conn::open(primary.addr);
    let small = vec![b's'; o.size];
    let mut bytes = 0u64;
    for i in 0..o.backlog {
        // Distinct blobs: each has to travel.
        let body = if i % 10 == 0 {
            let mut b = vec![(i % 251) as u8; 64 << 10];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            b
        } else {
            small.clone()
        };
        let (st, _) = c.call(
            "PUT",
            &format!("/storage/{pk}/pub/backlog/{i}"),
            &auth,
            &body,
        );
        assert_eq!(st, 201);
        bytes += body.len() as u64;
    }
    let (from, to) = (s.head_offline(), p.head());
    let back = Instant::now();
    let standby = s.start(&o.binary);
    wait_until("the standby did not catch up", 600, || s.head() >= to);
    let secs = back.elapsed().as_secs_f64();
    println!(
        "catch-up of {} events ({:.1} MiB of bodies) from start to caught up: {:.2} s: {:.0} events/s, {:.1} MiB/s",
        to - from,
        bytes as f64 / (1 << 20) as f64,
        secs,
        (to - from) as f64 / secs,
        bytes as f64 / (1 << 20) as f64 / secs
    );
    println!(
        "standby peak RSS over the run: {:.1} MiB",
        rss_kib(standby.child.id(), "VmHWM:") as f64 / 1024.0
    );
    stop(standby.child);
    stop(primary.child);
}

impl Box_ {
    /// The last event of a stopped box, from its follow status.
    fn head_offline(&self) -> u64 {
        let st = std::fs::read(self.data.join("standby/follow-status.json")).expect("status");
        let v: serde_json::Value = serde_json::from_slice(&st).expect("json");
        v["local_head"].as_u64().expect("local_head")
    }
}

/// The `p` quantile of plain counts.
fn pct_raw(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64
}

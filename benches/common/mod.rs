//! What both benchmarks need: the release server started on loopback ports with a temp
//! data directory (DHT off, admin and metrics on ephemeral loopback ports, so nothing leaves
//! the machine), its memory from /proc, and grant + proof bodies for signup and sessions.

pub mod client;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use pubky_edge::auth::capability::Capabilities;
use pubky_edge::auth::mint;
use pubky_edge::pubkey::PublicKey;

// Each benchmark reads some of the fields; `dir` keeps the data directory alive.
#[allow(dead_code)]
pub struct ServerProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
    /// The homeserver's public key.
    pub key: PublicKey,
    pub dir: tempfile::TempDir,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts `binary` with open signup and `extra_toml` appended to the config; returns once
/// the HTTP listener accepts.
#[allow(dead_code)] // not every benchmark starts a fresh server
pub fn start_server(binary: &Path, extra_toml: &str) -> ServerProc {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let l = launch(binary, dir.path(), &data, extra_toml, None);
    ServerProc {
        child: l.child,
        addr: l.addr,
        tls_addr: l.tls_addr,
        key: l.key,
        dir,
    }
}

/// A server process started by [`launch`]; the caller owns (and must kill) the child.
#[allow(dead_code)] // each benchmark reads some of the fields
pub struct Launched {
    pub child: Child,
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
    pub key: PublicKey,
    /// From spawning the process to its first answer to `GET /info`.
    pub ready_after: Duration,
}

/// Starts `binary` on the data directory `data` (created if missing) with its config in
/// `dir`, optionally with a board overlay; returns once it answers `GET /info`.
pub fn launch(
    binary: &Path,
    dir: &Path,
    data: &Path,
    extra_toml: &str,
    board: Option<&str>,
) -> Launched {
    let port = free_port();
    let tls_port = free_port();
    let cfg = dir.join("bench.toml");
    // Free ports for the dashboard and the admin API unless the caller places them.
    let dashboard = if extra_toml.contains("[dashboard]") {
        ""
    } else {
        "[dashboard]\nlisten_socket = \"127.0.0.1:0\"\n"
    };
    let admin = if extra_toml.contains("[admin]") {
        ""
    } else {
        "[admin]\nlisten_socket = \"127.0.0.1:0\"\n"
    };
    std::fs::write(
        &cfg,
        format!(
            "[general]\nsignup_mode = \"open\"\n[drive]\nicann_listen_socket = \"127.0.0.1:{port}\"\n\
             pubky_listen_socket = \"127.0.0.1:{tls_port}\"\n[pkdns]\ndht = false\n\
             {admin}[metrics]\nlisten_socket = \"127.0.0.1:0\"\n{dashboard}\
             [logging]\nlevel = \"warn\"\n{extra_toml}"
        ),
    )
    .expect("config");
    let command = || {
        let mut c = Command::new(binary);
        c.arg("--config").arg(&cfg).arg("--data-dir").arg(data);
        if let Some(b) = board {
            c.arg("--board").arg(b);
        }
        c
    };
    let info = command().arg("info").output().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e} (build it with --release)",
            binary.display()
        )
    });
    let text = String::from_utf8_lossy(&info.stdout);
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("public key:"))
        .map(|k| PublicKey::parse_z32(k.trim()).expect("key"))
        .expect("public key line");
    let spawned = Instant::now();
    let child = command()
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn server");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !answers_info(addr) {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    Launched {
        child,
        addr,
        tls_addr: format!("127.0.0.1:{tls_port}").parse().expect("addr"),
        key,
        ready_after: spawned.elapsed(),
    }
}

fn answers_info(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

/// The command line as `(--option, value)` pairs, without the `--bench` cargo adds.
pub fn options() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        out.push((a, v));
    }
    out
}

/// A `/proc/<pid>/status` memory field (`VmRSS:`, `VmHWM:`) in KiB.
#[allow(dead_code)] // not every benchmark uses it
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[allow(dead_code)] // not every benchmark uses it
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[allow(dead_code)] // not every benchmark uses it
pub fn key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("random");
    SigningKey::from_bytes(&seed)
}

/// The JSON body of a grant from `user` (all of `/`, read-write) to a fresh client key,
/// with that client's proof for homeserver `hs`.
#[allow(dead_code)] // not every benchmark uses it
pub fn proof(user: &SigningKey, hs: PublicKey, client_id: &str, lifetime: u64) -> String {
    let caps = Capabilities::parse("/:rw").expect("caps");
    mint::client_request_body(user, &key(), hs, client_id, caps, now_secs(), lifetime)
}

/// Bytes a directory tree occupies on disk (allocated blocks).
#[allow(dead_code)] // not every benchmark uses it
pub fn disk_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| disk_bytes(&e.path())).sum())
        .unwrap_or(0)
}

/// How the benchmarks fill a store directly: small cache, relaxed durability (the fill is
/// closed cleanly before the server opens it).
#[allow(dead_code)] // only the benchmarks that fill a store use it
pub fn fill_config() -> pubky_edge::store::StoreConfig {
    pubky_edge::store::StoreConfig {
        cache_capacity_bytes: 8 << 20,
        inline_max: 16384,
        durability: pubky_edge::store::Durability::Relaxed,
        default_quota_bytes: None,
    }
}

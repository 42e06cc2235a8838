//! The real `pubky-edge` binary as a child process, for tests that must kill it, starve it
//! of disk or measure it: a config file with a fixed loopback port, start/wait/kill, a
//! non-panicking HTTP/1.1 client (the server may die mid-request), a seeded RNG, and the
//! server's memory high-water mark from `/proc`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pubky_edge::pubkey::PublicKey;

use crate::support::{self as common, parse_response, GrantSpec, Resp};

pub const BIN: &str = env!("CARGO_BIN_EXE_pubky-edge");

/// The binary the processes run: `PUBKY_EDGE_BIN` when set (e.g. a release build, for the
/// attack suite's report), else the one cargo built with the tests.
pub fn bin() -> String {
    std::env::var("PUBKY_EDGE_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// A data directory, a config for it and the homeserver key; the process comes and goes.
pub struct Node {
    pub data: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub addr: SocketAddr,
    pub hs: PublicKey,
    pub child: Option<Child>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Node {
    /// Writes a config (open signup, the given extra TOML) under `dir` and creates the
    /// identity with `pubky-edge info`.
    pub fn new(dir: &Path, data: &Path, extra_toml: &str) -> Node {
        let port = free_port();
        Self::with_config(
            dir,
            data,
            &format!(
                "{extra_toml}\n[general]\nsignup_mode = \"open\"\n[drive]\nicann_listen_socket = \"127.0.0.1:{port}\"\npubky_listen_socket = \"127.0.0.1:0\"\n[pkdns]\ndht = false\n[admin]\nlisten_socket = \"127.0.0.1:0\"\n[metrics]\nlisten_socket = \"127.0.0.1:0\"\n[dashboard]\nlisten_socket = \"127.0.0.1:0\"\n[logging]\nlevel = \"warn\"\n"
            ),
            port,
        )
    }

    /// Like `new` with the whole config given; `port` is its plain-HTTP listener's.
    pub fn with_config(dir: &Path, data: &Path, toml: &str, port: u16) -> Node {
        let config = dir.join("node.toml");
        std::fs::write(&config, toml).expect("write config");
        let out = Command::new(bin())
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data)
            .arg("info")
            .env_remove("RUST_LOG")
            .output()
            .expect("run pubky-edge info");
        assert!(
            out.status.success(),
            "info: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let hs = text
            .lines()
            .find_map(|l| l.strip_prefix("public key:"))
            .map(|k| PublicKey::parse_z32(k.trim()).expect("key"))
            .expect("public key line");
        Node {
            data: data.to_path_buf(),
            config,
            log: dir.join("server.log"),
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
            hs,
            child: None,
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) {
        self.start_with(|c| c);
    }

    /// Like `start`, with a hook to adjust the command (e.g. run it under `prlimit`).
    pub fn start_with(&mut self, wrap: impl FnOnce(Command) -> Command) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = wrap(cmd).spawn().expect("spawn pubky-edge");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited at start ({status}): {}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child = Some(child);
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the graceful exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = s.len().saturating_sub(4000);
        s.get(start..).unwrap_or("").to_string()
    }

    /// Signs a user up (open mode) and returns a root bearer token.
    pub fn signup(&self, user: &ed25519_dalek::SigningKey) -> String {
        let g = GrantSpec::new(user, self.hs, "pubky.signup", "/:rw", 300);
        let r = json_request(self.addr, "POST", "/auth/grant/signup", &g.body()).expect("signup");
        assert_eq!(r.status, 204, "signup: {}", r.text());
        let g = GrantSpec::new(user, self.hs, "proof.test", "/:rw", 86400);
        let r = json_request(self.addr, "POST", "/auth/grant/session", &g.body()).expect("session");
        assert_eq!(r.status, 200, "session: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        v["token"].as_str().expect("token").to_string()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn json_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    v: &serde_json::Value,
) -> std::io::Result<Resp> {
    let body = serde_json::to_vec(v).expect("json");
    request(
        addr,
        method,
        path,
        "content-type: application/json\r\n",
        &body,
    )
}

/// One request on a fresh connection (`connection: close`); any I/O failure or unparseable
/// answer is an error, never a panic, because the server may be killed at any moment.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &str,
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut msg = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\n{extra_headers}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    msg.extend_from_slice(body);
    // A server may answer (413, 507) and close before reading the whole body; the answer
    // is still worth reading then.
    let written = s.write_all(&msg);
    let mut buf = Vec::new();
    let read = s.read_to_end(&mut buf);
    if buf.is_empty() {
        written?;
        read?;
    }
    let resp = parse_response(&buf, method == "HEAD")
        .ok_or_else(|| std::io::Error::other("incomplete response"))?;
    // A response cut short by a kill must not pass for a complete one.
    if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if method != "HEAD" && resp.body.len() != len {
            return Err(std::io::Error::other("truncated body"));
        }
    }
    Ok(resp)
}

pub fn bearer(token: &str) -> String {
    format!("authorization: Bearer {token}\r\n")
}

/// splitmix64: small, seedable, good enough to pick operations and timings.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// A seed from `var`, else from the clock; printed so a failure can be replayed.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("seed {seed} (replay with {var}={seed})");
    seed
}

/// A kernel memory figure of a process in KiB (`VmHWM:` peak RSS, `VmRSS:` current).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Blob files (`<data>/blobs/xx/<hex>`) by name.
pub fn blob_files(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(data.join("blobs")) {
        for d in dirs.flatten() {
            if let Ok(files) = std::fs::read_dir(d.path()) {
                out.extend(
                    files
                        .flatten()
                        .map(|f| f.file_name().to_string_lossy().into_owned()),
                );
            }
        }
    }
    out.sort();
    out
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn random_key() -> ed25519_dalek::SigningKey {
    common::random_key()
}

/// Bytes available on the filesystem holding `path` (from `df`).
pub fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df output")
}

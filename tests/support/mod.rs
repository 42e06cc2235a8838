//! Test harness: a real pubky-edge started in-process on 127.0.0.1:0 with a temp data
//! directory, a plain blocking HTTP/1.1 client over std `TcpStream` (so tests can send
//! exactly the bytes they mean, malformed ones included), and helpers that mint real
//! grant/PoP JWS with fresh ed25519 keys.
#![allow(dead_code)]

pub mod proc;
pub mod replica;
pub mod sse;
pub mod transport;
pub mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use pubky_edge::app::{self, Running};
use pubky_edge::auth::grant::{GrantClaims, GrantId, PopClaims};
use pubky_edge::auth::{capability::Capabilities, jws};
use pubky_edge::config::Config;
use pubky_edge::pubkey::PublicKey;
use pubky_edge::runtime::Pool;

pub struct Server {
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub pk: PublicKey,
    pub data_dir: PathBuf,
    running: Option<Running>,
    /// The executor the server runs on, with two worker threads (as `pubky-edge run` has).
    pool: Option<Pool>,
    _tmp: Option<tempfile::TempDir>,
}

/// Config text used by tests: open signup, ephemeral ports, no DHT (tests that need one
/// start a local testnet and pass its bootstrap nodes).
pub const OPEN: &str = "[general]\nsignup_mode = \"open\"\n[drive]\nicann_listen_socket = \"127.0.0.1:0\"\npubky_listen_socket = \"127.0.0.1:0\"\n[pkdns]\ndht = false\n[admin]\nlisten_socket = \"127.0.0.1:0\"\npassword = \"test-admin\"\n[metrics]\nlisten_socket = \"127.0.0.1:0\"\n[dashboard]\nlisten_socket = \"127.0.0.1:0\"\n";

impl Server {
    pub fn start(extra_toml: &str) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Self::start_in(&dir, extra_toml);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on an existing data directory (restart tests).
    pub fn start_in(dir: &Path, extra_toml: &str) -> Server {
        let config = Config::from_layers(&[("test", OPEN), ("extra", extra_toml)])
            .unwrap()
            .config;
        let pool = Pool::new(3).unwrap();
        let running = pool
            .block_on(app::start(pool.executor(), config, dir.to_path_buf()))
            .unwrap();
        Server {
            addr: running.addrs.icann,
            tls_addr: running.addrs.pubky_tls,
            admin_addr: running.addrs.admin,
            metrics_addr: running.addrs.metrics,
            pk: running.public_key,
            data_dir: dir.to_path_buf(),
            running: Some(running),
            pool: Some(pool),
            _tmp: None,
        }
    }

    pub fn running(&self) -> &Running {
        // Invariant: `running` is only taken by `stop`/drop, which consume the server.
        self.running.as_ref().expect("server is running")
    }

    /// Waits until the homeserver record has been published to the DHT (or panics after
    /// `secs`). Event-driven: each publish attempt wakes the wait.
    pub fn wait_published(&self, secs: u64) {
        let r = self.running();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let attempted = r.probes.publish_attempted.listen();
            let st = r.probes.publish_status.lock().unwrap().clone();
            if st.last_success_secs.is_some() && st.last_error.is_none() {
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "not published within {secs}s: {st:?}");
            smol::block_on(smol::future::or(attempted, async {
                smol::Timer::after(left).await;
            }));
        }
    }

    /// Graceful stop; returns the temp dir guard so the data can be reopened.
    pub fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown();
        self._tmp.take()
    }

    fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            if let Some(pool) = &self.pool {
                pool.block_on(r.stop()).unwrap();
            }
        }
        // Dropping the pool joins its worker threads.
        self.pool.take();
    }

    pub fn req(&self, method: &str, path: &str) -> Req {
        Req {
            addr: self.addr,
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A request to the admin listener, without the password header.
    pub fn admin_raw(&self, method: &str, path: &str) -> Req {
        Req {
            addr: self.admin_addr.expect("admin listener enabled"),
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A request to the dashboard listener (Host `localhost` unless a header says otherwise).
    pub fn dashboard(&self, method: &str, path: &str) -> Req {
        Req {
            addr: self.running().addrs.dashboard.expect("dashboard enabled"),
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A request to the admin listener with the test password.
    pub fn admin(&self, method: &str, path: &str) -> Req {
        self.admin_raw(method, path)
            .header("x-admin-password", "test-admin")
    }

    /// The Prometheus text of the metrics listener.
    pub fn metrics(&self) -> String {
        let r = Req {
            addr: self.metrics_addr.expect("metrics listener enabled"),
            method: "GET".into(),
            path: "/metrics".into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
        .send();
        assert_eq!(r.status, 200);
        r.text()
    }

    pub fn storage_url(&self, user: &PublicKey, path: &str) -> String {
        format!("/storage/{user}{path}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub struct Req {
    addr: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn bearer(self, token: &str) -> Req {
        self.header("authorization", &format!("Bearer {token}"))
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Req {
        self.body = b.into();
        self
    }
    pub fn json(self, v: &serde_json::Value) -> Req {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(v).unwrap())
    }
    pub fn send(self) -> Resp {
        let mut raw = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            raw.push_str("host: localhost\r\n");
        }
        for (k, v) in &self.headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(&self.body);
        send_raw(self.addr, &bytes, self.method == "HEAD")
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The server said it closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
    pub fn lines(&self) -> Vec<String> {
        self.text()
            .split('\n')
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// A connection to `addr` from the loopback address `from` (e.g. 127.0.0.2), so one test can
/// be several clients to the per-address limits.
pub fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    try_connect_from(from, addr).unwrap()
}

/// `connect_from` for callers that expect refusals (an attacker, a server going away).
pub fn try_connect_from(from: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from((from, 0)).into())?;
    s.connect(&addr.into())?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

/// Sends `bytes` from loopback address `from` and reads the response until EOF.
pub fn send_from(from: [u8; 4], addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut s = connect_from(from, addr);
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    parse_response(&buf, false)
        .unwrap_or_else(|| panic!("unparseable response: {:?}", String::from_utf8_lossy(&buf)))
}

/// Sends raw bytes on a fresh connection and reads the response until EOF.
pub fn send_raw(addr: SocketAddr, bytes: &[u8], head: bool) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // A server may answer (507, 413) and close before the whole body is sent: the answer
    // is still there to read.
    if let Err(e) = s.write_all(bytes) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "sending: {e}");
    }
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    parse_response(&buf, head)
        .unwrap_or_else(|| panic!("unparseable response: {:?}", String::from_utf8_lossy(&buf)))
}

pub fn parse_response(buf: &[u8], head: bool) -> Option<Resp> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if head {
        Vec::new()
    } else if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).ok()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn random_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    SigningKey::from_bytes(&seed)
}

pub fn pk_of(k: &SigningKey) -> PublicKey {
    PublicKey::from(k.verifying_key())
}

/// A grant + PoP pair, with every field open to tampering by tests.
pub struct GrantSpec {
    pub user: SigningKey,
    pub client: SigningKey,
    pub client_id: String,
    pub caps: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub pop_iat: u64,
    pub aud: PublicKey,
}

impl GrantSpec {
    pub fn new(
        user: &SigningKey,
        hs: PublicKey,
        client_id: &str,
        caps: &str,
        lifetime: u64,
    ) -> Self {
        let n = now();
        GrantSpec {
            user: user.clone(),
            client: random_key(),
            client_id: client_id.into(),
            caps: caps.into(),
            iat: n,
            exp: n + lifetime,
            jti: GrantId::random().as_str().to_string(),
            pop_iat: n,
            aud: hs,
        }
    }

    pub fn grant_jws(&self) -> String {
        let claims = GrantClaims {
            iss: pk_of(&self.user),
            client_id: self.client_id.clone(),
            caps: Capabilities::parse(&self.caps).unwrap(),
            cnf: pk_of(&self.client),
            jti: GrantId::parse(&self.jti).unwrap(),
            iat: self.iat,
            exp: self.exp,
        };
        jws::sign("pubky-grant", claims.to_json().as_bytes(), &self.user)
    }

    pub fn pop_jws(&self) -> String {
        let claims = PopClaims {
            aud: self.aud,
            gid: GrantId::parse(&self.jti).unwrap(),
            nonce: GrantId::random(),
            iat: self.pop_iat,
        };
        jws::sign("pubky-pop", claims.to_json().as_bytes(), &self.client)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "grant": self.grant_jws(), "pop": self.pop_jws() })
    }
}

/// Signs up `user` (open mode) and returns a root bearer session token.
pub fn signup_and_signin(s: &Server, user: &SigningKey) -> String {
    let g = GrantSpec::new(user, s.pk, "pubky.signup", "/:rw", 300);
    let r = s.req("POST", "/auth/grant/signup").json(&g.body()).send();
    assert_eq!(r.status, 204, "signup: {}", r.text());
    signin(s, user, "/:rw")
}

/// Opens a session for `user` with the given capabilities; returns the bearer.
pub fn signin(s: &Server, user: &SigningKey, caps: &str) -> String {
    let g = GrantSpec::new(user, s.pk, "test.app", caps, 3600 * 24);
    let r = s.req("POST", "/auth/grant/session").json(&g.body()).send();
    assert_eq!(r.status, 200, "signin: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// A signed-up user with a root session.
#[derive(Clone)]
pub struct User {
    pub key: SigningKey,
    pub pk: PublicKey,
    pub token: String,
}

/// A PUT of `body` to `path` with the user's own session; must be answered 201.
pub fn put_file(s: &Server, u: &User, path: &str, body: &[u8]) {
    let r = s
        .req("PUT", &s.storage_url(&u.pk, path))
        .bearer(&u.token)
        .body(body.to_vec())
        .send();
    assert_eq!(r.status, 201, "PUT {path}: {}", r.text());
}

pub fn new_user(s: &Server) -> User {
    let key = random_key();
    let token = signup_and_signin(s, &key);
    User {
        pk: pk_of(&key),
        key,
        token,
    }
}

/// Whether the real peer `tool` is installed (`arg` makes it print its version). Under
/// `.ci/run`, which installs the peers and sets `PUBKY_EDGE_REQUIRE_PEERS=1`, a missing one
/// fails the test; elsewhere the test notes it and skips that part.
pub fn installed(tool: &str, arg: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    assert!(
        found || std::env::var_os("PUBKY_EDGE_REQUIRE_PEERS").is_none(),
        "{tool} is required here (apt-get install {tool})"
    );
    if !found {
        eprintln!("note: {tool} is not installed; the part of this test that needs it did not run");
    }
    found
}

/// The official SDK's HTTP client on a loopback DHT testnet (`bootstrap`), nothing else.
pub fn sdk_client(bootstrap: &[String]) -> pubky::PubkyHttpClient {
    pubky::PubkyHttpClient::builder()
        .pkarr(|p| {
            p.no_default_network()
                .bootstrap(bootstrap)
                .dht(|c| {
                    c.port = Some(0);
                    c
                })
                .dht_report_policy(pubky::pkarr::dht::ReportPolicy::testnet())
                .dht_request_timeout(Duration::from_millis(800))
        })
        .request_timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

//! A storage round trip against a running homeserver, used by `images/boot-test` from the
//! host:
//! - `write` creates a user key (saved to KEY_FILE), signs up, opens a session, PUTs a file
//!   and reads it back; `check` (after a reboot) signs in again with the saved key and reads
//!   the same file.
//! - `churn STATE` (power-cut test) runs concurrent PUTs and DELETEs as that user until the
//!   server stops answering, then saves to STATE, per path, the last acknowledged value and
//!   the operation that was in flight; `verify STATE` (after the reboot) checks that every
//!   path holds its acknowledged value or its in-flight one, and that the listing names
//!   exactly the files that exist, then saves what it saw for the next round. With
//!   `CHURN_LOG=FILE`, `churn` also logs every operation's send and acknowledgement times
//!   (for `scripts/power-cut-sim`).
//!
//! - `upload MIB` PUTs a file of MIB MiB, GETs it back, and prints both rates (the boot
//!   test's upload measurement on a throttled disk).
//!
//! Grants and proofs are minted with the crate's own `auth` code, as the integration tests do.
//!
//! cargo run --example roundtrip -- URL HOMESERVER_PUBKEY KEY_FILE write|check [SIGNUP_TOKEN]
//! cargo run --example roundtrip -- URL HOMESERVER_PUBKEY KEY_FILE churn|verify STATE
//! cargo run --example roundtrip -- URL HOMESERVER_PUBKEY KEY_FILE upload MIB

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use pubky_edge::auth::{capability::Capabilities, mint};
use pubky_edge::pubkey::PublicKey;
use serde::{Deserialize, Serialize};

const PATH: &str = "/pub/boot-test/hello.txt";
const USAGE: &str = "usage: roundtrip URL HOMESERVER_PUBKEY KEY_FILE write|check [SIGNUP_TOKEN]\n       roundtrip URL HOMESERVER_PUBKEY KEY_FILE churn|verify STATE\n       roundtrip URL HOMESERVER_PUBKEY KEY_FILE upload MIB";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    let result = match (args[3].as_str(), args.get(4)) {
        ("churn", Some(state)) => session_of(&args).and_then(|s| churn(&s, state)),
        ("verify", Some(state)) => session_of(&args).and_then(|s| verify(&s, state)),
        ("upload", Some(mib)) => session_of(&args).and_then(|s| upload(&s, mib)),
        ("churn" | "verify" | "upload", None) => Err(USAGE.into()),
        _ => run(&args),
    };
    if let Err(e) = result {
        eprintln!("roundtrip: {e}");
        std::process::exit(1);
    }
}
fn run(args: &[String]) -> Result<(), String> {
    let host = host_of(&args[0])?;
    let hs = PublicKey::parse_z32(&args[1]).map_err(|e| format!("homeserver key: {e:?}"))?;
    let key_file = &args[2];
    let user = match args[3].as_str() {
        "write" => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
            let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(key_file, hex).map_err(|e| format!("{key_file}: {e}"))?;
            let user = SigningKey::from_bytes(&seed);
            let query = args
                .get(4)
                .map(|t| format!("?signup_token={t}"))
                .unwrap_or_default();
            let body = grant_body(&user, hs, "pubky.signup", 300);
            let (status, text) = http(
                host,
                "POST",
                &format!("/auth/grant/signup{query}"),
                None,
                &body,
            )?;
            expect(status, 204, "signup", &text)?;
            user
        }
        "check" => load_key(key_file)?,
        other => return Err(format!("unknown mode {other}\n{USAGE}")),
    };
    let user_pk = PublicKey::from(user.verifying_key());
    let token = open_session(host, hs, &user)?;
    let token = token.as_str();
    let url = format!("/storage/{user_pk}{PATH}");
    let content = format!("stored on {hs} for {user_pk}");
    if args[3] == "write" {
        let (status, text) = http(host, "PUT", &url, Some(token), content.as_bytes())?;
        expect(status, 201, "PUT", &text)?;
    }
    let (status, text) = http(host, "GET", &url, Some(token), b"")?;
    expect(status, 200, "GET", &text)?;
    if text != content {
        return Err(format!("GET returned {text:?}, expected {content:?}"));
    }
    println!("{} ok: {user_pk}{PATH}", args[3]);
    Ok(())
}

fn host_of(url: &str) -> Result<&str, String> {
    Ok(url
        .strip_prefix("http://")
        .ok_or("URL must start with http://")?
        .trim_end_matches('/'))
}

fn load_key(key_file: &str) -> Result<SigningKey, String> {
    let hex = std::fs::read_to_string(key_file).map_err(|e| format!("{key_file}: {e}"))?;
    let hex = hex.trim();
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or("short key file")?, 16)
            .map_err(|e| e.to_string())?;
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// Signs in with a fresh grant; returns the session's bearer token.
fn open_session(host: &str, hs: PublicKey, user: &SigningKey) -> Result<String, String> {
    let body = grant_body(user, hs, "boot-test", 3600);
    let (status, text) = http(host, "POST", "/auth/grant/session", None, &body)?;
    expect(status, 200, "session", &text)?;
    let session: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(session["token"]
        .as_str()
        .ok_or("no token in session")?
        .to_string())
}

fn expect(got: u16, want: u16, what: &str, body: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: HTTP {got}: {body}"))
    }
}

/// A grant from `user` (all of `/`, read-write) to a fresh client key, with the client's
/// proof for homeserver `hs`.
fn grant_body(user: &SigningKey, hs: PublicKey, client_id: &str, lifetime: u64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut seed = [0u8; 32];
    // Invariant: the OS random source is available on every supported platform.
    getrandom::fill(&mut seed).expect("OS randomness");
    let client = SigningKey::from_bytes(&seed);
    // Invariant: a constant, valid capability string.
    let caps = Capabilities::parse("/:rw").expect("valid caps");
    mint::client_request_body(user, &client, hs, client_id, caps, now, lifetime).into_bytes()
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the body as text.
fn http(
    host: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> Result<(u16, String), String> {
    let (status, body) = http_bytes(host, method, path, bearer, body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the body. An `Err` is
/// a transport failure (the server is gone); any HTTP status is an `Ok`.
fn http_bytes(
    host: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let auth = bearer
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no response head")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let mut rest = &buf[end + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        loop {
            let nl = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("bad chunk")?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16)
                .map_err(|e| e.to_string())?;
            rest = &rest[nl + 2..];
            if size == 0 {
                break out;
            }
            out.extend_from_slice(rest.get(..size).ok_or("short chunk")?);
            rest = rest.get(size + 2..).ok_or("short chunk")?;
        }
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

// --- power-cut churn and verification ---------------------------------------------------

const WORKERS: usize = 4;
const PATHS_PER_WORKER: usize = 6;
const PREFIX: &str = "/pub/power-cut/";
/// Bodies up to the default `storage.inline_max_bytes` are stored inline, larger ones as
/// blob files; the churn mixes both and a few shared bodies (deduplicated blobs).
const INLINE_MAX: u64 = 16384;
/// Churn gives up if the server is still answering after this long (the cut never came).
const CHURN_LIMIT: Duration = Duration::from_secs(900);

struct Session {
    host: String,
    user: PublicKey,
    token: String,
}

/// A file as length and BLAKE3 hex; `None` = no file.
type Value = Option<(u64, String)>;

#[derive(Serialize, Deserialize, Default, Clone)]
struct PathState {
    acked: Value,
    /// Sent but not answered when the server went away: it may have landed or not.
    in_flight: Option<InFlight>,
}

/// An unanswered operation: the value it would leave (`None` for a DELETE). A struct, so
/// that an in-flight DELETE (`Some(None)`) does not serialise like "nothing in flight".
#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct InFlight {
    value: Value,
}

#[derive(Serialize, Deserialize, Default)]
struct State {
    rounds: u64,
    paths: BTreeMap<String, PathState>,
}

fn session_of(args: &[String]) -> Result<Session, String> {
    let host = host_of(&args[0])?;
    let hs = PublicKey::parse_z32(&args[1]).map_err(|e| format!("homeserver key: {e:?}"))?;
    let key = load_key(&args[2])?;
    let token = open_session(host, hs, &key)?;
    Ok(Session {
        host: host.to_string(),
        user: PublicKey::from(key.verifying_key()),
        token,
    })
}

fn load_state(file: &str) -> Result<State, String> {
    match std::fs::read(file) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{file}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(format!("{file}: {e}")),
    }
}

fn save_state(file: &str, state: &State) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    std::fs::write(file, json).map_err(|e| format!("{file}: {e}"))
}

/// splitmix64: a small deterministic generator for choices and body bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: u64) -> Vec<u8> {
        (0..n.div_ceil(8))
            .flat_map(|_| self.next().to_le_bytes())
            .take(n as usize)
            .collect()
    }
}

fn value_of(body: &[u8]) -> Value {
    Some((body.len() as u64, blake3::hash(body).to_hex().to_string()))
}

/// Mostly inline-sized bodies (70%: they live in the database, whose flush is what a power
/// cut tests hardest; each blob-sized body's own fsync also commits the file system's
/// journal, which would mask a database that skips its sync), then blob-sized ones (20%)
/// and one of three bodies shared across paths (10%, deduplicated blobs).
fn pick_body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(20) {
        0..=13 => {
            let n = rng.below(INLINE_MAX + 1);
            rng.bytes(n)
        }
        14..=17 => {
            let n = INLINE_MAX + 1 + rng.below(240 * 1024);
            rng.bytes(n)
        }
        _ => {
            let i = rng.below(3);
            Rng(i + 1).bytes(40_000 + i)
        }
    }
}

fn all_paths() -> Vec<Vec<String>> {
    (0..WORKERS)
        .map(|w| {
            (0..PATHS_PER_WORKER)
                .map(|j| match j % 3 {
                    // some one level deeper, so the listing crosses directories
                    2 => format!("{PREFIX}w{w}/d/f{j}"),
                    _ => format!("{PREFIX}w{w}/f{j}"),
                })
                .collect()
        })
        .collect()
}

fn churn(s: &Session, state_file: &str) -> Result<(), String> {
    let mut state = load_state(state_file)?;
    state.rounds += 1;
    for path in all_paths().into_iter().flatten() {
        state.paths.entry(path).or_default();
    }
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
    let seed = u64::from_le_bytes(seed);
    eprintln!("churn: round {} started (seed {seed})", state.rounds);
    let model = Arc::new(Mutex::new(state));
    let log = OpLog::from_env()?;
    let started = std::time::Instant::now();
    let workers: Vec<_> = all_paths()
        .into_iter()
        .enumerate()
        .map(|(w, mine)| {
            let model = model.clone();
            let log = log.clone();
            let (host, auth) = (s.host.clone(), s.token.clone());
            let user = s.user;
            let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
            std::thread::spawn(move || -> Result<(u64, String), String> {
                let mut acked = 0;
                while started.elapsed() < CHURN_LIMIT {
                    let path = &mine[rng.below(mine.len() as u64) as usize];
                    let body = (rng.below(100) < 65).then(|| pick_body(&mut rng));
                    let value = body.as_deref().and_then(value_of);
                    let set = |st: &mut State, f: &dyn Fn(&mut PathState)| {
                        f(st.paths.get_mut(path).expect("path in model"))
                    };
                    set(&mut model.lock().unwrap(), &|p| {
                        p.in_flight = Some(InFlight {
                            value: value.clone(),
                        })
                    });
                    let url = format!("/storage/{user}{path}");
                    let op = log.sent(path, &value);
                    let (method, sent) = match &body {
                        Some(b) => ("PUT", http_bytes(&host, "PUT", &url, Some(&auth), b)),
                        None => (
                            "DELETE",
                            http_bytes(&host, "DELETE", &url, Some(&auth), b""),
                        ),
                    };
                    let status = match sent {
                        Ok((status, _)) => status,
                        // The server went away: this operation stays in flight.
                        Err(e) => return Ok((acked, e)),
                    };
                    if !matches!((method, status), ("PUT", 201) | ("DELETE", 204 | 404)) {
                        return Err(format!("{method} {path}: HTTP {status}"));
                    }
                    log.acked(op);
                    set(&mut model.lock().unwrap(), &|p| {
                        p.acked = value.clone();
                        p.in_flight = None;
                    });
                    acked += 1;
                }
                Err(format!(
                    "the server still answered after {} s",
                    CHURN_LIMIT.as_secs()
                ))
            })
        })
        .collect();
    let mut acked = 0;
    let mut first_error = None;
    for w in workers {
        match w.join().map_err(|_| "a worker panicked".to_string())? {
            Ok((n, why)) => {
                acked += n;
                first_error.get_or_insert(why);
            }
            Err(e) => first_error = Some(format!("FAILED: {e}")),
        }
    }
    let state = model.lock().unwrap();
    save_state(state_file, &state)?;
    let why = first_error.unwrap_or_default();
    if let Some(e) = why.strip_prefix("FAILED: ") {
        return Err(e.to_string());
    }
    let in_flight = state
        .paths
        .values()
        .filter(|p| p.in_flight.is_some())
        .count();
    println!(
        "churn: {acked} operations acknowledged in {:.1} s, {in_flight} in flight when the server went away ({why})",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn upload(s: &Session, mib: &str) -> Result<(), String> {
    let mib: usize = mib.parse().map_err(|e| format!("MIB: {e}"))?;
    let body: Vec<u8> = (0..mib << 20).map(|i| (i * 7 % 251) as u8).collect();
    let url = format!("/storage/{}/pub/boot-test/large", s.user);
    let t = std::time::Instant::now();
    let (status, _) = http_bytes(&s.host, "PUT", &url, Some(&s.token), &body)?;
    let up = t.elapsed().as_secs_f64();
    if status != 201 {
        return Err(format!("PUT: HTTP {status}"));
    }
    let t = std::time::Instant::now();
    let (status, got) = http_bytes(&s.host, "GET", &url, Some(&s.token), b"")?;
    let down = t.elapsed().as_secs_f64();
    if status != 200 || value_of(&got) != value_of(&body) {
        return Err(format!("GET: HTTP {status}, {} bytes back", got.len()));
    }
    let mibf = mib as f64;
    println!(
        "upload: {mib} MiB in {up:.2} s = {:.1} MiB/s; download {down:.2} s = {:.1} MiB/s",
        mibf / up,
        mibf / down
    );
    Ok(())
}

/// With `CHURN_LOG=FILE`, `churn` appends one JSON line per operation as it is sent
/// (`{"op","path","value","sent_us"}`) and one as it is acknowledged (`{"op","acked_us"}`),
/// in microseconds of the wall clock. `scripts/power-cut-sim` matches them against the
/// server's traced system calls to know which operations a simulated power cut must keep.
#[derive(Clone, Default)]
struct OpLog(Option<Arc<Mutex<(std::fs::File, u64)>>>);

impl OpLog {
    fn from_env() -> Result<OpLog, String> {
        let Some(file) = std::env::var_os("CHURN_LOG") else {
            return Ok(OpLog::default());
        };
        let f =
            std::fs::File::create(&file).map_err(|e| format!("{}: {e}", file.to_string_lossy()))?;
        Ok(OpLog(Some(Arc::new(Mutex::new((f, 0))))))
    }

    fn now_us() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros()
    }

    fn sent(&self, path: &str, value: &Value) -> u64 {
        let Some(log) = &self.0 else { return 0 };
        let mut log = log.lock().unwrap();
        log.1 += 1;
        let line = serde_json::json!({
            "op": log.1, "path": path, "value": value, "sent_us": Self::now_us(),
        });
        let op = log.1;
        let _ = writeln!(log.0, "{line}");
        op
    }

    fn acked(&self, op: u64) {
        let Some(log) = &self.0 else { return };
        let now = Self::now_us();
        let mut log = log.lock().unwrap();
        let _ = writeln!(log.0, "{}", serde_json::json!({"op": op, "acked_us": now}));
    }
}

fn verify(s: &Session, state_file: &str) -> Result<(), String> {
    let mut state = load_state(state_file)?;
    if state.paths.is_empty() {
        return Err(format!("{state_file}: no churn recorded"));
    }
    let mut problems = Vec::new();
    let (mut landed, mut lost) = (0, 0);
    for (path, st) in state.paths.iter_mut() {
        let url = format!("/storage/{}{path}", s.user);
        let (status, body) = http_bytes(&s.host, "GET", &url, Some(&s.token), b"")?;
        let seen = match status {
            200 => value_of(&body),
            404 => None,
            other => return Err(format!("GET {path}: HTTP {other}")),
        };
        match st.in_flight.as_ref().map(|f| &f.value) {
            Some(v) if *v == seen && seen != st.acked => landed += 1,
            Some(_) if seen == st.acked => lost += 1,
            _ if seen == st.acked => {}
            _ => problems.push(format!(
                "{path}: holds {} but {} was acknowledged (in flight: {})",
                describe(&seen),
                describe(&st.acked),
                st.in_flight
                    .as_ref()
                    .map_or("nothing".into(), |f| describe(&f.value))
            )),
        }
        st.acked = seen;
        st.in_flight = None;
    }
    let present: BTreeSet<&str> = state
        .paths
        .iter()
        .filter(|(_, st)| st.acked.is_some())
        .map(|(p, _)| p.as_str())
        .collect();
    let url = format!("/storage/{}{PREFIX}?limit=1000", s.user);
    let (status, body) = http_bytes(&s.host, "GET", &url, Some(&s.token), b"")?;
    let text = String::from_utf8_lossy(&body);
    let prefix = format!("pubky://{}", s.user);
    let listed: BTreeSet<&str> = match status {
        200 => text
            .lines()
            .map(|l| l.strip_prefix(prefix.as_str()).unwrap_or(l))
            .collect(),
        404 => BTreeSet::new(),
        other => return Err(format!("listing: HTTP {other}")),
    };
    if listed != present {
        problems.push(format!("listing {listed:?} but files {present:?}"));
    }
    if !problems.is_empty() {
        return Err(format!(
            "after round {}: {}",
            state.rounds,
            problems.join("\n  ")
        ));
    }
    let files = present.len();
    save_state(state_file, &state)?;
    println!(
        "verify: round {} ok: {} paths hold their acknowledged values, {files} files listed; in-flight operations: {landed} landed, {lost} did not",
        state.rounds,
        state.paths.len()
    );
    Ok(())
}

fn describe(v: &Value) -> String {
    match v {
        None => "no file".into(),
        Some((len, hash)) => format!("{len} bytes {}", &hash[..12]),
    }
}

//! A storage round trip against a running homeserver, used by `images/boot-test` from the
//! host: `write` creates a user key (saved to KEY_FILE), signs up, opens a session, PUTs a
//! file and reads it back; `check` (after a reboot) signs in again with the saved key and
//! reads the same file. Grants and proofs are minted with the crate's own `auth` code, as the
//! integration tests do.
//!
//! cargo run --example roundtrip -- URL HOMESERVER_PUBKEY KEY_FILE write|check [SIGNUP_TOKEN]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use pubky_edge::auth::grant::{GrantClaims, GrantId, PopClaims};
use pubky_edge::auth::{capability::Capabilities, jws};
use pubky_edge::pubkey::PublicKey;

const PATH: &str = "/pub/boot-test/hello.txt";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: roundtrip URL HOMESERVER_PUBKEY KEY_FILE write|check [SIGNUP_TOKEN]");
        std::process::exit(2);
    }
    if let Err(e) = run(&args) {
        eprintln!("roundtrip: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let host = args[0]
        .strip_prefix("http://")
        .ok_or("URL must start with http://")?
        .trim_end_matches('/');
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
        "check" => {
            let hex = std::fs::read_to_string(key_file).map_err(|e| format!("{key_file}: {e}"))?;
            let hex = hex.trim();
            let mut seed = [0u8; 32];
            for (i, b) in seed.iter_mut().enumerate() {
                *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or("short key file")?, 16)
                    .map_err(|e| e.to_string())?;
            }
            SigningKey::from_bytes(&seed)
        }
        other => return Err(format!("unknown mode {other}")),
    };
    let user_pk = PublicKey::from(user.verifying_key());
    let body = grant_body(&user, hs, "boot-test", 3600);
    let (status, text) = http(host, "POST", "/auth/grant/session", None, &body)?;
    expect(status, 200, "session", &text)?;
    let session: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let token = session["token"].as_str().ok_or("no token in session")?;
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

fn expect(got: u16, want: u16, what: &str, body: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: HTTP {got}: {body}"))
    }
}

/// A grant from `user` to a fresh client key, with the client's proof for homeserver `hs`.
fn grant_body(user: &SigningKey, hs: PublicKey, client_id: &str, lifetime: u64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut seed = [0u8; 32];
    // Invariant: the OS random source is available on every supported platform.
    getrandom::fill(&mut seed).expect("OS randomness");
    let client = SigningKey::from_bytes(&seed);
    let jti = GrantId::random();
    let grant = GrantClaims {
        iss: PublicKey::from(user.verifying_key()),
        client_id: client_id.into(),
        // Invariant: a constant, valid capability string.
        caps: Capabilities::parse("/:rw").expect("valid caps"),
        cnf: PublicKey::from(client.verifying_key()),
        jti: jti.clone(),
        iat: now,
        exp: now + lifetime,
    };
    let pop = PopClaims {
        aud: hs,
        gid: jti,
        nonce: GrantId::random(),
        iat: now,
    };
    serde_json::to_vec(&serde_json::json!({
        "grant": jws::sign("pubky-grant", grant.to_json().as_bytes(), user),
        "pop": jws::sign("pubky-pop", pop.to_json().as_bytes(), &client),
    }))
    .expect("JSON of strings")
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the body as text.
fn http(
    host: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> Result<(u16, String), String> {
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
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

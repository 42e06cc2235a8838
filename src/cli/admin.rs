//! `pubky-edge admin …`: the command-line client of the admin API. A tiny blocking
//! HTTP/1.1 client over `std::net::TcpStream` (one request per connection, chunked bodies
//! decoded as they arrive) talks to `admin.listen_socket` with the configured password.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::Config;

pub const USAGE: &str = "\
ADMIN COMMANDS (talk to the running server's admin listener):
    admin info                        server summary
    admin token new [--quota-mb N]    create a signup token (optionally with a storage quota)
    admin token list [used|unused]    list signup tokens
    admin users list [enabled|disabled]
    admin users show <pubky>
    admin users disable <pubky>       refuse the user's writes and new sessions
    admin users enable <pubky>
    admin quota get <pubky>
    admin quota set <pubky> '<json>'  e.g. '{\"storage_quota_mb\": 100}' (null resets)
    admin delete <pubky> </pub/path>  delete one public file
    admin events [--live]             print the event stream (all users, private included)
  The password comes from PUBKY_EDGE_ADMIN_PASSWORD, admin.password_file, admin.password,
  or the one the server generated into <data>/admin-password.
";

/// A response: status and (de-chunked) body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the answer's head: the connection, the status, whether the
/// body is chunked, and the body bytes read with the head.
fn send(
    addr: SocketAddr,
    password: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(TcpStream, u16, bool, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| {
        format!("cannot reach the admin API at {addr} (is the server running?)")
    })?;
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nx-admin-password: {password}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("content-type: application/json\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("the admin API closed the connection early");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed status line")?;
    let chunked = head.contains("transfer-encoding: chunked");
    Ok((s, status, chunked, raw[end + 4..].to_vec()))
}

/// Sends one request and returns the status and the first line of the answer (or the
/// whole answer, when it has no line break), leaving the connection open: the caller holds
/// it for as long as what the line describes must live (a backup's snapshot).
pub fn first_line(
    addr: SocketAddr,
    password: &str,
    method: &str,
    path: &str,
) -> Result<(u16, String, TcpStream)> {
    let (mut s, status, chunked, mut pending) = send(addr, password, method, path, None)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let done = if chunked {
            dechunk(&mut pending, &mut out)
        } else {
            out.append(&mut pending);
            false
        };
        if let Some(nl) = out.iter().position(|b| *b == b'\n') {
            out.truncate(nl);
            break;
        }
        if done {
            break;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned(), s))
}

/// Sends one request and collects the answer; `sink` receives body bytes as they arrive
/// when given (streams), otherwise they are collected.
pub fn request(
    addr: SocketAddr,
    password: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    mut sink: Option<&mut dyn Write>,
) -> Result<Reply> {
    let (mut s, status, chunked, mut pending) = send(addr, password, method, path, body)?;
    let mut buf = [0u8; 8192];
    let mut out = Vec::new();
    loop {
        let done = if chunked {
            dechunk(&mut pending, &mut out)
        } else {
            out.append(&mut pending);
            false
        };
        if let Some(w) = sink.as_deref_mut() {
            if status == 200 {
                w.write_all(&out)?;
                w.flush()?;
                out.clear();
            }
        }
        if done {
            break;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
    }
    Ok(Reply { status, body: out })
}

/// Moves complete chunks from `raw` to `out`; true at the final chunk.
fn dechunk(raw: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    loop {
        let Some(le) = raw.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let Some(size) = std::str::from_utf8(&raw[..le])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            return true;
        };
        if size == 0 {
            return true;
        }
        if raw.len() < le + 2 + size + 2 {
            return false;
        }
        out.extend_from_slice(&raw[le + 2..le + 2 + size]);
        raw.drain(..le + 4 + size);
    }
}

pub fn target(config: &Config, data_dir: &Path) -> Result<(SocketAddr, String)> {
    let mut addr = config.admin.listen_socket;
    if let Ok(a) = std::env::var("PUBKY_EDGE_ADMIN_ADDR") {
        addr = a.parse().context("PUBKY_EDGE_ADMIN_ADDR")?;
    }
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    let password = match std::env::var("PUBKY_EDGE_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => crate::account::operator::client_password(&config.admin, data_dir)
            .map_err(anyhow::Error::msg)?,
    };
    Ok((addr, password))
}

/// Runs `pubky-edge admin <args…>`.
pub fn run(config: &Config, data_dir: &Path, args: &[&str]) -> Result<()> {
    let (addr, pw) = target(config, data_dir)?;
    let call = |method: &str, path: &str, body: Option<&str>| -> Result<String> {
        let r = request(addr, &pw, method, path, body, None)?;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        if !(200..300).contains(&r.status) {
            bail!("admin API answered {}: {}", r.status, text);
        }
        Ok(text)
    };
    let pretty = |text: String| -> String {
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(text)
    };
    let out = match args {
        ["info"] => pretty(call("GET", "/info", None)?),
        ["token", "new"] => call("GET", "/generate_signup_token", None)?,
        ["token", "new", "--quota-mb", mb] => {
            let mb: u64 = mb.parse().context("--quota-mb needs a number")?;
            let body = serde_json::json!({ "storage_quota_mb": mb }).to_string();
            call("POST", "/generate_signup_token", Some(&body))?
        }
        ["token", "list"] => pretty(call("GET", "/signup_tokens", None)?),
        ["token", "list", state] => {
            pretty(call("GET", &format!("/signup_tokens?state={state}"), None)?)
        }
        ["users", "list"] => pretty(call("GET", "/users", None)?),
        ["users", "list", state] => pretty(call("GET", &format!("/users?state={state}"), None)?),
        ["users", "show", pk] => pretty(call("GET", &format!("/users/{pk}"), None)?),
        ["users", action @ ("disable" | "enable"), pk] => {
            call("POST", &format!("/users/{pk}/{action}"), None)?
        }
        ["quota", "get", pk] => pretty(call("GET", &format!("/users/{pk}/quota"), None)?),
        ["quota", "set", pk, json] => {
            call("PATCH", &format!("/users/{pk}/quota"), Some(json))?;
            "Ok".into()
        }
        ["delete", pk, path] => {
            let path = path.trim_start_matches('/');
            call("DELETE", &format!("/webdav/{pk}/{path}"), None)?;
            "Ok".into()
        }
        ["events"] | ["events", "--live"] => {
            let path = if args.len() == 2 {
                "/events-stream?live=true"
            } else {
                "/events-stream"
            };
            let mut stdout = std::io::stdout();
            let r = request(addr, &pw, "GET", path, None, Some(&mut stdout))?;
            if r.status != 200 {
                bail!(
                    "admin API answered {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
            }
            return Ok(());
        }
        _ => bail!("unknown admin command `{}`\n\n{USAGE}", args.join(" ")),
    };
    println!("{}", out.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_decode_incrementally() {
        let mut raw = b"5\r\nhello\r\n3\r\nab".to_vec();
        let mut out = Vec::new();
        assert!(!dechunk(&mut raw, &mut out));
        assert_eq!(out, b"hello");
        raw.extend_from_slice(b"c\r\n0\r\n\r\n");
        assert!(dechunk(&mut raw, &mut out));
        assert_eq!(out, b"helloabc");
    }
}

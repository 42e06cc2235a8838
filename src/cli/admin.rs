//! `pubky-edge admin …`: the command-line client of the admin API. It talks to
//! `admin.listen_socket` with the configured password through the blocking client in
//! [`crate::runtime::http1`].

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::runtime::http1;

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
    admin standby                     this box's mode and its paired standby (how far behind)
    admin standby code [--takeover]   a one-time code (one hour) to pair a standby box with;
                                      --takeover lets that box become this homeserver
    admin standby unpair              the standby's token stops working
  The password comes from PUBKY_EDGE_ADMIN_PASSWORD, admin.password_file, admin.password,
  or the one the server generated into <data>/admin-password.
";

/// A response: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

fn send(
    addr: SocketAddr,
    password: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<http1::Reply> {
    let body = body.unwrap_or("");
    let mut headers = vec![("x-admin-password", password)];
    if !body.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    let call = http1::Call {
        method,
        path,
        headers: &headers,
        body: body.as_bytes(),
    };
    // Live event streams and held snapshots stay open for as long as the caller wants.
    http1::call(
        addr,
        &addr.to_string(),
        &call,
        Duration::from_secs(24 * 3600),
    )
    .with_context(|| format!("cannot reach the admin API at {addr} (is the server running?)"))
}

/// Sends one request and returns the status and the first line of the answer (or the
/// whole answer, when it has no line break), leaving the connection open: the caller holds
/// the returned reply for as long as what the line describes must live (a backup's
/// snapshot).
pub fn first_line(
    addr: SocketAddr,
    password: &str,
    method: &str,
    path: &str,
) -> Result<(u16, String, http1::Reply)> {
    let mut r = send(addr, password, method, path, None)?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 * 1024 && r.read(&mut byte)? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    Ok((r.status, String::from_utf8_lossy(&line).into_owned(), r))
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
    let mut r = send(addr, password, method, path, body)?;
    let status = r.status;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        match sink.as_deref_mut() {
            Some(w) if status == 200 => {
                w.write_all(&buf[..n])?;
                w.flush()?;
            }
            _ => out.extend_from_slice(&buf[..n]),
        }
    }
    Ok(Reply { status, body: out })
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
        _ => crate::account::owner::client_credential(&config.admin, data_dir)
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
        ["standby"] => pretty(call("GET", "/standby", None)?),
        ["standby", "code"] => pretty(call("POST", "/standby/code", None)?),
        ["standby", "code", "--takeover"] => {
            pretty(call("POST", "/standby/code?takeover=true", None)?)
        }
        ["standby", "unpair"] => pretty(call("DELETE", "/standby", None)?),
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

//! WebDAV `LOCK` and `UNLOCK` on `/storage/<pk>/<file>` (`webdav-locks`); the lock headers
//! every write reads (`If`, `Lock-Token`, `Timeout`) are read with the rest of the head
//! (`head::LockHeaders`). The rules are `account::locks`'.

use std::time::Instant;

use hyper::body::Incoming;
use hyper::{header, Response, StatusCode};

use super::body::{read_limited, Body, BodyError};
use super::head::Head;
use super::response::ApiError;
use super::App;
use crate::account::{access, Caller};
use crate::pubkey::PublicKey;
use crate::storage_path::{percent_encode_path, StoragePath};

use super::head::LOCK_SCHEME as SCHEME;
/// Largest `lockinfo` body read; a real one is a few hundred bytes.
pub const MAX_LOCKINFO_BYTES: usize = 16 * 1024;

/// `LOCK`: a new lock (no token in `If`), or a refresh of the one `If` names.
pub async fn lock(
    app: &App,
    head: &Head,
    body: Incoming,
    tenant: &PublicKey,
    path: &StoragePath,
    caller: Option<&Caller>,
) -> Result<Response<Body>, ApiError> {
    let caller = caller.ok_or_else(|| ApiError::unauthorized("Unauthorized"))?;
    access::authorize_write(&app.store, tenant, path, Some(caller))?;
    let l = &head.locks;
    let granted = if l.if_tokens.is_empty() {
        // Read before the lock is taken, so a slow body does not eat into its lifetime.
        let pace = app.config.limits.body_pace;
        let info = read_limited(body, MAX_LOCKINFO_BYTES, pace)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "lockinfo body too large")
                }
                other => other.into(),
            })?;
        if !info.is_empty() && !exclusive_write(&info) {
            return Err(ApiError::bad_request(
                "Only exclusive write locks are supported",
            ));
        }
        let g = app
            .locks
            .acquire(tenant, path, l.timeout_secs, Instant::now())?;
        (g, true)
    } else {
        let now = Instant::now();
        let g = app
            .locks
            .refresh(tenant, path, &l.if_tokens, l.timeout_secs, now)?;
        (g, false)
    };
    let root = format!("/storage/{tenant}{}", percent_encode_path(path.as_str()));
    discovery(&granted.0.token, granted.0.secs, &root, granted.1)
}

/// `UNLOCK` with `Lock-Token`: releases that lock (a disabled account may).
pub fn unlock(
    app: &App,
    head: &Head,
    tenant: &PublicKey,
    path: &StoragePath,
    caller: Option<&Caller>,
) -> Result<Response<Body>, ApiError> {
    let caller = caller.ok_or_else(|| ApiError::unauthorized("Unauthorized"))?;
    access::authorize_release(&app.store, tenant, path, Some(caller))?;
    let token = head
        .locks
        .lock_token
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("Missing or malformed Lock-Token header"))?;
    app.locks.release(tenant, path, token, Instant::now())?;
    Ok(super::response::empty(StatusCode::NO_CONTENT))
}

/// The `lockdiscovery` answer for lock `token`, `secs` long, on `root` (a URL path);
/// `Lock-Token` only on creation, as RFC 4918 asks.
pub fn discovery(
    token: &str,
    secs: u64,
    root: &str,
    created: bool,
) -> Result<Response<Body>, ApiError> {
    let token_url = format!("{SCHEME}{token}");
    let body = format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<D:prop xmlns:D="DAV:"><D:lockdiscovery><D:activelock>"#,
            "<D:locktype><D:write/></D:locktype>",
            "<D:lockscope><D:exclusive/></D:lockscope>",
            "<D:depth>0</D:depth>",
            "<D:timeout>Second-{secs}</D:timeout>",
            "<D:locktoken><D:href>{token}</D:href></D:locktoken>",
            "<D:lockroot><D:href>{root}</D:href></D:lockroot>",
            "</D:activelock></D:lockdiscovery></D:prop>",
        ),
        secs = secs,
        token = token_url,
        root = xml_escape(root),
    );
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
        .header("timeout", format!("Second-{secs}"));
    if created {
        b = b.header("lock-token", format!("<{token_url}>"));
    }
    b.body(Body::Full(body.into()))
        .map_err(super::response::internal)
}

/// A `lockinfo` asking for what is granted: elements named (in any namespace) `exclusive`
/// and `write`, and none named `shared`.
fn exclusive_write(body: &[u8]) -> bool {
    let Ok(xml) = std::str::from_utf8(body) else {
        return false;
    };
    let has = |local: &str| {
        xml.split('<').skip(1).any(|tag| {
            let name = tag
                .split(|c: char| c == '/' || c == '>' || c.is_whitespace())
                .next()
                .unwrap_or("");
            name.rsplit(':').next() == Some(local)
        })
    };
    has("exclusive") && has("write") && !has("shared")
}

pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockinfo_bodies() {
        let ok = br#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
        assert!(exclusive_write(ok));
        assert!(exclusive_write(
            b"<lockinfo><exclusive/><write/></lockinfo>"
        ));
        assert!(!exclusive_write(
            b"<a:lockinfo><a:shared/><a:write/></a:lockinfo>"
        ));
        assert!(!exclusive_write(b"<lockinfo><exclusive/></lockinfo>"));
        assert!(!exclusive_write(&[0xff, 0xfe]));
        assert_eq!(xml_escape("/a&<b>\""), "/a&amp;&lt;b&gt;&quot;");
    }
}

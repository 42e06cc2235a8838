//! What the handlers need from a request's head, read once after routing: the credentials
//! (grant bearer, session-shaped cookies; what they mean is `account::caller`'s business),
//! the client's address, and the few headers the handlers act on. With the routed
//! `Endpoint` (which carries the parsed path and query), this is every input a handler
//! reads; only the body is left in the request.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::{header, HeaderMap, Method};

use super::server::ConnInfo;
use crate::account::caller::COOKIE_SECRET_LEN;
use crate::account::locks::{DEFAULT_SECS, MAX_SECS};
use crate::account::Credentials;
use crate::auth::secrets;

/// The inputs of one request besides its route and body.
#[derive(Debug, Default)]
pub struct Head {
    /// `HEAD` rather than `GET` (the relay answers both on one route).
    pub is_head: bool,
    pub creds: Credentials,
    /// The client's address (bandwidth buckets of anonymous readers).
    pub peer: Option<IpAddr>,
    /// The `Host` header (whether a cookie may be `Secure`).
    pub host: String,
    /// The `pubky-host` header as sent (a metrics label).
    pub pubky_host: Option<String>,
    /// `?pubky-host=` was given (a metrics label).
    pub pubky_host_query: bool,
    /// `Content-Type` is `application/json` (any parameters).
    pub json: bool,
    /// `Content-Length`, when it parses.
    pub content_length: Option<u64>,
    pub conditional: Conditional,
    /// `Cache-Control: no-cache` (the relay then asks the network).
    pub no_cache: bool,
    /// `If`, `Lock-Token` and `Timeout` (WebDAV locks).
    pub locks: LockHeaders,
}

/// `If-None-Match` and `If-Modified-Since`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Conditional {
    /// Present: its text, or `None` when it is not visible ASCII.
    if_none_match: Option<Option<String>>,
    if_modified_since: Option<SystemTime>,
}

impl Conditional {
    pub fn of(h: &HeaderMap) -> Conditional {
        Conditional {
            if_none_match: h
                .get(header::IF_NONE_MATCH)
                .map(|v| v.to_str().ok().map(str::to_string)),
            if_modified_since: h
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok()),
        }
    }

    /// `If-None-Match` (exact match of one listed ETag) wins; otherwise `If-Modified-Since`
    /// at second precision.
    pub fn not_modified(&self, etag: &str, modified_at_us: u64) -> bool {
        if let Some(inm) = &self.if_none_match {
            let Some(inm) = inm else { return false };
            return inm.split(',').any(|t| t.trim() == etag);
        }
        let Some(ims) = self.if_modified_since else {
            return false;
        };
        let ims = ims
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        ims >= modified_at_us / 1_000_000
    }

    pub fn if_modified_since(&self) -> Option<SystemTime> {
        self.if_modified_since
    }
}

impl Head {
    pub fn read(
        method: &Method,
        query: Option<&str>,
        h: &HeaderMap,
        conn: Option<&ConnInfo>,
    ) -> Head {
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        Head {
            is_head: method == Method::HEAD,
            creds: credentials(h),
            peer: conn.map(|c| c.client),
            host: text("host").unwrap_or("").to_string(),
            pubky_host: text("pubky-host").map(str::to_string),
            pubky_host_query: query
                .is_some_and(|q| super::query::query_pairs(q).any(|(k, _)| k == "pubky-host")),
            json: text("content-type").is_some_and(|v| {
                let essence = v.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json")
            }),
            content_length: text("content-length").and_then(|v| v.parse().ok()),
            conditional: Conditional::of(h),
            no_cache: h
                .get_all(header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.split(',').any(|d| d.trim() == "no-cache")),
            locks: LockHeaders::of(h),
        }
    }
}

/// What a request's `Host` names, its port left off.
#[derive(Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// An IP literal (`192.0.2.1`, `[::1]`): no DNS name an attacker could rebind.
    Literal,
    /// A name, as written.
    Name(&'a str),
}

/// The request's `Host`, if it has a readable one.
pub fn host(h: &HeaderMap) -> Option<Host<'_>> {
    let host = h.get(header::HOST)?.to_str().ok()?;
    if let Some(v6) = host.strip_prefix('[') {
        let literal = v6
            .split(']')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        return literal.then_some(Host::Literal);
    }
    let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
    Some(match name.parse::<std::net::Ipv4Addr>() {
        Ok(_) => Host::Literal,
        Err(_) => Host::Name(name),
    })
}

/// Every `name=value` pair of the request's `Cookie` headers.
pub fn cookie_pairs(h: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
}

/// Reads the bearer and the session-shaped cookies of a request.
pub fn credentials(headers: &HeaderMap) -> Credentials {
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    Credentials {
        bearer: auth
            .and_then(secrets::bearer_from_header)
            .map(str::to_string),
        bearer_header: auth.is_some_and(|v| v.starts_with(b"Bearer ")),
        cookies: cookie_pairs(headers)
            .filter(|(_, v)| v.len() == COOKIE_SECRET_LEN)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        origin: headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        foreign_without_origin: headers.get("sec-fetch-site").is_some_and(|v| v != "none"),
    }
}

/// The scheme of WebDAV lock tokens.
pub const LOCK_SCHEME: &str = "opaquelocktoken:";

/// The lock headers of a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LockHeaders {
    /// Every `opaquelocktoken:` coded URL in the `If` headers (tags and `Not` ignored).
    pub if_tokens: Vec<String>,
    /// `Lock-Token`, with or without its angle brackets, when it names a lock token.
    pub lock_token: Option<String>,
    /// `Timeout`: the first `Second-N` (1..=60) or `Infinite` (60); otherwise 30.
    pub timeout_secs: u64,
}

impl LockHeaders {
    pub fn of(h: &HeaderMap) -> LockHeaders {
        let if_tokens = h
            .get_all("if")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(coded_urls)
            .filter_map(|u| u.strip_prefix(LOCK_SCHEME))
            .map(str::to_string)
            .collect();
        let lock_token = h
            .get("lock-token")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let url = coded_urls(v).into_iter().next().unwrap_or(v.trim());
                url.strip_prefix(LOCK_SCHEME).map(str::to_string)
            })
            .filter(|t| !t.is_empty());
        let timeout_secs = h
            .get("timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',').map(str::trim).find_map(|part| {
                    if part.eq_ignore_ascii_case("infinite") {
                        return Some(MAX_SECS);
                    }
                    part.strip_prefix("Second-")?.parse::<u64>().ok()
                })
            })
            .map_or(DEFAULT_SECS, |s| s.clamp(1, MAX_SECS));
        LockHeaders {
            if_tokens,
            lock_token,
            timeout_secs,
        }
    }
}

/// The `<…>` groups of a header value, in order.
fn coded_urls(value: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        urls.push(after[..end].trim());
        rest = &after[end + 1..];
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> LockHeaders {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        LockHeaders::of(&h)
    }

    #[test]
    fn if_tokens_lock_tokens_and_timeouts() {
        let l = headers(&[
            ("if", "(<opaquelocktoken:a> [\"etag\"]) (Not <urn:x>)"),
            ("if", "</res> (<opaquelocktoken:b>)"),
        ]);
        assert_eq!(l.if_tokens, vec!["a", "b"]);
        assert_eq!(l.timeout_secs, DEFAULT_SECS);
        let t = |v| headers(&[("timeout", v)]).timeout_secs;
        assert_eq!(t("Second-10"), 10);
        assert_eq!(t("Second-0"), 1);
        assert_eq!(t("Second-999"), MAX_SECS);
        assert_eq!(t("Infinite, Second-5"), MAX_SECS);
        assert_eq!(t("garbage"), DEFAULT_SECS);
        assert_eq!(t("x, Second-7"), 7);
        let lt = |v| headers(&[("lock-token", v)]).lock_token;
        assert_eq!(lt("<opaquelocktoken:abc>").as_deref(), Some("abc"));
        assert_eq!(lt("opaquelocktoken:abc").as_deref(), Some("abc"));
        assert_eq!(lt("<urn:uuid:abc>"), None);
        assert_eq!(lt("<opaquelocktoken:>"), None);
    }
}

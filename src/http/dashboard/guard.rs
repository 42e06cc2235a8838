//! What makes the dashboard LAN-only and unframeable: who may ask (home-network senders),
//! by which names (the box's own, or an IP literal: no DNS rebinding), from which origin a
//! form may come, and the headers every answer carries.

use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::Response;

use crate::http::body::Body;
use crate::http::App;

/// Loopback, private or link-local (IPv4-mapped addresses judged as IPv4).
pub fn lan_peer(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => lan_peer(IpAddr::V4(v4)),
            None => {
                let s = v6.segments()[0];
                v6.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
            }
        },
    }
}

/// The names the box answers to, lower case, without a trailing dot.
pub fn own_names(app: &App) -> Vec<String> {
    let mdns = crate::announce::mdns::host_name(&app.homeserver);
    let mdns = mdns.trim_end_matches('.').to_ascii_lowercase();
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .to_ascii_lowercase();
    let mut names = vec!["localhost".to_string(), mdns];
    if !host.is_empty() {
        names.push(format!("{host}.local"));
        names.push(host);
    }
    names.extend(app.config.dashboard.hosts.iter().cloned());
    names
}

/// `Host` is an IP literal or one of [`own_names`] (any port).
pub(super) fn own_host(app: &App, h: &HeaderMap) -> bool {
    use crate::http::head::Host;
    match crate::http::head::host(h) {
        Some(Host::Literal) => true,
        Some(Host::Name(n)) => {
            own_names(app).contains(&n.trim_end_matches('.').to_ascii_lowercase())
        }
        None => false,
    }
}

pub(super) fn secure_headers(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A POST's `Origin` (when the browser sends one) must be this page's own.
pub(super) fn same_origin(h: &HeaderMap) -> bool {
    let fetch_site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s == "cross-site" || s == "same-site") {
        return false;
    }
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .strip_prefix("http://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_home_network_senders_are_answered() {
        for ok in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.178.20",
            "169.254.3.4",
            "::1",
            "fd12::1",
            "fe80::1",
            "::ffff:192.168.1.2",
        ] {
            assert!(lan_peer(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "8.8.8.8",
            "100.64.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:1.1.1.1",
            "0.0.0.0",
        ] {
            assert!(!lan_peer(no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("pubky-abcd.local"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://pubky-abcd.local"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://pubky-abcd.local"),
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }
}

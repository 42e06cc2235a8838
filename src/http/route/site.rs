//! Which requests are pages of users' static websites: `Host: <user key>` names the site in
//! `/pub/website/_/`, `Host: <label>.<user key>` the one in `/pub/website/<label>/`, also
//! under each of `drive.website_domains`. Only `GET`/`HEAD` of paths whose first segment is
//! not an API segment are pages; everything else on such a Host stays the client API. The
//! homeserver's own key never names a site, and `_pubky` (the SDK's host) is not a label.
//! Pure, like the rest of routing; `http::website` serves what it finds.

use hyper::Method;

use super::RouteError;
use crate::pubkey::PublicKey;
use crate::storage_path::{percent_decode, StoragePath};

/// First path segments that stay on the client API under a website `Host`.
pub const API_SEGMENTS: &[&str] = &[
    "auth",
    "events",
    "events-stream",
    "info",
    "pkarr",
    "priv",
    "pub",
    "session",
    "signup",
    "signup_tokens",
    "storage",
];

/// Which Hosts name websites: any user key but the homeserver's, bare or under one of the
/// configured domains.
#[derive(Debug, Clone)]
pub struct Sites {
    pub homeserver: PublicKey,
    pub domains: Vec<String>,
}

/// A page request: whose site, which folder, the path asked for and the file it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub owner: PublicKey,
    /// The site's folder without its trailing slash, e.g. `/pub/website/_`.
    pub root: String,
    /// The normalised request path.
    pub path: StoragePath,
    /// The file the request names; a folder names its `index.html`.
    pub target: StoragePath,
    /// The query, kept on a redirect.
    pub query: Option<String>,
}

impl Sites {
    /// The owner and label a `Host` value names, or `None` when it names no website.
    pub fn host(&self, host: &str) -> Option<(PublicKey, String)> {
        let host = host.to_ascii_lowercase();
        let host = host
            .split_once(':')
            .map_or(host.as_str(), |(name, _port)| name);
        let mut host = host.strip_suffix('.').unwrap_or(host);
        for domain in &self.domains {
            if let Some(inner) = host
                .strip_suffix(domain.as_str())
                .and_then(|h| h.strip_suffix('.'))
            {
                host = inner;
                break;
            }
        }
        let (label, key) = match host.rsplit_once('.') {
            Some((label, key)) if is_label(label) => (label, key),
            Some(_) => return None,
            None => ("_", host),
        };
        let owner = PublicKey::parse_z32(key).ok()?;
        if owner == self.homeserver {
            return None;
        }
        Some((owner, label.to_string()))
    }

    /// `Ok(None)` when the request is not a page request; a page path that cannot be a
    /// storage path is a 400.
    pub fn classify(
        &self,
        method: &Method,
        raw_path: &str,
        query: Option<&str>,
        host: Option<&str>,
    ) -> Result<Option<Site>, RouteError> {
        if method != Method::GET && method != Method::HEAD {
            return Ok(None);
        }
        let first = raw_path.split('/').nth(1).unwrap_or_default();
        if API_SEGMENTS.contains(&first) {
            return Ok(None);
        }
        let Some((owner, label)) = host.and_then(|h| self.host(h)) else {
            return Ok(None);
        };
        let bad = |e: &dyn std::fmt::Display| {
            RouteError::BadRequest(format!("Invalid website path: {e}"))
        };
        let decoded = percent_decode(raw_path).map_err(|e| bad(&e))?;
        // Normalised before joining, so `..` stays inside the site's folder.
        let path = StoragePath::normalize(&decoded).map_err(|e| bad(&e))?;
        let root = format!("/pub/website/{label}");
        let index = if path.is_dir() { "index.html" } else { "" };
        let target =
            StoragePath::strict(&format!("{root}{}{index}", path.as_str())).map_err(|e| bad(&e))?;
        Ok(Some(Site {
            owner,
            root,
            path,
            target,
            query: query.map(str::to_string),
        }))
    }
}

/// A DNS hostname label (letters, digits, inner hyphens; at most 63), which `_pubky` and
/// `_` are not.
fn is_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
    const HOMESERVER: &str = "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no";

    fn sites() -> Sites {
        Sites {
            homeserver: PublicKey::parse_z32(HOMESERVER).unwrap(),
            domains: vec!["sites.example.org".into()],
        }
    }

    fn label(host: &str) -> Option<String> {
        sites().host(host).map(|(owner, label)| {
            assert_eq!(owner.to_z32(), OWNER);
            label
        })
    }

    #[test]
    fn hosts_that_name_websites() {
        assert_eq!(label(OWNER).as_deref(), Some("_"));
        assert_eq!(label(&format!("blog.{OWNER}")).as_deref(), Some("blog"));
        let upper = format!("My-Blog.{}.:6286", OWNER.to_uppercase());
        assert_eq!(label(&upper).as_deref(), Some("my-blog"));
        let proxied = format!("{OWNER}.sites.example.org");
        assert_eq!(label(&proxied).as_deref(), Some("_"));
        let proxied = format!("blog.{OWNER}.Sites.Example.org:443");
        assert_eq!(label(&proxied).as_deref(), Some("blog"));
        for host in [
            format!("_pubky.{OWNER}"),
            format!("_.{OWNER}"),
            format!("a.b.{OWNER}"),
            format!("-a.{OWNER}"),
            format!("pubky{OWNER}"),
            format!("x@{OWNER}"),
            format!("{OWNER}.other.example.org"),
            format!("{OWNER}xsites.example.org"),
            HOMESERVER.to_string(),
            format!("www.{HOMESERVER}"),
            "example.com".to_string(),
            "[::1]:6286".to_string(),
        ] {
            assert_eq!(sites().host(&host), None, "{host}");
        }
    }

    fn target(method: Method, path: &str) -> Result<Option<String>, RouteError> {
        let host = format!("blog.{OWNER}");
        sites()
            .classify(&method, path, None, Some(&host))
            .map(|s| s.map(|s| s.target.as_str().to_string()))
    }

    #[test]
    fn page_paths_stay_inside_the_site() {
        let t = |p| target(Method::GET, p);
        assert_eq!(
            t("/a/%2e%2e/b%20c.html"),
            Ok(Some("/pub/website/blog/b c.html".into()))
        );
        // Collapsed slashes keep a redirect on this host.
        assert_eq!(
            t("//evil.com"),
            Ok(Some("/pub/website/blog/evil.com".into()))
        );
        assert_eq!(t("/"), Ok(Some("/pub/website/blog/index.html".into())));
        assert_eq!(
            t("/signup-page/"),
            Ok(Some("/pub/website/blog/signup-page/index.html".into()))
        );
        for api in [
            "/session",
            "/pub/file.txt",
            "/events/",
            "/storage/x/pub/y",
            "/info",
        ] {
            assert_eq!(t(api), Ok(None), "{api}");
        }
        assert_eq!(t("/pkarr/x"), Ok(None));
        assert_eq!(target(Method::PUT, "/index.html"), Ok(None));
        assert!(matches!(target(Method::HEAD, "/x"), Ok(Some(_))));
        for bad in ["/a/%2e%2e%2F..%2F..%2Fpriv", "/%5Cevil.com", "/%FF"] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }
}

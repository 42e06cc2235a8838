//! Routing: a request's method, path, query and host headers → one [`Endpoint`]. Pure: no
//! I/O, no state. Resolves the tenant (path-addressed `/storage/<pk>/…` or legacy `Host` /
//! `pubky-host` / `?pubky-host=`) and normalises the storage path before any auth runs; the
//! dispatcher (`http::handle`) then calls the endpoint's handler. Each endpoint carries its
//! parsed query parameters (`http::query`); the request head is read into `http::head`.

use hyper::{HeaderMap, Method};

use super::query::{self, BadQuery, ListQuery, StreamQuery};
use crate::announce::relay::Policy;
use crate::pubkey::PublicKey;
use crate::storage_path::{percent_decode, StoragePath};

/// Methods allowed on `/storage/<pk>/<path>`.
pub const STORAGE_ALLOW: &str = "GET, HEAD, PUT, DELETE, LOCK, UNLOCK";
/// Methods allowed on legacy `/<path>` (locks are taken on the path-addressed form only;
/// legacy writes still respect them).
pub const LEGACY_ALLOW: &str = "GET, HEAD, PUT, DELETE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `/storage/<pk>/<path>`: owner in the URL.
    Path,
    /// `/<path>` with the owner from `Host`, `pubky-host` or `?pubky-host=`.
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageOp {
    Get,
    Head,
    Put,
    Delete,
    /// WebDAV `LOCK` (take or refresh a write lock).
    Lock,
    /// WebDAV `UNLOCK`.
    Unlock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /`
    Root,
    /// `GET`/`HEAD` of a page of a user's website (`Host: [<label>.]<user key>`).
    Website(Site),
    /// `GET /info`
    Info,
    /// Any `OPTIONS` request: CORS preflight.
    Preflight,
    /// Storage read/write. `tenant` is `None` only on the legacy form when nothing named one.
    Storage {
        op: StorageOp,
        tenant: Option<PublicKey>,
        path: StoragePath,
        addressing: Addressing,
        /// Listing parameters (read by `GET` of a directory; a bad one is a 400 there).
        list: Result<ListQuery, BadQuery>,
    },
    /// `POST /auth/grant/signup[?signup_token=…]`
    GrantSignup {
        token: Result<Option<String>, BadQuery>,
    },
    /// `POST /auth/grant/session`
    GrantSessionCreate,
    /// `GET /auth/grant/session`
    GrantSessionGet,
    /// `DELETE /auth/grant/session`
    GrantSessionDelete,
    /// `GET /auth/grant/sessions`
    GrantList,
    /// `DELETE /auth/grant/session/{gid}`
    GrantRevoke { gid: String },
    /// `GET /signup_tokens/{token}`
    SignupTokenStatus { token: String },
    /// `GET /events/?cursor=&limit=`
    EventFeed { query: Result<ListQuery, BadQuery> },
    /// `GET /events-stream?user=…`
    EventStream {
        query: Result<StreamQuery, BadQuery>,
    },
    /// `POST /signup[?signup_token=…]` (AuthToken, cookie session)
    CookieSignup {
        token: Result<Option<String>, BadQuery>,
    },
    /// `POST /session`
    CookieSessionCreate,
    /// `GET /session` of the legacy tenant
    CookieSessionGet { tenant: Option<PublicKey> },
    /// `DELETE /session` of the legacy tenant
    CookieSessionDelete { tenant: Option<PublicKey> },
    /// `GET`/`HEAD`/`PUT /pkarr/<z32>[?policy=]`: the pkarr relay.
    Relay {
        key: PublicKey,
        put: bool,
        policy: Result<Policy, BadQuery>,
    },
}

/// Where the pkarr relay lives on the client listeners (`<base>/<z32>` as relays serve it).
pub const RELAY_PREFIX: &str = "/pkarr/";

/// The relay route: `GET`/`HEAD`/`PUT` of a bare z32 key.
pub fn relay(method: &Method, key: &str, q: Option<&str>) -> Result<Endpoint, RouteError> {
    let put = match *method {
        Method::GET | Method::HEAD => false,
        Method::PUT => true,
        _ => return Err(RouteError::MethodNotAllowed("GET, HEAD, PUT")),
    };
    let key = PublicKey::parse_z32(key)
        .map_err(|_| RouteError::BadRequest("Invalid public key".into()))?;
    Ok(Endpoint::Relay {
        key,
        put,
        policy: query::relay_policy(q),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// 405 with this `Allow` header.
    MethodNotAllowed(&'static str),
    /// 400 with this body.
    BadRequest(String),
    /// 404
    NotFound,
}

/// The tenant named by the request for legacy routes: `Host`, overridden by a parseable
/// `pubky-host` header, else `?pubky-host=`. Values that are not keys are skipped.
pub fn legacy_tenant(headers: &HeaderMap, query: Option<&str>) -> Option<PublicKey> {
    let mut tenant = None;
    for name in ["host", "pubky-host"] {
        if let Some(k) = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| PublicKey::parse_host(v).ok())
        {
            tenant = Some(k);
        }
    }
    tenant.or_else(|| {
        super::query::query_pairs(query?)
            .find(|(k, _)| *k == "pubky-host")
            .and_then(|(_, v)| PublicKey::parse_z32(v).ok())
    })
}

/// The client API's route table: method and path → an [`Endpoint`] with its inputs.
/// `sites` is set when websites are served: a page request on a website `Host` comes first.
// Longer than 80 lines because it is the table: one arm per route, read top to bottom.
pub fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    sites: Option<&Sites>,
) -> Result<Endpoint, RouteError> {
    if method == Method::OPTIONS {
        return Ok(Endpoint::Preflight);
    }
    if let Some(sites) = sites {
        let host = headers.get("host").and_then(|v| v.to_str().ok());
        if let Some(site) = sites.classify(method, path, query, host)? {
            return Ok(Endpoint::Website(site));
        }
    }
    if path == "/storage" || path.starts_with("/storage/") {
        return storage_path_addressed(method, path, query);
    }
    let only = |m: Method, allow: &'static str, ep: Endpoint| {
        if *method == m {
            Ok(ep)
        } else {
            Err(RouteError::MethodNotAllowed(allow))
        }
    };
    match path {
        "/" if method == Method::GET || method == Method::HEAD => return Ok(Endpoint::Root),
        // HEAD answers as GET without the body, as the reference does.
        "/info" if method == Method::HEAD => return Ok(Endpoint::Info),
        "/info" => return only(Method::GET, "GET", Endpoint::Info),
        "/auth/grant/signup" => {
            let token = query::signup_token_param(query);
            return only(Method::POST, "POST", Endpoint::GrantSignup { token });
        }
        "/auth/grant/sessions" => return only(Method::GET, "GET", Endpoint::GrantList),
        "/events/" => {
            let query = ListQuery::parse(query);
            if method == Method::HEAD {
                return Ok(Endpoint::EventFeed { query });
            }
            return only(Method::GET, "GET", Endpoint::EventFeed { query });
        }
        "/events-stream" => {
            let query = StreamQuery::parse(query, false);
            return only(Method::GET, "GET", Endpoint::EventStream { query });
        }
        "/signup" => {
            let token = query::signup_token_param(query);
            return only(Method::POST, "POST", Endpoint::CookieSignup { token });
        }
        "/session" => {
            let tenant = legacy_tenant(headers, query);
            return match *method {
                Method::POST => Ok(Endpoint::CookieSessionCreate),
                Method::GET => Ok(Endpoint::CookieSessionGet { tenant }),
                Method::DELETE => Ok(Endpoint::CookieSessionDelete { tenant }),
                _ => Err(RouteError::MethodNotAllowed("GET, POST, DELETE")),
            };
        }
        "/auth/grant/session" => {
            return match *method {
                Method::POST => Ok(Endpoint::GrantSessionCreate),
                Method::GET => Ok(Endpoint::GrantSessionGet),
                Method::DELETE => Ok(Endpoint::GrantSessionDelete),
                _ => Err(RouteError::MethodNotAllowed("GET, POST, DELETE")),
            }
        }
        _ => {}
    }
    if let Some(gid) = path.strip_prefix("/auth/grant/session/") {
        return only(
            Method::DELETE,
            "DELETE",
            Endpoint::GrantRevoke {
                gid: decode_segment(gid)?,
            },
        );
    }
    if let Some(key) = path.strip_prefix(RELAY_PREFIX) {
        return relay(method, key, query);
    }
    if let Some(token) = path.strip_prefix("/signup_tokens/") {
        return only(
            Method::GET,
            "GET",
            Endpoint::SignupTokenStatus {
                token: decode_segment(token)?,
            },
        );
    }
    let op = match storage_op(method) {
        Ok(StorageOp::Lock | StorageOp::Unlock) | Err(_) => {
            return Err(RouteError::MethodNotAllowed(LEGACY_ALLOW))
        }
        Ok(op) => op,
    };
    let path = StoragePath::from_url_path(path)
        .map_err(|e| RouteError::BadRequest(format!("Invalid storage path: {e}")))?;
    Ok(Endpoint::Storage {
        op,
        tenant: legacy_tenant(headers, query),
        path,
        addressing: Addressing::Legacy,
        list: ListQuery::parse(query),
    })
}

fn storage_op(method: &Method) -> Result<StorageOp, RouteError> {
    match *method {
        Method::GET => Ok(StorageOp::Get),
        Method::HEAD => Ok(StorageOp::Head),
        Method::PUT => Ok(StorageOp::Put),
        Method::DELETE => Ok(StorageOp::Delete),
        _ if method.as_str() == "LOCK" => Ok(StorageOp::Lock),
        _ if method.as_str() == "UNLOCK" => Ok(StorageOp::Unlock),
        _ => Err(RouteError::MethodNotAllowed(STORAGE_ALLOW)),
    }
}

fn storage_path_addressed(
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Endpoint, RouteError> {
    let bad = |m: &str| Err(RouteError::BadRequest(m.to_string()));
    let rest = path.strip_prefix("/storage").unwrap_or("");
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return bad("Missing storage owner or path");
    }
    let (owner, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let tenant = match PublicKey::parse_z32(owner) {
        Ok(k) => k,
        Err(_) => return bad("Invalid storage owner public key"),
    };
    if tail.is_empty() {
        return bad("Missing storage path");
    }
    let op = storage_op(method)?;
    let decoded = match percent_decode(tail) {
        Ok(d) => d,
        Err(_) => return bad("Storage path is not valid UTF-8"),
    };
    let path = StoragePath::normalize(&format!("/{decoded}"))
        .map_err(|e| RouteError::BadRequest(format!("Invalid storage path: {e}")))?;
    Ok(Endpoint::Storage {
        op,
        tenant: Some(tenant),
        path,
        addressing: Addressing::Path,
        list: ListQuery::parse(query),
    })
}

fn decode_segment(s: &str) -> Result<String, RouteError> {
    percent_decode(s).map_err(|_| RouteError::BadRequest("Path is not valid UTF-8".into()))
}

pub mod site;
#[cfg(test)]
mod tests;

pub use site::{Site, Sites};

//! WebDAV for the operator at `/dav/…` on the admin listener (RFC 4918 class 1, with the
//! no-op locks class-2 clients insist on), behind HTTP Basic `admin:<admin password>`:
//! `/dav/` lists the users, `/dav/<user>/` holds `pub/` and `priv/`, and below them the
//! user's files, read and written through the store with its quotas, events and durability.
//!
//! Folders are implicit in the store (a folder exists while something is under it), so
//! `MKCOL` remembers the empty folders it made until something lands in them or the server
//! restarts. `PROPFIND` answers Depth 0 and 1 (not infinity) with a fixed set of live
//! properties, streamed page by page, so a folder of any size costs a page of memory.
//! `COPY` and `MOVE` copy bytes (a move then deletes), folders recursively; `Overwrite: F`
//! is honoured. Writes here skip the user's `allowed_write_paths` and locks (the operator
//! acts over them), but not the quota or the file/folder collision rule.
//!
//! Here: credentials, URLs, the method table and what a path is now; `read` answers
//! `PROPFIND` and `GET`, `write` the methods that change files.

mod read;
mod write;

use std::collections::HashSet;
use std::sync::Mutex;

use hyper::body::Incoming;
use hyper::{header, HeaderMap, Method, Request, Response, StatusCode};

use super::body::{read_limited, Body};
use super::response::ApiError;
use super::App;
use crate::pubkey::PublicKey;
use crate::storage_path::{percent_decode, percent_encode_path, StoragePath};
use crate::store::{EntryMeta, ListOptions, StoreError};

/// Where the tree is mounted on the admin listener.
pub const PREFIX: &str = "/dav";
const ALLOW: &str =
    "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, LOCK, UNLOCK";
/// Entries listed per store read while a folder's `PROPFIND` or index streams.
const PAGE: usize = 256;
/// Empty folders `MKCOL` may remember at once.
const MAX_EMPTY_FOLDERS: usize = 4096;

/// Empty folders made by `MKCOL` that hold nothing yet.
#[derive(Default)]
pub struct EmptyFolders(Mutex<HashSet<(PublicKey, String)>>);

impl EmptyFolders {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<(PublicKey, String)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn contains(&self, user: &PublicKey, dir: &str) -> bool {
        self.set().contains(&(*user, dir.to_string()))
    }
    /// Remembers `dir`; false when too many are remembered already.
    fn insert(&self, user: &PublicKey, dir: &str) -> bool {
        let mut s = self.set();
        s.len() < MAX_EMPTY_FOLDERS && s.insert((*user, dir.to_string()))
    }
    /// Forgets `dir` and every remembered folder above or below it (a file landed there,
    /// or the folder was deleted or moved).
    fn forget_around(&self, user: &PublicKey, path: &str) {
        self.set()
            .retain(|(u, d)| u != user || !(path.starts_with(d.as_str()) || d.starts_with(path)));
    }
    /// Remembered folders strictly inside `dir`, one level down.
    fn children(&self, user: &PublicKey, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .set()
            .iter()
            .filter(|(u, d)| u == user && d.len() > dir.len() && d.starts_with(dir))
            .filter(|(_, d)| !d[dir.len()..].trim_end_matches('/').contains('/'))
            .map(|(_, d)| d.clone())
            .collect();
        v.sort();
        v
    }
}

/// What a `/dav/…` URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `/dav/`: every user.
    Root,
    /// `/dav/<user>/`: `pub/` and `priv/`.
    User(PublicKey),
    /// A file or folder inside a user's storage (folder paths end with `/`).
    Path(PublicKey, StoragePath),
}

/// A node as it exists now.
enum Node {
    File(EntryMeta),
    Folder,
}

fn target(url_path: &str) -> Result<Target, ApiError> {
    let rest = url_path.strip_prefix(PREFIX).unwrap_or(url_path);
    let decoded = percent_decode(rest).map_err(|_| ApiError::bad_request("Invalid path"))?;
    let trimmed = decoded.trim_start_matches('/');
    if trimmed.is_empty() {
        return Ok(Target::Root);
    }
    let (user, tail) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let user = PublicKey::parse_z32(user).map_err(|_| ApiError::not_found())?;
    if tail.is_empty() {
        return Ok(Target::User(user));
    }
    let path = StoragePath::normalize(&format!("/{tail}"))
        .map_err(|e| ApiError::bad_request(format!("Invalid path: {e}")))?;
    if !path.is_public()
        && !path.is_private()
        && path.as_str() != "/pub"
        && path.as_str() != "/priv"
    {
        return Err(ApiError::not_found());
    }
    Ok(Target::Path(user, path))
}

/// A folder's path (with its slash) for a path given with or without one.
fn as_dir(path: &StoragePath) -> Option<StoragePath> {
    if path.is_dir() {
        return Some(path.clone());
    }
    StoragePath::strict(&format!("{}/", path.as_str())).ok()
}

/// A file's path (without the slash).
fn as_file(path: &StoragePath) -> Option<StoragePath> {
    let p = path.as_str().trim_end_matches('/');
    StoragePath::strict(p).ok().filter(|p| !p.is_dir())
}

/// `/dav/<user><path>` percent-encoded, for hrefs and `Destination`s.
fn href(user: &PublicKey, path: &str) -> String {
    format!("{PREFIX}/{user}{}", percent_encode_path(path))
}

/// Any `/dav…` request: checks the Basic credentials (wrong ones are throttled per
/// address, with the admin API's), then serves the method.
pub async fn handle(app: &App, req: Request<Incoming>, peer: std::net::IpAddr) -> Response<Body> {
    let given = basic_password(req.headers());
    let given = given.as_deref().map(str::as_bytes);
    let now = std::time::Instant::now();
    let checked = app.owner.verify(peer, given, now).await;
    if let Err(e) = checked {
        let mut r = ApiError::from(e).into_response();
        if r.status() == StatusCode::UNAUTHORIZED {
            // Asks a browser or a file manager for the credentials.
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"pubky-edge\""),
            );
        }
        return r;
    }
    serve(app, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

/// The password of `Authorization: Basic` for the user `admin`.
fn basic_password(h: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pw) = text.split_once(':')?;
    (user == "admin").then(|| pw.to_string())
}

async fn serve(app: &App, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let t = target(req.uri().path())?;
    let m = req.method().clone();
    match m.as_str() {
        "OPTIONS" => Response::builder()
            .status(StatusCode::OK)
            .header("dav", "1, 2")
            .header(header::ALLOW, ALLOW)
            .header("ms-author-via", "DAV")
            .body(Body::Empty)
            .map_err(super::response::internal),
        "PROPFIND" => {
            let depth = req.headers().get("depth").and_then(|v| v.to_str().ok());
            let depth = match depth.map(str::trim) {
                Some("0") => 0,
                Some("1") => 1,
                _ => {
                    return Err(ApiError::forbidden(
                        "PROPFIND needs Depth: 0 or 1 (propfind-finite-depth)",
                    ))
                }
            };
            // The request body names properties; every answer carries the same live set.
            let pace = app.config.limits.body_pace;
            read_limited(req.into_body(), 64 * 1024, pace).await?;
            read::propfind(app, &t, depth)
        }
        "GET" | "HEAD" => read::get(app, &t, m == Method::HEAD),
        "PUT" => write::put(app, &t, req).await,
        "DELETE" => write::delete(app, &t).await,
        "MKCOL" => write::mkcol(app, &t, req).await,
        "COPY" | "MOVE" => {
            let dest = destination(req.headers())?;
            let overwrite = !req
                .headers()
                .get("overwrite")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"f"));
            write::copy(app, &t, &dest, overwrite, m.as_str() == "MOVE").await
        }
        "LOCK" => fake_lock(req.uri().path()),
        "UNLOCK" => Ok(super::response::empty(StatusCode::NO_CONTENT)),
        "PROPPATCH" => Err(ApiError::forbidden("Properties cannot be changed here")),
        _ => Err(ApiError::from(super::route::RouteError::MethodNotAllowed(
            ALLOW,
        ))),
    }
}

/// The node at `path` of `user`: a file, a folder (something under it, or made by MKCOL),
/// or nothing.
fn node(app: &App, user: &PublicKey, path: &StoragePath) -> Result<Option<Node>, ApiError> {
    if let Some(file) = as_file(path) {
        if let Some(meta) = app.store.entry(user, &file)? {
            return Ok(Some(Node::File(meta)));
        }
    }
    let Some(dir) = as_dir(path) else {
        return Ok(None);
    };
    if matches!(dir.as_str(), "/pub/" | "/priv/") || app.dav_folders.contains(user, dir.as_str()) {
        return Ok(Some(Node::Folder));
    }
    let any = ListOptions {
        limit: 1,
        cursor: None,
        reverse: false,
        shallow: true,
    };
    match app.store.list(user, &dir, &any) {
        Ok(v) if !v.is_empty() => Ok(Some(Node::Folder)),
        Ok(_) | Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn known_user(app: &App, user: &PublicKey) -> Result<(), ApiError> {
    app.store
        .user(user)?
        .map(|_| ())
        .ok_or_else(ApiError::not_found)
}

/// `Destination` as a target: an absolute URL or an absolute path, under `/dav/`.
fn destination(h: &HeaderMap) -> Result<Target, ApiError> {
    let v = h
        .get("destination")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("Missing Destination header"))?;
    let path = match v.find("://") {
        Some(i) => {
            let after = &v[i + 3..];
            &after[after.find('/').unwrap_or(after.len())..]
        }
        None => v,
    };
    if path != PREFIX && !path.starts_with("/dav/") {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Destination is outside /dav/",
        ));
    }
    target(path)
}

/// `LOCK`: a token that guards nothing (the operator's clients ask for one before they
/// write; the users' own locks are not touched), as the reference's WebDAV does.
fn fake_lock(url_path: &str) -> Result<Response<Body>, ApiError> {
    let token = crate::account::locks::new_token();
    super::lock::discovery(&token, crate::account::locks::MAX_SECS, url_path, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";

    #[test]
    fn urls_name_users_and_paths() {
        let pk = PublicKey::parse_z32(PK).unwrap();
        assert_eq!(target("/dav").unwrap(), Target::Root);
        assert_eq!(target("/dav/").unwrap(), Target::Root);
        assert_eq!(target(&format!("/dav/{PK}")).unwrap(), Target::User(pk));
        assert_eq!(target(&format!("/dav/{PK}/")).unwrap(), Target::User(pk));
        let p = |s: &str| StoragePath::normalize(s).unwrap();
        assert_eq!(
            target(&format!("/dav/{PK}/pub/a%20b/c.txt")).unwrap(),
            Target::Path(pk, p("/pub/a b/c.txt"))
        );
        assert_eq!(
            target(&format!("/dav/{PK}/priv/")).unwrap(),
            Target::Path(pk, p("/priv/"))
        );
        assert!(target(&format!("/dav/{PK}/etc/x")).is_err());
        assert!(target("/dav/not-a-key/pub/x").is_err());
        assert!(target(&format!("/dav/{PK}/pub/../../x")).is_err());
        assert_eq!(href(&pk, "/pub/a b/"), format!("/dav/{PK}/pub/a%20b/"));
    }

    #[test]
    fn basic_credentials_and_destinations() {
        let mut h = HeaderMap::new();
        // base64("admin:s3cret:with:colons")
        h.insert(
            header::AUTHORIZATION,
            "Basic YWRtaW46czNjcmV0OndpdGg6Y29sb25z".parse().unwrap(),
        );
        assert_eq!(basic_password(&h).as_deref(), Some("s3cret:with:colons"));
        // base64("user:pw")
        h.insert(header::AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
        assert_eq!(basic_password(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_password(&h), None);
        let pk = PublicKey::parse_z32(PK).unwrap();
        let mut d = HeaderMap::new();
        d.insert(
            "destination",
            format!("http://127.0.0.1:6288/dav/{PK}/pub/b%20c")
                .parse()
                .unwrap(),
        );
        let want = Target::Path(pk, StoragePath::strict("/pub/b c").unwrap());
        assert_eq!(destination(&d).unwrap(), want);
        d.insert(
            "destination",
            format!("/dav/{PK}/pub/b%20c").parse().unwrap(),
        );
        assert_eq!(destination(&d).unwrap(), want);
        d.insert("destination", "http://elsewhere/x".parse().unwrap());
        assert_eq!(destination(&d).unwrap_err().status, StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn remembered_empty_folders() {
        let f = EmptyFolders::default();
        let pk = PublicKey::parse_z32(PK).unwrap();
        assert!(f.insert(&pk, "/pub/a/"));
        assert!(f.insert(&pk, "/pub/a/b/"));
        assert!(f.insert(&pk, "/pub/c/"));
        assert_eq!(f.children(&pk, "/pub/"), ["/pub/a/", "/pub/c/"]);
        assert_eq!(f.children(&pk, "/pub/a/"), ["/pub/a/b/"]);
        f.forget_around(&pk, "/pub/a/b/x.txt");
        assert!(!f.contains(&pk, "/pub/a/") && !f.contains(&pk, "/pub/a/b/"));
        assert!(f.contains(&pk, "/pub/c/"));
    }
}

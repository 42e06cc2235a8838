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

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{header, HeaderMap, Method, Request, Response, StatusCode};

use super::body::{read_limited, Body, BodyError};
use super::lock::xml_escape;
use super::response::ApiError;
use super::App;
use crate::account::operator::check_password;
use crate::clock;
use crate::pubkey::PublicKey;
use crate::storage_path::{percent_decode, percent_encode_path, StoragePath};
use crate::store::{Content, EntryMeta, ListOptions, StoreError};

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
pub async fn handle(
    app: &App,
    password: &str,
    req: Request<Incoming>,
    peer: std::net::IpAddr,
) -> Response<Body> {
    let given = basic_password(req.headers());
    let given = given.as_deref().map(str::as_bytes);
    let now = std::time::Instant::now();
    let checked = check_password(&app.admin_attempts, peer, given, password, now);
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
            propfind(app, &t, depth)
        }
        "GET" | "HEAD" => get(app, &t, m == Method::HEAD),
        "PUT" => put(app, &t, req).await,
        "DELETE" => delete(app, &t).await,
        "MKCOL" => mkcol(app, &t, req).await,
        "COPY" | "MOVE" => {
            let dest = destination(req.headers())?;
            let overwrite = !req
                .headers()
                .get("overwrite")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"f"));
            copy(app, &t, &dest, overwrite, m.as_str() == "MOVE").await
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

/// One `<D:response>` for a file or folder.
fn response_xml(out: &mut String, href: &str, name: &str, meta: Option<&EntryMeta>) {
    out.push_str("<D:response><D:href>");
    out.push_str(&xml_escape(href));
    out.push_str("</D:href><D:propstat><D:prop><D:displayname>");
    out.push_str(&xml_escape(name));
    out.push_str("</D:displayname>");
    match meta {
        None => out.push_str("<D:resourcetype><D:collection/></D:resourcetype>"),
        Some(m) => {
            let modified = httpdate::fmt_http_date(clock::system_time(m.modified_at));
            out.push_str(&format!(
                "<D:resourcetype/><D:getcontentlength>{}</D:getcontentlength>\
                 <D:getcontenttype>{}</D:getcontenttype>\
                 <D:getlastmodified>{modified}</D:getlastmodified>\
                 <D:getetag>{}</D:getetag>",
                m.len,
                xml_escape(&m.content_type),
                xml_escape(&super::storage::etag(&m.hash)),
            ));
        }
    }
    out.push_str("</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>");
}

const MULTISTATUS_HEAD: &str =
    r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">"#;
const MULTISTATUS_TAIL: &str = "</D:multistatus>";

fn multistatus(body: Body) -> Result<Response<Body>, ApiError> {
    Response::builder()
        .status(StatusCode::MULTI_STATUS)
        .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
        .body(body)
        .map_err(super::response::internal)
}

fn last_segment(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

fn propfind(app: &App, t: &Target, depth: u8) -> Result<Response<Body>, ApiError> {
    let mut out = String::from(MULTISTATUS_HEAD);
    match t {
        Target::Root => {
            response_xml(&mut out, &format!("{PREFIX}/"), "dav", None);
            if depth == 1 {
                for (pk, _) in app.store.users()? {
                    response_xml(&mut out, &format!("{PREFIX}/{pk}/"), &pk.to_z32(), None);
                }
            }
        }
        Target::User(user) => {
            known_user(app, user)?;
            response_xml(&mut out, &href(user, "/"), &user.to_z32(), None);
            if depth == 1 {
                for root in ["/pub/", "/priv/"] {
                    response_xml(&mut out, &href(user, root), last_segment(root), None);
                }
            }
        }
        Target::Path(user, path) => {
            known_user(app, user)?;
            match node(app, user, path)?.ok_or_else(ApiError::not_found)? {
                Node::File(meta) => {
                    let file = as_file(path).ok_or_else(ApiError::not_found)?;
                    let name = last_segment(file.as_str());
                    response_xml(&mut out, &href(user, file.as_str()), name, Some(&meta));
                }
                Node::Folder => {
                    let dir = as_dir(path).ok_or_else(ApiError::not_found)?;
                    let name = last_segment(dir.as_str());
                    response_xml(&mut out, &href(user, dir.as_str()), name, None);
                    if depth == 1 {
                        return multistatus(Body::Stream(folder_stream(
                            app,
                            *user,
                            dir,
                            out,
                            Style::Xml,
                        )));
                    }
                }
            }
        }
    }
    out.push_str(MULTISTATUS_TAIL);
    multistatus(Body::Full(out.into()))
}

#[derive(Clone, Copy)]
enum Style {
    Xml,
    Html,
}

/// A folder's children, a page at a time, after `head` and before the closing tail: the
/// remembered empty folders first, then what the store lists.
fn folder_stream(
    app: &App,
    user: PublicKey,
    dir: StoragePath,
    head: String,
    style: Style,
) -> super::body::ChunkStream {
    struct State {
        store: crate::store::Store,
        user: PublicKey,
        dir: StoragePath,
        cursor: Option<String>,
        pending: Option<String>,
        done: bool,
    }
    let mut first = head;
    for d in app.dav_folders.children(&user, dir.as_str()) {
        child(&mut first, &user, &d, None, style);
    }
    let state = State {
        store: app.store.clone(),
        user,
        dir,
        cursor: None,
        pending: Some(first),
        done: false,
    };
    Box::pin(smol::stream::unfold(state, move |mut s| async move {
        if let Some(p) = s.pending.take() {
            return Some((Ok(Bytes::from(p)), s));
        }
        if s.done {
            return None;
        }
        let opts = ListOptions {
            limit: PAGE,
            cursor: s.cursor.clone(),
            reverse: false,
            shallow: true,
        };
        let mut out = String::new();
        let page = match s.store.list(&s.user, &s.dir, &opts) {
            Ok(p) => p,
            Err(StoreError::NotFound) => Vec::new(),
            Err(e) => return Some((Err(std::io::Error::other(e.to_string())), s)),
        };
        for p in &page {
            let path = p.as_str();
            let meta = if path.ends_with('/') {
                None
            } else {
                match StoragePath::strict(path).map(|sp| s.store.entry(&s.user, &sp)) {
                    Ok(Ok(Some(m))) => Some(m),
                    // Deleted between the listing and now: leave it out.
                    _ => continue,
                }
            };
            child(&mut out, &s.user, path, meta.as_ref(), style);
        }
        s.cursor = page.last().cloned();
        if page.len() < PAGE {
            s.done = true;
            out.push_str(match style {
                Style::Xml => MULTISTATUS_TAIL,
                Style::Html => "</ul></body></html>\n",
            });
        }
        Some((Ok(Bytes::from(out)), s))
    }))
}

fn child(out: &mut String, user: &PublicKey, path: &str, meta: Option<&EntryMeta>, s: Style) {
    let name = last_segment(path);
    match s {
        Style::Xml => response_xml(out, &href(user, path), name, meta),
        Style::Html => {
            let slash = if path.ends_with('/') { "/" } else { "" };
            out.push_str(&format!(
                "<li><a href=\"{}\">{}{slash}</a></li>",
                xml_escape(&href(user, path)),
                xml_escape(name)
            ));
        }
    }
}

fn get(app: &App, t: &Target, head_only: bool) -> Result<Response<Body>, ApiError> {
    let html = |title: &str| {
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title></head>\
             <body><h1>{0}</h1><ul>",
            xml_escape(title)
        )
    };
    let page = |body: Body| {
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(if head_only { Body::Empty } else { body })
            .map_err(super::response::internal)
    };
    match t {
        Target::Root => {
            let mut out = html("Users");
            for (pk, _) in app.store.users()? {
                let z = pk.to_z32();
                out.push_str(&format!("<li><a href=\"{PREFIX}/{z}/\">{z}/</a></li>"));
            }
            out.push_str("</ul></body></html>\n");
            page(Body::Full(out.into()))
        }
        Target::User(user) => {
            known_user(app, user)?;
            let mut out = html(&user.to_z32());
            for root in ["pub", "priv"] {
                out.push_str(&format!("<li><a href=\"{root}/\">{root}/</a></li>"));
            }
            out.push_str("</ul></body></html>\n");
            page(Body::Full(out.into()))
        }
        Target::Path(user, path) => match node(app, user, path)? {
            None => Err(ApiError::not_found()),
            Some(Node::Folder) => {
                let dir = as_dir(path).ok_or_else(ApiError::not_found)?;
                let head = html(&format!("{user}{}", dir.as_str()));
                page(Body::Stream(folder_stream(
                    app,
                    *user,
                    dir,
                    head,
                    Style::Html,
                )))
            }
            Some(Node::File(_)) => {
                let file = as_file(path).ok_or_else(ApiError::not_found)?;
                let (meta, content) = app
                    .store
                    .read(user, &file)?
                    .ok_or_else(ApiError::not_found)?;
                let body = match (head_only, content) {
                    (true, _) => Body::Empty,
                    (false, Content::Inline(b)) => Body::Full(b),
                    (false, Content::File(f)) => Body::file(f, meta.len),
                };
                let mut r = Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, meta.content_type.as_str())
                    .header(header::ETAG, super::storage::etag(&meta.hash))
                    .header(
                        header::LAST_MODIFIED,
                        httpdate::fmt_http_date(clock::system_time(meta.modified_at)),
                    )
                    .body(body)
                    .map_err(super::response::internal)?;
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, header::HeaderValue::from(meta.len));
                Ok(r)
            }
        },
    }
}

/// A writable file path: inside `/pub/` or `/priv/`, not a folder.
fn writable(t: &Target) -> Result<(PublicKey, StoragePath), ApiError> {
    match t {
        Target::Path(user, path) if !path.is_dir() && (path.is_public() || path.is_private()) => {
            Ok((*user, path.clone()))
        }
        Target::Path(..) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only files inside pub/ and priv/ can be written",
        )),
        _ => Err(ApiError::forbidden(
            "Only files inside pub/ and priv/ can be written",
        )),
    }
}

async fn put(app: &App, t: &Target, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (user, path) = writable(t)?;
    known_user(app, &user)?;
    if matches!(node(app, &user, &path)?, Some(Node::Folder)) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "A folder is there",
        ));
    }
    let existed = app.store.entry(&user, &path)?.is_some();
    let allowance = app.store.write_allowance(&user, &path)?;
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    super::storage::precheck(app, allowance, length)?;
    let (staged, content_type) =
        super::storage::receive(app, req.into_body(), &path, allowance, None).await?;
    app.store
        .put(&user, &path, staged, &content_type, clock::now_micros())
        .await?;
    app.dav_folders.forget_around(&user, path.as_str());
    tracing::info!(user = %user, path = %path, "admin wrote a file over WebDAV");
    Ok(created_or_replaced(existed))
}

fn created_or_replaced(existed: bool) -> Response<Body> {
    let status = if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    };
    super::response::empty(status)
}

/// Every file at or under `path` (a file alone, or a folder's files), in key order.
fn files_under(
    app: &App,
    user: &PublicKey,
    path: &StoragePath,
) -> Result<Vec<StoragePath>, ApiError> {
    if let Some(file) = as_file(path) {
        if app.store.entry(user, &file)?.is_some() {
            return Ok(vec![file]);
        }
    }
    let Some(dir) = as_dir(path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let opts = ListOptions {
            limit: 1000,
            cursor,
            reverse: false,
            shallow: false,
        };
        let page = match app.store.list(user, &dir, &opts) {
            Ok(p) => p,
            Err(StoreError::NotFound) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for p in &page {
            out.push(StoragePath::strict(p).map_err(|e| ApiError::bad_request(e.to_string()))?);
        }
        if page.len() < 1000 {
            return Ok(out);
        }
        cursor = page.last().cloned();
    }
}

async fn delete(app: &App, t: &Target) -> Result<Response<Body>, ApiError> {
    let Target::Path(user, path) = t else {
        return Err(ApiError::forbidden(
            "Users are deleted elsewhere, not over WebDAV",
        ));
    };
    if matches!(path.as_str(), "/pub/" | "/pub" | "/priv/" | "/priv") {
        return Err(ApiError::forbidden("pub/ and priv/ cannot be deleted"));
    }
    let node = node(app, user, path)?.ok_or_else(ApiError::not_found)?;
    let files = files_under(app, user, path)?;
    for f in &files {
        app.store.delete(user, f, clock::now_micros()).await?;
    }
    if matches!(node, Node::Folder) {
        app.dav_folders.forget_around(user, path.as_str());
    }
    tracing::info!(user = %user, path = %path, files = files.len(), "admin deleted over WebDAV");
    Ok(super::response::empty(StatusCode::NO_CONTENT))
}

async fn mkcol(app: &App, t: &Target, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let Target::Path(user, path) = t else {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "It exists"));
    };
    known_user(app, user)?;
    let body = read_limited(req.into_body(), 1, app.config.limits.body_pace).await;
    if matches!(body, Err(BodyError::TooLarge)) || body.is_ok_and(|b| !b.is_empty()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "MKCOL takes no body",
        ));
    }
    let dir = as_dir(path).ok_or_else(|| ApiError::bad_request("Invalid folder"))?;
    if node(app, user, &dir)?.is_some() {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "It exists"));
    }
    // A file where a parent folder would be: the folder cannot exist (RFC 4918 9.3.1).
    for anc in dir.ancestors() {
        if let Some(f) = as_file(&StoragePath::strict(anc).map_err(|_| ApiError::not_found())?) {
            if app.store.entry(user, &f)?.is_some() {
                return Err(ApiError::new(StatusCode::CONFLICT, "A parent is a file"));
            }
        }
    }
    if !app.dav_folders.insert(user, dir.as_str()) {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "Too many empty folders; put files in some first",
        ));
    }
    Ok(super::response::empty(StatusCode::CREATED))
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

async fn copy(
    app: &App,
    from: &Target,
    to: &Target,
    overwrite: bool,
    remove_source: bool,
) -> Result<Response<Body>, ApiError> {
    let (Target::Path(src_user, src), Target::Path(dst_user, dst)) = (from, to) else {
        return Err(ApiError::forbidden(
            "Only files and folders inside pub/ and priv/ move",
        ));
    };
    known_user(app, dst_user)?;
    let Some(src_node) = node(app, src_user, src)? else {
        return Err(ApiError::not_found());
    };
    let folder = matches!(src_node, Node::Folder);
    let (src_base, dst_base) = if folder {
        let s = as_dir(src).ok_or_else(ApiError::not_found)?;
        let d = as_dir(dst).ok_or_else(|| ApiError::bad_request("Invalid Destination"))?;
        (s, d)
    } else {
        let d = as_file(dst).ok_or_else(|| ApiError::bad_request("Invalid Destination"))?;
        (as_file(src).ok_or_else(ApiError::not_found)?, d)
    };
    if src_user == dst_user
        && (src_base == dst_base || (folder && dst_base.as_str().starts_with(src_base.as_str())))
    {
        return Err(ApiError::forbidden("Source and destination overlap"));
    }
    if !(dst_base.is_public() || dst_base.is_private())
        || matches!(dst_base.as_str(), "/pub/" | "/priv/")
    {
        return Err(ApiError::forbidden(
            "The destination must be inside pub/ or priv/",
        ));
    }
    let existed = node(app, dst_user, &dst_base)?.is_some();
    if existed && !overwrite {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "The destination exists and Overwrite is F",
        ));
    }
    if existed {
        for f in files_under(app, dst_user, &dst_base)? {
            app.store.delete(dst_user, &f, clock::now_micros()).await?;
        }
    }
    for f in files_under(app, src_user, &src_base)? {
        let suffix = &f.as_str()[src_base.as_str().len()..];
        let target = StoragePath::strict(&format!("{}{suffix}", dst_base.as_str()))
            .map_err(|e| ApiError::bad_request(format!("Invalid Destination: {e}")))?;
        copy_file(app, src_user, &f, dst_user, &target).await?;
        if remove_source {
            app.store.delete(src_user, &f, clock::now_micros()).await?;
        }
    }
    app.dav_folders.forget_around(dst_user, dst_base.as_str());
    if remove_source && folder {
        app.dav_folders.forget_around(src_user, src_base.as_str());
    }
    tracing::info!(from = %src_base, to = %dst_base, moved = remove_source, "admin copied over WebDAV");
    Ok(created_or_replaced(existed))
}

/// One file's bytes and type to another path (its own commit, quota and event).
async fn copy_file(
    app: &App,
    from_user: &PublicKey,
    from: &StoragePath,
    to_user: &PublicKey,
    to: &StoragePath,
) -> Result<(), ApiError> {
    let (meta, content) = app
        .store
        .read(from_user, from)?
        .ok_or_else(ApiError::not_found)?;
    if app
        .store
        .write_allowance(to_user, to)?
        .is_some_and(|a| meta.len > a)
    {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "Disk space quota exceeded",
        ));
    }
    let mut upload = app.store.upload();
    match content {
        Content::Inline(b) => upload.write(&b).await?,
        Content::File(f) => {
            // The same off-thread, read-ahead chunks a GET streams.
            let mut file = super::body::FileBody::new(f, meta.len);
            while let Some(chunk) = file.next_chunk().await {
                let chunk = chunk.map_err(|e| ApiError::from(StoreError::from(e)))?;
                upload.write(&chunk).await?;
            }
        }
    }
    let staged = upload.finish().await?;
    app.store
        .put(to_user, to, staged, &meta.content_type, clock::now_micros())
        .await?;
    Ok(())
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

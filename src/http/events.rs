//! Events over HTTP: the plain-text `GET /events/` feed and the Server-Sent Events stream
//! `GET /events-stream` (the admin listener opens the same stream with wider rights).
//!
//! A stream replays history from the store in batches, then (live mode) sleeps on the
//! store's publish signal and reads again from its per-user cursors. Nothing is queued per
//! subscriber beyond the batch being written, so a slow reader costs no memory and writers
//! never wait for readers. A live reader still catching up after `max_lag` newer events is
//! disconnected (it resumes by cursor); one whose socket accepts nothing is dropped by the
//! transport's write-stall limit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{header, HeaderMap, Request, Response, StatusCode};
use serde::Deserialize;
use smol::future::FutureExt;

use super::body::Body;
use super::error::ApiError;
use super::listing::{form_decode, ListQuery};
use super::route::query_pairs;
use super::session::{Caller, CookiePolicy};
use super::App;
use crate::metrics::Metrics;
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;
use crate::store::{EventKind, EventRecord, Scan, Store};

/// Events read from the store per batch.
const BATCH: usize = 100;
/// Most users one stream may follow.
pub const MAX_USERS: usize = 50;

#[derive(Debug, Clone, Deserialize)]
pub struct EventsConfig {
    pub max_streams: usize,
    pub keep_alive_ms: u64,
    pub max_lag: u64,
}

impl EventsConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("events.max_streams", self.max_streams as u64),
            ("events.keep_alive_ms", self.keep_alive_ms),
            ("events.max_lag", self.max_lag),
        ] {
            if v == 0 {
                return Err(format!("{k} must be greater than 0"));
            }
        }
        Ok(())
    }
}

/// Open streams under the cap, and the shutdown flag that ends them.
pub struct Streams {
    open: AtomicUsize,
    max: usize,
    closing: AtomicBool,
}

impl Streams {
    pub fn new(max: usize) -> Arc<Streams> {
        Arc::new(Streams {
            open: AtomicUsize::new(0),
            max,
            closing: AtomicBool::new(false),
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Ends every stream at its next wake-up; the caller then wakes them (store).
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    fn acquire(self: &Arc<Self>, metrics: &Arc<Metrics>) -> Option<Slot> {
        let taken = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            metrics.stream_refused();
            return None;
        }
        metrics.stream_opened();
        Some(Slot {
            streams: self.clone(),
            metrics: metrics.clone(),
            since: Instant::now(),
        })
    }
}

/// One stream's place under the cap; released when the response body is dropped.
struct Slot {
    streams: Arc<Streams>,
    metrics: Arc<Metrics>,
    since: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.streams.open.fetch_sub(1, Ordering::SeqCst);
        self.metrics.stream_closed(self.since.elapsed());
    }
}

/// Does `filter` (a directory subtree or one file) cover `path`?
fn covers(filter: &StoragePath, path: &str) -> bool {
    let f = filter.as_str();
    f == path || (filter.is_dir() && path.starts_with(f))
}

/// `GET /events/`: public events of all users after `cursor`, as text lines.
pub fn feed(app: &App, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let q = ListQuery::parse(query)?;
    let cursor = match q.cursor.as_deref() {
        None => 0,
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("Invalid cursor"))?,
    };
    let start = Instant::now();
    let scan = Scan {
        cursor: Some(cursor),
        reverse: false,
        limit: q.limit,
    };
    let events = app
        .store
        .scan_events(scan, |e| e.path.starts_with("/pub/"))?;
    app.metrics.events_query(start.elapsed());
    let mut out = String::with_capacity(events.len() * 100);
    for (_, e) in &events {
        let kind = match e.kind {
            EventKind::Put => "PUT",
            EventKind::Del => "DEL",
        };
        out.push_str(&format!("{kind} pubky://{}{}\n", e.user, e.path));
    }
    if let Some((last, _)) = events.last() {
        out.push_str(&format!("cursor: {last}"));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(out))
        .map_err(super::storage::internal)
}

/// The parameters of `GET /events-stream` after §6.1's parsing rules.
#[derive(Debug, Default)]
pub struct StreamQuery {
    /// Users in request order (duplicates collapsed) with their raw cursors.
    pub users: Vec<(PublicKey, Option<String>)>,
    pub limit: Option<usize>,
    pub live: bool,
    pub reverse: bool,
    pub paths: Vec<StoragePath>,
    /// Admin form: one cursor for the whole stream.
    pub cursor: Option<String>,
}

fn sse_bool(v: &str) -> bool {
    v == "true" || v == "1"
}

impl StreamQuery {
    /// Parses the query; `admin` allows no `user` and a global `cursor`, and forbids
    /// per-user cursors.
    pub fn parse(query: Option<&str>, admin: bool) -> Result<StreamQuery, ApiError> {
        let mut q = StreamQuery::default();
        let mut user_values = 0usize;
        for (k, raw) in query_pairs(query.unwrap_or("")) {
            let v = form_decode(raw);
            match k {
                "user" if !v.is_empty() => {
                    user_values += 1;
                    let (key, cursor) = match v.split_once(':') {
                        Some((k, c)) if !admin => (k, Some(c.to_string())),
                        _ => (v.as_str(), None),
                    };
                    let pk = PublicKey::parse_z32(key)
                        .map_err(|_| ApiError::bad_request(format!("Invalid public key: {v}")))?;
                    if !q.users.iter().any(|(u, _)| *u == pk) {
                        q.users.push((pk, cursor));
                    }
                }
                "limit" => {
                    let n: u16 = v
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("Invalid limit: {v}")))?;
                    if n == 0 {
                        return Err(ApiError::bad_request("limit must be at least 1"));
                    }
                    q.limit = Some(n as usize);
                }
                "live" => q.live = sse_bool(&v),
                "reverse" => q.reverse = sse_bool(&v),
                "cursor" if admin && !v.is_empty() => q.cursor = Some(v),
                "path" if !v.is_empty() => {
                    let p = if v.starts_with('/') {
                        v.clone()
                    } else {
                        format!("/{v}")
                    };
                    let p = StoragePath::normalize(&p)
                        .map_err(|e| ApiError::bad_request(format!("Invalid path: {e}")))?;
                    if !q.paths.contains(&p) {
                        q.paths.push(p);
                    }
                }
                _ => {}
            }
        }
        let distinct = if admin { q.users.len() } else { user_values };
        if q.users.is_empty() && !admin {
            return Err(ApiError::bad_request("user parameter is required"));
        }
        if distinct > MAX_USERS {
            return Err(ApiError::bad_request(format!(
                "Too many users. Maximum allowed: {MAX_USERS}"
            )));
        }
        if q.live && q.reverse {
            return Err(ApiError::bad_request(
                "Cannot use live mode with reverse ordering",
            ));
        }
        Ok(q)
    }
}

/// §3.1's read check applied to a stream filter; `tenant` is the single user, if one.
fn authorize_filter(
    filter: &StoragePath,
    caller: Option<&Caller>,
    tenant: Option<&PublicKey>,
) -> Result<(), ApiError> {
    if filter.is_public() {
        return Ok(());
    }
    if !filter.is_private() {
        return Err(ApiError::forbidden(
            "Reading from directories other than '/pub/' and '/priv/' is forbidden",
        ));
    }
    let c = caller
        .ok_or_else(|| ApiError::unauthorized("Authentication required to read private storage"))?;
    let tenant = tenant
        .ok_or_else(|| ApiError::forbidden("A private read must be scoped to exactly one user"))?;
    if c.user != *tenant {
        return Err(ApiError::forbidden(
            "Session user does not match target tenant",
        ));
    }
    if !c.caps.can_read(filter) {
        return Err(ApiError::forbidden(
            "Session does not have read access to path",
        ));
    }
    Ok(())
}

fn parse_event_cursor(c: &str) -> Result<u64, ApiError> {
    c.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("Invalid cursor: {c}")))
}

/// `GET /events-stream`: validates in the spec's order, then opens the stream.
pub fn stream(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let q = StreamQuery::parse(req.uri().query(), false)?;
    let tenant = (q.users.len() == 1).then(|| q.users[0].0);
    let caller = Caller::resolve(
        app,
        req.headers(),
        tenant.as_ref(),
        CookiePolicy::OnlyWithoutBearer,
    )?;
    let filters = if q.paths.is_empty() {
        // Invariant: "/pub/" is a canonical directory path.
        vec![StoragePath::strict("/pub/").expect("canonical")]
    } else {
        q.paths.clone()
    };
    for f in &filters {
        authorize_filter(f, caller.as_ref(), tenant.as_ref())?;
    }
    let mut users = Vec::with_capacity(q.users.len());
    for (pk, _) in &q.users {
        if app.store.user(pk)?.is_none() {
            return Err(ApiError::not_found());
        }
    }
    for (pk, c) in &q.users {
        users.push((*pk, c.as_deref().map(parse_event_cursor).transpose()?));
    }
    // A private stream ends when the credential that opened it stops resolving.
    let guard = match (&caller, filters.iter().any(StoragePath::is_private), tenant) {
        (Some(c), true, Some(t)) => Some(Revocation {
            headers: req.headers().clone(),
            tenant: t,
            user: c.user,
        }),
        _ => None,
    };
    let source = Source::Users(users);
    open(app, source, filters, &q, guard)
}

/// Whose events a stream follows.
pub enum Source {
    /// Per-user cursors (client streams).
    Users(Vec<(PublicKey, Option<u64>)>),
    /// All users, or a subset, with one global cursor (admin streams).
    Global {
        users: Vec<PublicKey>,
        cursor: Option<u64>,
    },
}

/// Re-checks a private stream's credential before each batch.
pub struct Revocation {
    headers: HeaderMap,
    tenant: PublicKey,
    user: PublicKey,
}

/// Opens a stream (cap permitting) with already validated parameters.
pub fn open(
    app: &App,
    source: Source,
    filters: Vec<StoragePath>,
    q: &StreamQuery,
    revocation: Option<Revocation>,
) -> Result<Response<Body>, ApiError> {
    let Some(slot) = app.streams.acquire(&app.metrics) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many event streams are open; try again later",
        ));
    };
    let cfg = &app.config.events;
    let sub = Subscription {
        store: app.store.clone(),
        metrics: app.metrics.clone(),
        streams: app.streams.clone(),
        source,
        filters,
        reverse: q.reverse,
        live: q.live,
        remaining: q.limit,
        keep_alive: Duration::from_millis(cfg.keep_alive_ms),
        max_lag: cfg.max_lag,
        caught_up_at: None,
        revocation,
        _slot: slot,
    };
    let body = smol::stream::unfold(sub, |mut sub| async move {
        let chunk = sub.next_chunk().await?;
        Some((Ok(chunk), sub))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::VARY, "pubky-host, Authorization, Cookie")
        .body(Body::Stream(Box::pin(body)))
        .map_err(super::storage::internal)
}

struct Subscription {
    store: Store,
    metrics: Arc<Metrics>,
    streams: Arc<Streams>,
    source: Source,
    /// Empty = every path (admin without filters).
    filters: Vec<StoragePath>,
    reverse: bool,
    live: bool,
    remaining: Option<usize>,
    keep_alive: Duration,
    max_lag: u64,
    /// Head of the log when this live subscriber last had nothing to send.
    caught_up_at: Option<u64>,
    revocation: Option<Revocation>,
    _slot: Slot,
}

impl Subscription {
    /// The next bytes to send: a batch of events or a keep-alive comment; `None` ends it.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.remaining == Some(0) || self.streams.closing.load(Ordering::SeqCst) {
                return None;
            }
            if !self.still_authorized() {
                return None;
            }
            let listener = self.store.event_listener();
            let head = self.store.event_head();
            let limit = self.remaining.unwrap_or(BATCH).min(BATCH);
            let started = Instant::now();
            let batch = match self.query(limit) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("event stream query failed: {e}");
                    return None;
                }
            };
            self.metrics.stream_query(started.elapsed());
            if !batch.is_empty() {
                if let Some(at) = self.caught_up_at {
                    if self.store.event_head().saturating_sub(at) > self.max_lag {
                        self.metrics.stream_lagged();
                        tracing::info!("event stream fell behind; disconnected");
                        return None;
                    }
                }
                return Some(self.emit(batch));
            }
            if !self.live {
                return None;
            }
            self.caught_up_at = Some(head);
            let woke = async {
                listener.await;
                true
            }
            .or(async {
                smol::Timer::after(self.keep_alive).await;
                false
            })
            .await;
            if !woke {
                return Some(Bytes::from_static(b":\n\n"));
            }
        }
    }

    fn still_authorized(&self) -> bool {
        let Some(r) = &self.revocation else {
            return true;
        };
        credential_user(&self.store, &r.headers, &r.tenant) == Some(r.user)
    }

    fn query(&self, limit: usize) -> Result<Vec<(u64, EventRecord)>, crate::store::StoreError> {
        let filters = &self.filters;
        let keep =
            |e: &EventRecord| filters.is_empty() || filters.iter().any(|f| covers(f, &e.path));
        match &self.source {
            Source::Users(users) => {
                let mut all = Vec::new();
                for (u, cursor) in users {
                    let scan = Scan {
                        cursor: *cursor,
                        reverse: self.reverse,
                        limit,
                    };
                    all.extend(self.store.scan_user_events(u, scan, keep)?);
                }
                if self.reverse {
                    all.sort_by_key(|e| std::cmp::Reverse(e.0));
                } else {
                    all.sort_by_key(|e| e.0);
                }
                all.truncate(limit);
                Ok(all)
            }
            Source::Global { users, cursor } => {
                let scan = Scan {
                    cursor: *cursor,
                    reverse: self.reverse,
                    limit,
                };
                self.store.scan_events(scan, |e| {
                    (users.is_empty() || users.contains(&e.user)) && keep(e)
                })
            }
        }
    }

    /// Formats a batch and moves the cursors past it.
    fn emit(&mut self, batch: Vec<(u64, EventRecord)>) -> Bytes {
        let mut out = String::with_capacity(batch.len() * 180);
        for (id, e) in &batch {
            match &mut self.source {
                Source::Users(users) => {
                    if let Some(u) = users.iter_mut().find(|(u, _)| *u == e.user) {
                        u.1 = Some(*id);
                    }
                }
                Source::Global { cursor, .. } => *cursor = Some(*id),
            }
            format_event(&mut out, *id, e);
        }
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(batch.len());
        }
        Bytes::from(out)
    }
}

/// The user a stream's credential still resolves to (bearer, else the tenant's cookie).
fn credential_user(store: &Store, headers: &HeaderMap, tenant: &PublicKey) -> Option<PublicKey> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| crate::auth::token::bearer_from_header(v.as_bytes()))
    {
        let hash = crate::auth::token::bearer_hash(bearer);
        return match store.session(&hash, crate::clock::now_secs()) {
            Ok(Some((s, _))) => Some(s.user),
            _ => None,
        };
    }
    match super::session::cookie_caller(store, headers, tenant) {
        Ok(Some(c)) => Some(c.user),
        _ => None,
    }
}

/// One SSE event in §6.2's format.
pub fn format_event(out: &mut String, id: u64, e: &EventRecord) {
    use base64::Engine;
    let kind = match e.kind {
        EventKind::Put => "PUT",
        EventKind::Del => "DEL",
    };
    out.push_str(&format!(
        "event: {kind}\ndata: pubky://{}{}\ndata: cursor: {id}\n",
        e.user, e.path
    ));
    if let (EventKind::Put, Some(h)) = (e.kind, &e.hash) {
        out.push_str("data: content_hash: ");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(h));
        out.push('\n');
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
    const PK2: &str = "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no";

    fn err(q: &str) -> String {
        StreamQuery::parse(Some(q), false)
            .map(|_| ())
            .unwrap_err()
            .message
            .into_owned()
    }

    #[test]
    fn stream_query_rules() {
        let q = StreamQuery::parse(
            Some(&format!(
                "user={PK}:42&user={PK2}&user={PK}&user=&live=1&limit=5&path=pub/a/&path="
            )),
            false,
        )
        .unwrap();
        assert_eq!(q.users.len(), 2);
        assert_eq!(q.users[0].1.as_deref(), Some("42"));
        assert_eq!(q.users[1].1, None);
        assert!(q.live && !q.reverse);
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.paths[0].as_str(), "/pub/a/");
        assert!(
            !StreamQuery::parse(Some(&format!("user={PK}&live")), false)
                .unwrap()
                .live
        );
        assert_eq!(err(""), "user parameter is required");
        assert_eq!(err("user="), "user parameter is required");
        assert_eq!(err("user=abc"), "Invalid public key: abc");
        assert_eq!(
            err(&format!("user=pubky{PK}")),
            format!("Invalid public key: pubky{PK}")
        );
        assert_eq!(
            err(&format!("user={PK}&live=true&reverse=true")),
            "Cannot use live mode with reverse ordering"
        );
        assert_eq!(
            err(&format!("user={PK}&limit=0")),
            "limit must be at least 1"
        );
        assert_eq!(err(&format!("user={PK}&limit=x")), "Invalid limit: x");
        assert_eq!(
            err(&format!("user={PK}&limit=70000")),
            "Invalid limit: 70000"
        );
        assert!(err(&format!("user={PK}&path=/pub/../..")).starts_with("Invalid path"));
        let many: String = (0..51).map(|_| format!("user={PK}&")).collect();
        assert_eq!(err(&many), "Too many users. Maximum allowed: 50");
        // admin form: no user needed, `:` is part of nothing, global cursor
        let a = StreamQuery::parse(Some("cursor=7"), true).unwrap();
        assert_eq!(a.cursor.as_deref(), Some("7"));
        assert!(a.users.is_empty());
    }

    #[test]
    fn filters_and_format() {
        let d = StoragePath::strict("/pub/my_folder/").unwrap();
        assert!(covers(&d, "/pub/my_folder/file.txt"));
        assert!(!covers(&d, "/pub/myfolder/file.txt"));
        let f = StoragePath::strict("/pub/test.txt").unwrap();
        assert!(covers(&f, "/pub/test.txt") && !covers(&f, "/pub/test.txt2"));
        let user = PublicKey::parse_z32(PK).unwrap();
        let mut out = String::new();
        let e = EventRecord {
            user,
            path: "/pub/a.txt".into(),
            kind: EventKind::Put,
            hash: Some(*blake3::hash(b"hello").as_bytes()),
            created_at: 0,
        };
        format_event(&mut out, 42, &e);
        assert_eq!(
            out,
            format!("event: PUT\ndata: pubky://{PK}/pub/a.txt\ndata: cursor: 42\ndata: content_hash: 6o8WPbOGgpJeRJHF5Y1Ls1Bu+MFOt4qG6QjFYkpnIA8=\n\n")
        );
        out.clear();
        let e = EventRecord {
            kind: EventKind::Del,
            hash: None,
            ..e
        };
        format_event(&mut out, 43, &e);
        assert_eq!(
            out,
            format!("event: DEL\ndata: pubky://{PK}/pub/a.txt\ndata: cursor: 43\n\n")
        );
    }

    fn subscription(store: &Store, user: PublicKey, max_lag: u64) -> Subscription {
        let metrics = Arc::new(Metrics::new());
        let streams = Streams::new(4);
        let slot = streams.acquire(&metrics).unwrap();
        Subscription {
            store: store.clone(),
            metrics,
            streams,
            source: Source::Users(vec![(user, None)]),
            filters: vec![StoragePath::strict("/pub/").unwrap()],
            reverse: false,
            live: true,
            remaining: None,
            keep_alive: Duration::from_millis(10),
            max_lag,
            caught_up_at: None,
            revocation: None,
            _slot: slot,
        }
    }

    #[test]
    fn live_subscriber_too_far_behind_is_dropped() {
        smol::block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(
                dir.path(),
                crate::store::StoreConfig {
                    cache_capacity_bytes: 1 << 20,
                    inline_max: 1024,
                    durability: crate::store::Durability::Relaxed,
                    default_quota_bytes: None,
                },
            )
            .unwrap();
            let user = PublicKey::parse_z32(PK).unwrap();
            store.create_user(&user, None, 0).await.unwrap();
            let mut slow = subscription(&store, user, 3);
            let mut fine = subscription(&store, user, 10);
            // nothing yet: both are caught up and get a keep-alive
            assert_eq!(
                slow.next_chunk().await.unwrap(),
                Bytes::from_static(b":\n\n")
            );
            assert_eq!(
                fine.next_chunk().await.unwrap(),
                Bytes::from_static(b":\n\n")
            );
            for i in 0..5 {
                let mut up = store.upload();
                up.write(b"x").await.unwrap();
                let staged = up.finish().await.unwrap();
                let path = StoragePath::strict(&format!("/pub/{i}")).unwrap();
                store
                    .put(&user, &path, staged, "text/plain", 1)
                    .await
                    .unwrap();
            }
            assert!(slow.next_chunk().await.is_none());
            assert_eq!(slow.metrics.streams_lagged.load(Ordering::Relaxed), 1);
            let batch = fine.next_chunk().await.unwrap();
            assert_eq!(
                String::from_utf8_lossy(&batch)
                    .matches("event: PUT")
                    .count(),
                5
            );
            drop((slow, fine));
            store.close().await.unwrap();
        });
    }
}

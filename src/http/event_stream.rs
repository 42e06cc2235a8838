//! One open event stream: replays history from the store in batches, then (live mode)
//! sleeps on the store's publish signal and reads again from its cursors. Nothing is queued
//! per subscriber beyond the batch being written, so a slow reader costs no memory and
//! writers never wait for readers. A live reader still catching up after `max_lag` newer
//! events is disconnected (it resumes by cursor); one whose socket accepts nothing is
//! dropped by the transport's write-stall limit. `limits::streams` caps how many are open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{header, Response, StatusCode};
use smol::future::FutureExt;

use super::body::Body;
use super::query::StreamQuery;
use super::response::ApiError;
use super::App;
use crate::limits::streams::{Slot, Streams};
use crate::metrics::Metrics;
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;
use crate::store::{EventKind, EventRecord, Scan, Store};

/// Events read from the store per batch.
const BATCH: usize = 100;

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
    pub creds: crate::account::Credentials,
    pub tenant: PublicKey,
    /// Whom the credential resolved to when the stream opened.
    pub user: PublicKey,
}

/// Opens a stream (cap permitting) with already validated parameters.
pub fn open(
    app: &App,
    source: Source,
    filters: Vec<StoragePath>,
    q: &StreamQuery,
    revocation: Option<Revocation>,
    client: Option<std::net::IpAddr>,
) -> Result<Response<Body>, ApiError> {
    let Some(slot) = app.streams.acquire(&app.metrics, client) else {
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
        keep_alive: cfg.keep_alive,
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
        .map_err(super::response::internal)
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
            if self.remaining == Some(0) || self.streams.closing() {
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
        crate::account::Caller::still_valid(
            &self.store,
            &r.creds,
            &r.tenant,
            crate::clock::now_secs(),
        ) == Some(r.user)
    }

    fn query(&self, limit: usize) -> Result<Vec<(u64, EventRecord)>, crate::store::StoreError> {
        let filters = &self.filters;
        let keep = |e: &EventRecord| {
            filters.is_empty()
                || filters
                    .iter()
                    .any(|f| StoragePath::covers_str(f.as_str(), &e.path))
        };
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
    use std::sync::atomic::Ordering;

    const PK: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";

    fn subscription(store: &Store, user: PublicKey, max_lag: u64) -> Subscription {
        let metrics = Arc::new(Metrics::new());
        let streams = Streams::new(4, 4);
        let slot = streams.acquire(&metrics, None).unwrap();
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

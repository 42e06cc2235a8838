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
use crate::store::{EventKind, EventRecord, Scan, Store, StoreError};

/// Events read from the store per batch.
const BATCH: usize = 100;

/// Whose events a stream follows.
#[derive(Clone)]
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
        followed: source.followed(),
        source,
        filters: filters.into(),
        reverse: q.reverse,
        live: q.live,
        remaining: q.limit,
        keep_alive: cfg.keep_alive,
        max_lag: cfg.max_lag,
        caught_up_at: None,
        half_behind: false,
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
    /// Whose writes wake this stream (`None`: anyone's); fixed when it opens.
    followed: Option<Vec<PublicKey>>,
    /// Empty = every path (admin without filters).
    filters: Arc<[StoragePath]>,
    reverse: bool,
    live: bool,
    remaining: Option<usize>,
    keep_alive: Duration,
    max_lag: u64,
    /// Head of the log when this live subscriber last had nothing to send.
    caught_up_at: Option<u64>,
    /// Counted as half `max_lag` behind; counted again only after catching up.
    half_behind: bool,
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
            let wake = self.store.event_wake(self.followed.as_deref());
            let head = self.store.event_head();
            let limit = self.remaining.unwrap_or(BATCH).min(BATCH);
            let started = Instant::now();
            let Found {
                events: batch,
                more,
                examined,
            } = match self.scan(limit).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!("event stream query failed: {e}");
                    return None;
                }
            };
            self.metrics.stream_query(started.elapsed());
            self.metrics.events_examined(examined as u64);
            if !batch.is_empty() {
                if let Some(at) = self.caught_up_at {
                    let behind = self.store.event_head().saturating_sub(at);
                    let half = behind > self.max_lag / 2;
                    if half && !self.half_behind {
                        self.metrics.stream_half_behind();
                    }
                    self.half_behind = half;
                    if behind > self.max_lag {
                        self.metrics.stream_lagged();
                        tracing::info!("event stream fell behind; disconnected");
                        return None;
                    }
                }
                return Some(self.emit(batch));
            }
            if more {
                // Nothing matched within one scan's budget; the cursors moved past what
                // was examined, so the next round starts further on.
                continue;
            }
            if !self.live {
                return None;
            }
            self.caught_up_at = Some(head);
            let woke = async {
                wake.await;
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

    /// One bounded scan, on the blocking pool (one of `Streams`' scan permits held), so a
    /// scan never occupies the threads that serve requests. Moves the cursors.
    async fn scan(&mut self, limit: usize) -> Result<Found, StoreError> {
        let _permit = self.streams.scan_permit().await;
        let (store, filters, reverse) = (self.store.clone(), self.filters.clone(), self.reverse);
        let mut source = self.source.clone();
        let (source, found) = smol::unblock(move || {
            let found = query(&store, &mut source, &filters, reverse, limit);
            (source, found)
        })
        .await;
        self.source = source;
        found
    }

    /// Formats a batch (the cursors have already moved past it).
    fn emit(&mut self, batch: Vec<(u64, EventRecord)>) -> Bytes {
        let mut out = String::with_capacity(batch.len() * 180);
        for (id, e) in &batch {
            format_event(&mut out, *id, e);
        }
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(batch.len());
        }
        Bytes::from(out)
    }
}

impl Source {
    /// Whose writes can concern this stream (`None`: anyone's).
    fn followed(&self) -> Option<Vec<PublicKey>> {
        match self {
            Source::Users(users) => Some(users.iter().map(|(u, _)| *u).collect()),
            Source::Global { users, .. } if !users.is_empty() => Some(users.clone()),
            Source::Global { .. } => None,
        }
    }
}

/// What one round of scanning found for a stream.
struct Found {
    events: Vec<(u64, EventRecord)>,
    /// More may be waiting without a new publish (a scan stopped at its budget or limit).
    more: bool,
    examined: usize,
}

/// The next batch for `source`, at most `limit` events, and whether more may be waiting
/// without a new publish. Every cursor moves past what was sent and past what was examined
/// and skipped, so no record is examined twice by one stream.
fn query(
    store: &Store,
    source: &mut Source,
    filters: &[StoragePath],
    reverse: bool,
    limit: usize,
) -> Result<Found, StoreError> {
    let keep = |e: &EventRecord| {
        filters.is_empty()
            || filters
                .iter()
                .any(|f| StoragePath::covers_str(f.as_str(), &e.path))
    };
    let scan = |cursor| Scan {
        cursor,
        reverse,
        limit,
    };
    match source {
        Source::Users(users) => {
            let mut all = Vec::new();
            let mut pages = Vec::with_capacity(users.len());
            let mut examined = 0;
            for (u, cursor) in users.iter() {
                let page = store.scan_user_events(u, scan(*cursor), keep)?;
                examined += page.examined;
                pages.push((page.events.len(), page.examined_to, page.exhausted));
                all.extend(page.events);
            }
            if reverse {
                all.sort_by_key(|e| std::cmp::Reverse(e.0));
            } else {
                all.sort_by_key(|e| e.0);
            }
            all.truncate(limit);
            let mut more = false;
            for ((u, cursor), (found, examined_to, exhausted)) in users.iter_mut().zip(pages) {
                let sent: Vec<u64> = all.iter().filter(|e| e.1.user == *u).map(|e| e.0).collect();
                if sent.len() == found {
                    // All this user's finds go out now: skip everything examined.
                    *cursor = examined_to.or(*cursor);
                    more |= !exhausted;
                } else {
                    // Some wait for the next batch: resume after the last one sent.
                    *cursor = sent.last().copied().or(*cursor);
                    more = true;
                }
            }
            Ok(Found {
                events: all,
                more,
                examined,
            })
        }
        Source::Global { users, cursor } => {
            let page = store.scan_events(scan(*cursor), |e| {
                (users.is_empty() || users.contains(&e.user)) && keep(e)
            })?;
            *cursor = page.examined_to.or(*cursor);
            Ok(Found {
                more: !page.exhausted,
                events: page.events,
                examined: page.examined,
            })
        }
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
            followed: Some(vec![user]),
            source: Source::Users(vec![(user, None)]),
            filters: vec![StoragePath::strict("/pub/").unwrap()].into(),
            reverse: false,
            live: true,
            remaining: None,
            keep_alive: Duration::from_millis(10),
            max_lag,
            caught_up_at: None,
            half_behind: false,
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
            assert_eq!(slow.metrics.streams_half_behind.load(Ordering::Relaxed), 1);
            let batch = fine.next_chunk().await.unwrap();
            // 5 behind is exactly half of 10: not yet past it.
            assert_eq!(fine.metrics.streams_half_behind.load(Ordering::Relaxed), 0);
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

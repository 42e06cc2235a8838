//! Events: the append-only log of PUT/DEL changes, read back by the `/events/` feed and the
//! SSE streams. Every file write adds one record to `events` (global id order), one key to
//! `user_events` (user ‖ id) and, for `/pub/` paths, one key to `pub_events` (id), in the
//! same transaction: a stream for a few users reads only their events, and the public feed
//! reads only public ones. Once a write is durable its id is published here: `head` moves
//! forward and the subscribers that can care are woken (those following every user, and
//! those following the writer's shard of users). Subscribers pull from the trees at their
//! own pace, so a slow one costs no memory here and never holds up a writer.
//!
//! A filtered scan examines at most [`SCAN_BUDGET`] records and reports how far it got, so a
//! filter that matches nothing still moves its cursor, and no single scan grows with the
//! history.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use event_listener::{Event, EventListener};

use super::archive::{self, Filter};
use super::codec::decode;
use super::{keys, EventRecord, Store, StoreError};
use crate::pubkey::PublicKey;

/// Records one filtered scan may examine before it stops and reports where it got to.
pub const SCAN_BUDGET: usize = 1000;

/// Wake-up groups of users: a write wakes only the streams following its writer's group.
const SHARDS: usize = 64;

/// The published end of the log plus the wake-ups for live subscribers.
pub(super) struct Feed {
    /// Highest event id that is durable (and therefore visible to readers).
    head: AtomicU64,
    /// Every publish (streams over all users).
    all: Event,
    /// Publishes by users of one shard.
    shards: Box<[Event]>,
}

fn shard(user: &PublicKey) -> usize {
    let b = user.as_bytes();
    usize::from(u16::from_le_bytes([b[0], b[1]])) % SHARDS
}

impl Feed {
    pub(super) fn new(head: u64) -> Feed {
        Feed {
            head: AtomicU64::new(head),
            all: Event::new(),
            shards: (0..SHARDS).map(|_| Event::new()).collect(),
        }
    }

    /// Makes events up to `id` (written by `user`) visible and wakes the subscribers that
    /// may care. Ids are handed out and made durable in order, so everything below `id` is
    /// durable too.
    pub(super) fn publish(&self, id: u64, user: &PublicKey) {
        self.head.fetch_max(id, Ordering::SeqCst);
        self.wake_user(user);
    }

    fn wake_user(&self, user: &PublicKey) {
        self.all.notify(usize::MAX);
        self.shards[shard(user)].notify(usize::MAX);
    }

    fn wake_all(&self) {
        self.all.notify(usize::MAX);
        for s in self.shards.iter() {
            s.notify(usize::MAX);
        }
    }
}

/// A wait for the next publish that concerns some users (or all of them).
pub struct Wake(Vec<EventListener>);

impl Future for Wake {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        for l in self.0.iter_mut() {
            if Pin::new(l).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

/// Where a scan starts: after a cursor (forward) or before it (reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Exclusive bound; `None` = from the oldest (forward) or the newest (reverse).
    pub cursor: Option<u64>,
    pub reverse: bool,
    pub limit: usize,
}

/// What one bounded scan found.
#[derive(Debug, Default)]
pub struct Page {
    /// Kept events, in the scan's order, at most `limit`.
    pub events: Vec<(u64, EventRecord)>,
    /// The last id examined, kept or not: the next scan may start after it.
    pub examined_to: Option<u64>,
    /// The scan reached the end of its range: nothing more to examine until a publish.
    pub exhausted: bool,
    /// Records examined (at most [`SCAN_BUDGET`] + 1).
    pub examined: usize,
}

pub(super) fn event_id(key: &[u8]) -> Result<u64, StoreError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("event key".into()))
}

impl Store {
    /// Highest visible event id.
    pub fn event_head(&self) -> u64 {
        self.0.feed.head.load(Ordering::SeqCst)
    }

    /// A wait that ends at the next publish by one of `users` (`None`: by anyone). Take it
    /// *before* reading, so an event committed between the read and the wait is not missed.
    pub fn event_wake(&self, users: Option<&[PublicKey]>) -> Wake {
        let feed = &self.0.feed;
        let Some(users) = users else {
            return Wake(vec![feed.all.listen()]);
        };
        let mut shards: Vec<usize> = users.iter().map(shard).collect();
        shards.sort_unstable();
        shards.dedup();
        Wake(
            shards
                .into_iter()
                .map(|s| feed.shards[s].listen())
                .collect(),
        )
    }

    /// Wakes every live subscriber without publishing (used at shutdown).
    pub fn wake_subscribers(&self) {
        self.0.feed.wake_all();
    }

    /// Wakes the subscribers that follow `user` (a credential of theirs changed).
    pub fn wake_subscribers_of(&self, user: &PublicKey) {
        self.0.feed.wake_user(user);
    }

    /// Events with id > `cursor`, oldest first (all users, any path, visible or not).
    pub fn events_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        let segs = self.segments();
        self.walk(
            &segs,
            cursor.saturating_add(1),
            u64::MAX,
            false,
            Filter::All,
        )
        .take(limit)
        .collect()
    }

    /// Visible `/pub/` events of all users with id > `cursor`, oldest first, at most
    /// `limit` (the public feed): read from their own index (in the archive, only blocks
    /// that hold one), so the work is about `limit` records however many private events
    /// lie between.
    pub fn public_events_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        let segs = self.segments();
        let (lo, hi) = (cursor.saturating_add(1), self.event_head());
        self.walk(&segs, lo, hi, false, Filter::Public)
            .take(limit)
            .collect()
    }

    /// The cursor a legacy timestamp cursor stands for: the id of the last visible event
    /// created at or before `micros` (0 when none), so reading after it resumes with the
    /// first event after that moment. A binary search over ids (they rise with time; a
    /// clock that stepped back only blurs the answer around the step).
    pub fn event_cursor_at(&self, micros: u64) -> Result<u64, StoreError> {
        let segs = self.segments();
        let (mut lo, mut hi) = (0u64, self.event_head());
        // Invariant: events ≤ lo are at or before `micros`; the answer lies in [lo, hi].
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let Some(first) = self.walk(&segs, mid, hi, false, Filter::All).next() else {
                hi = mid - 1;
                continue;
            };
            let (id, e) = first?;
            if e.created_at <= micros {
                lo = id;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }

    /// The event `id` as sled holds it (ids past the archive).
    fn event_record(&self, id: u64) -> Result<EventRecord, StoreError> {
        match self.0.t.events.get(keys::event(id))? {
            Some(v) => decode("event", &v),
            None => Err(StoreError::Corrupt(format!("event {id} missing"))),
        }
    }

    /// Visible events of all users that pass `keep`, in id order per `scan`, examining at
    /// most [`SCAN_BUDGET`] records.
    pub fn scan_events(
        &self,
        scan: Scan,
        keep: impl Fn(&EventRecord) -> bool,
    ) -> Result<Page, StoreError> {
        self.scan(scan, Filter::All, keep)
    }

    /// Visible events of one user that pass `keep`, in id order per `scan`, examining at
    /// most [`SCAN_BUDGET`] records.
    pub fn scan_user_events(
        &self,
        user: &PublicKey,
        scan: Scan,
        keep: impl Fn(&EventRecord) -> bool,
    ) -> Result<Page, StoreError> {
        self.scan(scan, Filter::User(user), keep)
    }

    fn scan(
        &self,
        scan: Scan,
        filter: Filter<'_>,
        keep: impl Fn(&EventRecord) -> bool,
    ) -> Result<Page, StoreError> {
        let (lo, hi) = bounds(scan, self.event_head());
        if lo > hi || scan.limit == 0 {
            return Ok(Page {
                exhausted: true,
                ..Page::default()
            });
        }
        let segs = self.segments();
        take_kept(self.walk(&segs, lo, hi, scan.reverse, filter), scan, keep)
    }

    /// Events with ids in `[lo, hi]` that pass `filter`, ascending (or descending): the
    /// archive's, then sled's past it. `segs` is the held segment list, so no move of
    /// events from sled to the archive happens meanwhile.
    fn walk<'a>(
        &'a self,
        segs: &'a [archive::Segment],
        lo: u64,
        hi: u64,
        reverse: bool,
        filter: Filter<'a>,
    ) -> Box<dyn Iterator<Item = Result<(u64, EventRecord), StoreError>> + 'a> {
        let archived = archive::walk(segs, lo, hi, reverse, filter);
        let lo = lo.max(archive::upto(segs).saturating_add(1));
        if lo > hi {
            return Box::new(archived);
        }
        let t = &self.0.t;
        let by_id = |kv: sled::Result<(sled::IVec, sled::IVec)>, at: usize| {
            let (k, _) = kv?;
            let id = event_id(k.get(at..).unwrap_or_default())?;
            Ok((id, self.event_record(id)?))
        };
        let live: Box<dyn DoubleEndedIterator<Item = _>> = match filter {
            Filter::All => Box::new(t.events.range(keys::event(lo)..=keys::event(hi)).map(|kv| {
                let (k, v) = kv?;
                Ok((event_id(&k)?, decode("event", &v)?))
            })),
            Filter::User(u) => Box::new(
                t.user_events
                    .range(keys::user_event(u, lo)..=keys::user_event(u, hi))
                    .map(move |kv| by_id(kv, 32)),
            ),
            Filter::Public => Box::new(
                t.pub_events
                    .range(keys::event(lo)..=keys::event(hi))
                    .map(move |kv| by_id(kv, 0)),
            ),
        };
        if reverse {
            Box::new(live.rev().chain(archived))
        } else {
            Box::new(archived.chain(live))
        }
    }

    /// Builds the public-event index from the log when this data directory predates it.
    /// Idempotent, so a crash half-way only means it runs again; the marker is written last.
    pub(super) fn index_public_events(&self) -> Result<(), StoreError> {
        const MARKER: &[u8] = b"pub_events_indexed";
        let t = &self.0.t;
        if t.meta.contains_key(MARKER)? {
            return Ok(());
        }
        let mut n = 0u64;
        for kv in t.events.iter() {
            let (k, v) = kv?;
            let ev: EventRecord = decode("event", &v)?;
            if ev.path.starts_with("/pub/") {
                t.pub_events.insert(k, &[] as &[u8])?;
                n += 1;
            }
        }
        t.meta.insert(MARKER, &[] as &[u8])?;
        self.flush_durably()?;
        if n > 0 {
            tracing::info!(events = n, "public event index built");
        }
        Ok(())
    }

    /// Builds the per-user index from the log when it is missing (a data directory written
    /// before the index existed).
    pub(super) fn index_user_events(&self) -> Result<(), StoreError> {
        let t = &self.0.t;
        if !t.user_events.is_empty() || t.events.is_empty() {
            return Ok(());
        }
        let mut n = 0u64;
        for kv in t.events.iter() {
            let (k, v) = kv?;
            let ev: EventRecord = decode("event", &v)?;
            t.user_events
                .insert(keys::user_event(&ev.user, event_id(&k)?), &[] as &[u8])?;
            n += 1;
        }
        self.flush_durably()?;
        tracing::info!(events = n, "per-user event index built");
        Ok(())
    }
}

/// Inclusive id range `[lo, hi]` a scan may return, never past `head`.
fn bounds(scan: Scan, head: u64) -> (u64, u64) {
    match (scan.reverse, scan.cursor) {
        (false, Some(c)) => (c.saturating_add(1), head),
        (false, None) => (1, head),
        (true, Some(c)) => (1, c.saturating_sub(1).min(head)),
        (true, None) => (1, head),
    }
}

/// Keeps up to `scan.limit` of `events` (already in the scan's direction) that pass `keep`,
/// examining at most [`SCAN_BUDGET`].
fn take_kept(
    mut iter: impl Iterator<Item = Result<(u64, EventRecord), StoreError>>,
    scan: Scan,
    keep: impl Fn(&EventRecord) -> bool,
) -> Result<Page, StoreError> {
    let mut page = Page::default();
    for _ in 0..SCAN_BUDGET {
        let Some(item) = iter.next() else {
            page.exhausted = true;
            return Ok(page);
        };
        let (id, ev) = item?;
        page.examined += 1;
        page.examined_to = Some(id);
        if keep(&ev) {
            page.events.push((id, ev));
            if page.events.len() >= scan.limit {
                break;
            }
        }
    }
    // Stopped at the budget or the limit: exhausted only if nothing is left.
    page.examined += 1;
    page.exhausted = iter.next().is_none();
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_bounds() {
        let s = |cursor, reverse| Scan {
            cursor,
            reverse,
            limit: 10,
        };
        assert_eq!(bounds(s(None, false), 9), (1, 9));
        assert_eq!(bounds(s(Some(3), false), 9), (4, 9));
        assert_eq!(bounds(s(Some(30), false), 9), (31, 9));
        assert_eq!(bounds(s(None, true), 9), (1, 9));
        assert_eq!(bounds(s(Some(5), true), 9), (1, 4));
        assert_eq!(bounds(s(Some(0), true), 9), (1, 0));
        assert_eq!(bounds(s(Some(u64::MAX), false), 9), (u64::MAX, 9));
    }
}

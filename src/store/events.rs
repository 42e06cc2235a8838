//! Events: the append-only log of PUT/DEL changes, read back by the `/events/` feed and the
//! SSE streams. Every file write adds one record to `events` (global id order) and one key
//! to `user_events` (user ‖ id) in the same transaction, so a stream for a few users reads
//! only their events. Once a write is durable its id is published here: `head` moves
//! forward and every waiting subscriber is woken. Subscribers pull from the trees at their
//! own pace, so a slow one costs no memory here and never holds up a writer.

use std::sync::atomic::{AtomicU64, Ordering};

use event_listener::{Event, EventListener};

use super::codec::decode;
use super::{keys, EventRecord, Store, StoreError};
use crate::pubkey::PublicKey;

/// The published end of the log plus the wake-up for live subscribers.
pub(super) struct Feed {
    /// Highest event id that is durable (and therefore visible to readers).
    head: AtomicU64,
    changed: Event,
}

impl Feed {
    pub(super) fn new(head: u64) -> Feed {
        Feed {
            head: AtomicU64::new(head),
            changed: Event::new(),
        }
    }

    /// Makes events up to `id` visible and wakes subscribers. Ids are handed out and made
    /// durable in order, so everything below `id` is durable too.
    pub(super) fn publish(&self, id: u64) {
        self.head.fetch_max(id, Ordering::SeqCst);
        self.changed.notify(usize::MAX);
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

fn event_id(key: &[u8]) -> Result<u64, StoreError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("event key".into()))
}

impl Store {
    /// Highest visible event id.
    pub fn event_head(&self) -> u64 {
        self.0.feed.head.load(Ordering::SeqCst)
    }

    /// A listener that fires on the next publish. Take it *before* reading, so an event
    /// committed between the read and the wait is not missed.
    pub fn event_listener(&self) -> EventListener {
        self.0.feed.changed.listen()
    }

    /// Wakes every live subscriber without publishing (used at shutdown).
    pub fn wake_subscribers(&self) {
        self.0.feed.changed.notify(usize::MAX);
    }

    /// Events with id > `cursor`, oldest first (all users, any path, visible or not).
    pub fn events_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        let start = keys::event(cursor.saturating_add(1));
        let mut out = Vec::new();
        for kv in self.0.t.events.range(start..).take(limit) {
            let (k, v) = kv?;
            out.push((event_id(&k)?, decode("event", &v)?));
        }
        Ok(out)
    }

    /// Visible events of all users that pass `keep`, in id order per `scan`.
    pub fn scan_events(
        &self,
        scan: Scan,
        keep: impl Fn(&EventRecord) -> bool,
    ) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        let (lo, hi) = bounds(scan, self.event_head());
        if lo > hi || scan.limit == 0 {
            return Ok(Vec::new());
        }
        let range = self.0.t.events.range(keys::event(lo)..=keys::event(hi));
        let events = range.map(|kv| {
            let (k, v) = kv?;
            Ok((event_id(&k)?, decode("event", &v)?))
        });
        take_kept(events, scan, keep)
    }

    /// Visible events of one user that pass `keep`, in id order per `scan`.
    pub fn scan_user_events(
        &self,
        user: &PublicKey,
        scan: Scan,
        keep: impl Fn(&EventRecord) -> bool,
    ) -> Result<Vec<(u64, EventRecord)>, StoreError> {
        let (lo, hi) = bounds(scan, self.event_head());
        if lo > hi || scan.limit == 0 {
            return Ok(Vec::new());
        }
        let range = self
            .0
            .t
            .user_events
            .range(keys::user_event(user, lo)..=keys::user_event(user, hi));
        let events = range.map(|kv| {
            let (k, _) = kv?;
            let id = event_id(k.get(32..).unwrap_or_default())?;
            let Some(v) = self.0.t.events.get(keys::event(id))? else {
                return Err(StoreError::Corrupt(format!("event {id} missing")));
            };
            Ok((id, decode("event", &v)?))
        });
        take_kept(events, scan, keep)
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

/// Walks `events` (ascending ids) in `scan`'s direction and keeps up to `scan.limit` of the
/// ones that pass `keep`.
fn take_kept(
    events: impl DoubleEndedIterator<Item = Result<(u64, EventRecord), StoreError>>,
    scan: Scan,
    keep: impl Fn(&EventRecord) -> bool,
) -> Result<Vec<(u64, EventRecord)>, StoreError> {
    let iter: Box<dyn Iterator<Item = _>> = if scan.reverse {
        Box::new(events.rev())
    } else {
        Box::new(events)
    };
    let mut out = Vec::new();
    for item in iter {
        let (id, ev) = item?;
        if keep(&ev) {
            out.push((id, ev));
            if out.len() >= scan.limit {
                break;
            }
        }
    }
    Ok(out)
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

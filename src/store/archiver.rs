//! The archiver: the background pass that moves old events from sled into the event
//! archive's segments (`archive`), the clean-up at open after a crash part way, and the
//! thread that runs it. The order of a move is what keeps every event readable: the segment
//! is durable and renamed into place before sled's copies are deleted, and both happen
//! while the segment list is held, so no scan sees an event twice or not at all.

use std::sync::atomic::Ordering;

use super::archive::{upto, write, Moved, Segment, BATCH, KEEP};
use super::codec::decode;
use super::events::event_id;
use super::{keys, EventRecord, StoreError};

impl super::Store {
    /// The segment list, held: no events move from sled to the archive while it is.
    pub(super) fn segments(&self) -> std::sync::RwLockReadGuard<'_, Vec<Segment>> {
        // The list is only replaced whole by a push; it stays valid after a panic.
        self.0.archive.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves events to the archive while more than [`KEEP`] + [`BATCH`] lie past it;
    /// returns how many moved. Blocking; the store's archiver thread calls it.
    pub fn archive_events(&self) -> Result<u64, StoreError> {
        self.archive_events_with(BATCH, KEEP)
    }

    /// [`Self::archive_events`] with other sizes (tests).
    pub(crate) fn archive_events_with(&self, batch: usize, keep: u64) -> Result<u64, StoreError> {
        let mut done = 0;
        let _pass = self
            .0
            .archiver_pass
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if self.0.archiver_stop.load(Ordering::SeqCst) {
                return Ok(done);
            }
            let upto = upto(&self.segments());
            if self.event_head().saturating_sub(upto) < keep + batch as u64 {
                return Ok(done);
            }
            let records = self.0.t.events.range(keys::event(upto + 1)..);
            let records = records.take(batch).map(|kv| {
                let (k, v) = kv?;
                Ok((event_id(&k)?, v))
            });
            let (seg, moved) = write(&self.0.archive_dir, records)?;
            {
                let mut segs = self.0.archive.write().unwrap_or_else(|e| e.into_inner());
                segs.push(seg);
                self.drop_from_sled(&moved)?;
            }
            self.flush_durably()?;
            done += moved.len() as u64;
            tracing::debug!(
                events = moved.len(),
                upto = upto + moved.len() as u64,
                "events archived"
            );
        }
    }

    /// Deletes moved events (and their index keys) from sled, one key at a time (a crash
    /// part way is finished at the next open).
    fn drop_from_sled(&self, moved: &[Moved]) -> Result<(), StoreError> {
        let t = &self.0.t;
        for m in moved {
            let key = keys::event(m.id);
            t.events.remove(key)?;
            t.user_events.remove(keys::user_event(&m.user, m.id))?;
            if m.public {
                t.pub_events.remove(key)?;
            }
        }
        Ok(())
    }

    /// At open: removes from sled the events a crash left in both places (after a segment
    /// was renamed into place, before sled's copies were deleted).
    pub(super) fn finish_archiving(&self) -> Result<(), StoreError> {
        let upto = upto(&self.segments());
        let t = &self.0.t;
        let mut left = Vec::new();
        for kv in t.events.range(..=keys::event(upto)) {
            let (k, v) = kv?;
            let ev: EventRecord = decode("event", &v)?;
            left.push(Moved {
                id: event_id(&k)?,
                public: ev.path.starts_with("/pub/"),
                user: ev.user,
            });
        }
        if left.is_empty() {
            return Ok(());
        }
        self.drop_from_sled(&left)?;
        self.flush_durably()?;
        tracing::info!(
            events = left.len(),
            "archived events removed from the database"
        );
        Ok(())
    }

    /// Ends archiving: waits for a batch being moved, and no other starts.
    pub(super) fn stop_archiver(&self) {
        self.0.archiver_stop.store(true, Ordering::SeqCst);
        drop(
            self.0
                .archiver_pass
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
    }

    /// Starts the thread that moves old events to the archive every few seconds. It holds
    /// the store only while it works, and ends when the store is dropped.
    pub(super) fn start_archiver(&self) {
        let weak = std::sync::Arc::downgrade(&self.0);
        let spawned = std::thread::Builder::new()
            .name("event-archiver".into())
            .spawn(move || loop {
                std::thread::park_timeout(std::time::Duration::from_secs(2));
                let Some(inner) = weak.upgrade() else { return };
                if inner.archiver_stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = super::Store(inner).archive_events() {
                    tracing::warn!(error = %e, "moving events to the archive failed; retrying");
                    std::thread::sleep(std::time::Duration::from_secs(30));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "the event archiver could not start");
        }
    }
}

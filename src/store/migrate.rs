//! Bringing a store written in an older format up to [`FORMAT`], in place, at open.
//!
//! Format 1 kept each inline body under its own key in the `content` tree, next to the
//! file's entry. Format 2 keeps the body in the entry's value, after its metadata: one
//! sled key per file instead of two. sled holds metadata for every page of every tree in
//! memory, and a leaf page holds at most 16 keys, so the second key cost memory for as
//! long as the file existed (see README, "At scale").
//!
//! Where there is room for a second copy of the database, `rebuild` does the move instead,
//! into a fresh database (an in-place move leaves sled's pages fragmented: see there). This
//! is the way when there is not, and it finishes whatever the copy left (nothing, normally).
//!
//! The move is crash-safe without a journal: each batch of files moves in one sled
//! transaction (the body is written into the entry and removed from `content` together),
//! so a store cut off mid-way holds every file exactly once, either way, and the next open
//! carries on from what is left in `content`. The format is recorded only once `content`
//! is empty and the moves are durable.

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::codec::{decode_with_tail, encode, encode_with_tail};
use super::{tx_err, EntryMeta, Store, StoreError, FORMAT};

/// Files moved per transaction (a handful in tests, so that a small store takes several).
const BATCH: usize = if cfg!(test) { 8 } else { 1000 };
/// Batches between durable flushes (a crash redoes at most this many).
const FLUSH_EVERY: usize = 64;

/// What a migration did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Inline bodies moved into their entries.
    pub moved: u64,
    /// Bodies in `content` with no inline entry to take them (format 1's `check` reported
    /// these as problems); dropped.
    pub dropped: u64,
}

#[cfg(test)]
thread_local! {
    /// Tests: fail the migration after this many batches, as a crash between two would.
    pub(in crate::store) static STOP_AFTER_BATCHES: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
}

impl Store {
    /// Migrates a store whose recorded format is `found` (a new store counts as 1), then
    /// records [`FORMAT`]. Called at open before anything else reads entries, and after a
    /// dump is loaded (a backup made by an earlier version). The moves run whenever the
    /// old tree holds anything; on a store already in this format, that is one empty scan.
    pub(super) fn migrate(&self, found: u32) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let m = self.inline_bodies_into_entries()?;
        if m != Migrated::default() {
            tracing::info!(
                from = found,
                to = FORMAT,
                moved = m.moved,
                dropped = m.dropped,
                ms = started.elapsed().as_millis() as u64,
                "store migrated"
            );
        }
        if found == FORMAT && m == Migrated::default() {
            return Ok(());
        }
        self.0.t.meta.insert(b"store_format", encode(&FORMAT))?;
        self.flush_durably()
    }

    /// Format 1 → 2: every body left in `content` moves into its entry's value.
    fn inline_bodies_into_entries(&self) -> Result<Migrated, StoreError> {
        let t = &self.0.t;
        let mut done = Migrated::default();
        let mut batches = 0usize;
        loop {
            #[cfg(test)]
            if STOP_AFTER_BATCHES.with(|s| s.get()) == Some(batches) {
                self.flush_durably()?;
                return Err(StoreError::Db("migration stopped by the test".into()));
            }
            let mut batch = Vec::with_capacity(BATCH);
            for kv in t.content.iter().take(BATCH) {
                batch.push(kv?);
            }
            if batch.is_empty() {
                break;
            }
            let (moved, dropped) = (&t.entries, &t.content)
                .transaction(|(entries, content)| {
                    let (mut moved, mut dropped) = (0u64, 0u64);
                    for (k, body) in &batch {
                        content.remove(k)?;
                        let Some(v) = entries.get(k)? else {
                            dropped += 1;
                            continue;
                        };
                        let (meta, tail) = decode_with_tail::<EntryMeta>("entry", &v)
                            .map_err(ConflictableTransactionError::Abort)?;
                        // A blob entry, or one that already carries its body, keeps what
                        // it has: this body was never the file's.
                        if !meta.inline || !tail.is_empty() {
                            dropped += 1;
                            continue;
                        }
                        entries.insert(k, encode_with_tail(&meta, body))?;
                        moved += 1;
                    }
                    Ok((moved, dropped))
                })
                .map_err(tx_err)?;
            done.moved += moved;
            done.dropped += dropped;
            batches += 1;
            if batches % FLUSH_EVERY == 0 {
                self.flush_durably()?;
            }
        }
        if done.dropped > 0 {
            tracing::warn!(
                dropped = done.dropped,
                "bodies without an inline entry were dropped from the old content tree"
            );
        }
        Ok(done)
    }
}

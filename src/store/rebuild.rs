//! Rebuilding the database into a fresh one: how a store moves to a new format when there
//! is room for a second copy, and the store's own compaction (`pubky-edge compact`).
//!
//! sled never gives memory back for a page it has rewritten many times: an in-place move of
//! every entry (`migrate`) left a 1,000,000-file store idling at 197 MiB after restart,
//! where the same files written afresh idle at 72 MiB. A copy into a new database, tree by
//! tree in key order, ends as a fresh store does.
//!
//! Crash-safe by its order, with no journal of its own:
//! 1. the copy is written to `<data>/db.new` and made durable;
//! 2. `<data>/db.new-ready` is created (and synced): from here the copy is the store;
//! 3. `db` is renamed to `db.old`, `db.new` to `db`, the directory is synced;
//! 4. the marker and `db.old` are removed.
//!
//! [`settle`] runs before every open and finishes whatever step a crash cut off: without
//! the marker, a `db.new` is an unfinished copy and goes; with it, the swap is completed.

use std::fs;
use std::path::{Path, PathBuf};

use super::codec::{decode_with_tail, encode, encode_with_tail};
use super::{blobs, commit, space, EntryMeta, Store, StoreConfig, StoreError, FORMAT};

const NEW: &str = "db.new";
const OLD: &str = "db.old";
const READY: &str = "db.new-ready";

/// Records per batch written to the new database.
const BATCH: usize = 256;

#[cfg(test)]
thread_local! {
    /// Tests: no room for a copy, as on a full card.
    pub(in crate::store) static NO_ROOM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct Paths {
    db: PathBuf,
    new: PathBuf,
    old: PathBuf,
    ready: PathBuf,
}

fn paths(data_dir: &Path) -> Paths {
    Paths {
        db: data_dir.join("db"),
        new: data_dir.join(NEW),
        old: data_dir.join(OLD),
        ready: data_dir.join(READY),
    }
}

/// Finishes or undoes a rebuild a crash cut off (see the module docs). Call before opening
/// the database.
pub(super) fn settle(data_dir: &Path) -> Result<(), StoreError> {
    let p = paths(data_dir);
    if p.ready.exists() {
        if p.new.exists() {
            if p.db.exists() {
                fs::rename(&p.db, &p.old)?;
            }
            fs::rename(&p.new, &p.db)?;
            blobs::sync_dir(data_dir)?;
        }
        fs::remove_file(&p.ready)?;
        blobs::sync_dir(data_dir)?;
    } else if p.new.exists() {
        fs::remove_dir_all(&p.new)?;
    }
    if p.old.exists() {
        if p.db.exists() {
            fs::remove_dir_all(&p.old)?;
        } else {
            // Only a hand can leave this: put the old database back rather than start empty.
            fs::rename(&p.old, &p.db)?;
            blobs::sync_dir(data_dir)?;
        }
    }
    Ok(())
}

/// What a rebuild copied.
#[derive(Debug, Default)]
pub struct Rebuilt {
    pub records: u64,
    /// Bytes of the database directory before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Copies `db` (the store's database, open and otherwise unused) into `<data>/db.new` in
/// this version's format, and marks the copy ready. The caller then drops every handle to
/// `db` and calls [`settle`], which swaps the two. On an error, nothing of the copy is left.
pub(super) fn copy(db: &sled::Db, data_dir: &Path, cache: u64) -> Result<Rebuilt, StoreError> {
    #[cfg(test)]
    if NO_ROOM.with(|n| n.get()) {
        return Err(StoreError::DiskFull);
    }
    let p = paths(data_dir);
    let bytes_before = dir_bytes(&p.db)?;
    space::ensure(data_dir, bytes_before, space::RESERVE_BYTES)?;
    let copied = copy_into(db, &p.new, cache);
    let records = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_dir_all(&p.new);
            return Err(e);
        }
    };
    let bytes_after = dir_bytes(&p.new)?;
    fs::File::create(&p.ready)?.sync_all()?;
    blobs::sync_dir(data_dir)?;
    Ok(Rebuilt {
        records,
        bytes_before,
        bytes_after,
    })
}

fn copy_into(db: &sled::Db, new_dir: &Path, cache: u64) -> Result<u64, StoreError> {
    if new_dir.exists() {
        fs::remove_dir_all(new_dir)?;
    }
    let new = sled::Config::new()
        .path(new_dir)
        .cache_capacity(cache)
        .open()?;
    let content = db.open_tree("content")?;
    let mut records = 0u64;
    for name in db.tree_names() {
        // Format 1's inline bodies go into their entries below.
        if &*name == b"content" {
            continue;
        }
        let from = db.open_tree(&name)?;
        let to = new.open_tree(&name)?;
        // Small batches: sled holds every node version a batch replaces until the batch
        // ends (batches of 10,000 took a 1,000,000-file copy to 448 MiB), while one insert
        // at a time logs every version of a node (a copy larger than its original).
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for kv in from.iter() {
            let (k, v) = kv?;
            match &*name {
                b"entries" => batch.insert(k.clone(), entry_in_this_format(&content, &k, &v)?),
                _ => batch.insert(k, v),
            }
            pending += 1;
            records += 1;
            if pending == BATCH {
                to.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        to.apply_batch(batch)?;
    }
    // The copy is in this version's format, whatever the original recorded.
    new.open_tree("meta")?
        .insert(b"store_format", encode(&FORMAT))?;
    new.flush()?;
    commit::SledFiles::open(new_dir)?.sync()?;
    Ok(records)
}

/// An entry's value with its inline body, taken from format 1's `content` tree if it is
/// not in the value already.
fn entry_in_this_format(
    content: &sled::Tree,
    key: &[u8],
    value: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let (meta, tail) = decode_with_tail::<EntryMeta>("entry", value)?;
    if meta.inline && tail.is_empty() {
        if let Some(body) = content.get(key)? {
            return Ok(encode_with_tail(&meta, &body));
        }
    }
    Ok(value.to_vec())
}

fn dir_bytes(dir: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let md = e.metadata()?;
        total += if md.is_dir() {
            dir_bytes(&e.path())?
        } else {
            md.len()
        };
    }
    Ok(total)
}

impl Store {
    /// Rewrites a stopped store's database into a fresh one (see the module docs): what
    /// sled's log keeps of superseded pages goes, and so does the memory sled keeps for
    /// their history. Needs free space for a second copy of the database. Opening the
    /// result afterwards also runs everything a normal open does.
    pub fn compact(data_dir: &Path, cfg: &StoreConfig) -> Result<Rebuilt, StoreError> {
        settle(data_dir)?;
        let db_dir = data_dir.join("db");
        let rebuilt = {
            let db = super::database::open_database(&db_dir, cfg.cache_capacity_bytes, None)?;
            super::database::stored_format(&db.open_tree("meta")?)?;
            copy(&db, data_dir, cfg.cache_capacity_bytes)?
        };
        settle(data_dir)?;
        Ok(rebuilt)
    }
}

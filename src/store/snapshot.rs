//! Consistent copies of the whole store, for backups (and, later, a standby's first copy).
//!
//! [`Store::snapshot`] holds the writer lock while it copies every sled tree, key and value
//! as they are, into a dump file under `<data>/tmp/`: every write is one transaction under
//! that lock, so the dump is one point in time (each entry with its body or blob reference,
//! quota usage matching the entries, the event log up to `event_seq`, archived events written
//! as the `events`, `user_events` and `pub_events` records they were). Reads go on; writes
//! wait for the copy, which is a sequential write on the local disk (measured in the
//! snapshot's `paused_ms`). Blob files are not copied: they are immutable and named by
//! their hash, and the [`Snapshot`] pins them: while one exists, a blob whose last
//! reference goes away is kept on disk and unlinked only when the last pin is dropped.
//!
//! The dump is a sequence of frames, `tag (1 B) ‖ length (u32 LE) ‖ payload`:
//! `T` a tree's name, `R` one record of the last named tree (`key length (u32 LE) ‖ key ‖
//! value`), `E` the end (`records (u64 LE) ‖ event_seq (u64 LE)`). [`Store::load_dump`]
//! fills an empty store from one.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Store, StoreError};

/// The first bytes of a dump file.
pub const DUMP_MAGIC: &[u8; 8] = b"PEDUMP01";

pub(super) const TAG_TREE: u8 = b'T';
pub(super) const TAG_RECORD: u8 = b'R';
pub(super) const TAG_END: u8 = b'E';

/// Largest frame a reader accepts (sled values are far smaller; a corrupt length must not
/// make the reader allocate gigabytes).
const MAX_FRAME: u32 = 256 << 20;

/// Blob unlinks held back while a snapshot exists.
#[derive(Default)]
pub(super) struct Pins {
    count: usize,
    deferred: Vec<[u8; 32]>,
}

/// A point-in-time copy of the store's database, with the blobs it references pinned.
/// Dropping it deletes the dump file and releases the pin.
pub struct Snapshot {
    pub dump: PathBuf,
    /// Highest event id in the dump.
    pub event_seq: u64,
    /// µs since the epoch when the copy was taken.
    pub taken_us: u64,
    pub records: u64,
    pub dump_bytes: u64,
    /// Hashes of every blob file the dump references.
    pub blobs: Vec<[u8; 32]>,
    /// How long writes waited for the copy.
    pub paused_ms: u64,
    store: Store,
}

impl Snapshot {
    /// The blob file of `hash` (present as long as this snapshot lives).
    pub fn blob_path(&self, hash: &[u8; 32]) -> PathBuf {
        self.store.0.blobs.path(hash)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.dump);
        self.store.unpin_blobs();
    }
}

/// One frame of a dump.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Tree(String),
    Record(Vec<u8>, Vec<u8>),
    End { records: u64, event_seq: u64 },
}

/// Reads the frames of a dump, checking the magic and that it ends with `End`.
pub struct DumpReader<R: Read> {
    r: R,
    ended: bool,
}

impl<R: Read> DumpReader<R> {
    pub fn new(mut r: R) -> Result<Self, StoreError> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != DUMP_MAGIC {
            return Err(StoreError::Corrupt("not a pubky-edge store dump".into()));
        }
        Ok(DumpReader { r, ended: false })
    }

    /// The next frame; `None` after `End`. A stream that stops before `End` is an error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StoreError> {
        if self.ended {
            return Ok(None);
        }
        let mut head = [0u8; 5];
        self.r.read_exact(&mut head).map_err(truncated)?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_FRAME {
            return Err(StoreError::Corrupt(format!("dump frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len as usize];
        self.r.read_exact(&mut payload).map_err(truncated)?;
        let bad = |what: &str| StoreError::Corrupt(format!("dump: malformed {what} frame"));
        match head[0] {
            TAG_TREE => Ok(Some(Frame::Tree(
                String::from_utf8(payload).map_err(|_| bad("tree"))?,
            ))),
            TAG_RECORD => {
                let klen = payload
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .filter(|k| 4 + k <= payload.len())
                    .ok_or_else(|| bad("record"))?;
                let value = payload.split_off(4 + klen);
                Ok(Some(Frame::Record(payload[4..].to_vec(), value)))
            }
            TAG_END if payload.len() == 16 => {
                self.ended = true;
                let n = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&payload[i..i + 8]);
                    u64::from_le_bytes(b)
                };
                Ok(Some(Frame::End {
                    records: n(0),
                    event_seq: n(8),
                }))
            }
            t => Err(StoreError::Corrupt(format!("dump: unknown frame tag {t}"))),
        }
    }
}

fn truncated(e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        StoreError::Corrupt("the dump ends before its end frame".into())
    } else {
        e.into()
    }
}

pub(super) fn frame(w: &mut impl Write, tag: u8, parts: &[&[u8]]) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| io::Error::other("record too large for a dump frame"))?;
    w.write_all(&[tag])?;
    w.write_all(&len.to_le_bytes())?;
    for p in parts {
        w.write_all(p)?;
    }
    Ok(())
}

impl Store {
    /// Copies the database to a dump file as one point in time; see the module docs.
    /// Blocking: call it off the async threads.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).map_err(|e| io::Error::other(e.to_string()))?;
        self.pin_blobs();
        let mut snap = Snapshot {
            dump: self
                .0
                .blobs
                .tmp
                .join(format!("snapshot-{}.dump", super::blobs::to_hex(&name))),
            event_seq: 0,
            taken_us: 0,
            records: 0,
            dump_bytes: 0,
            blobs: Vec::new(),
            paused_ms: 0,
            store: self.clone(),
        };
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&snap.dump)?);
        w.write_all(DUMP_MAGIC)?;
        let writer = self.writer();
        let started = Instant::now();
        snap.taken_us = crate::clock::now_micros();
        snap.event_seq = writer.last_event;
        let segs = self.segments();
        let mut names = self.0.db.tree_names();
        names.sort();
        for name in names {
            let tree = self.0.db.open_tree(&name)?;
            frame(&mut w, TAG_TREE, &[&name])?;
            let refs = &*name == b"blob_refs";
            snap.records += self.dump_archived(&mut w, &segs, &name)?;
            for kv in tree.iter() {
                let (k, v) = kv?;
                let klen = (k.len() as u32).to_le_bytes();
                frame(&mut w, TAG_RECORD, &[&klen, &k, &v])?;
                snap.records += 1;
                if refs {
                    if let Ok(h) = <[u8; 32]>::try_from(&*k) {
                        snap.blobs.push(h);
                    }
                }
            }
        }
        let mut end = snap.records.to_le_bytes().to_vec();
        end.extend_from_slice(&snap.event_seq.to_le_bytes());
        frame(&mut w, TAG_END, &[&end])?;
        w.flush()?;
        drop(segs);
        drop(writer);
        snap.paused_ms = started.elapsed().as_millis() as u64;
        snap.dump_bytes = w.get_ref().metadata()?.len();
        Ok(snap)
    }

    /// Fills this store, which must hold no users, entries, events or tokens, from a dump, and makes it durable. Returns
    /// the number of records. Blob files are the caller's (they go under [`Self::blob_dir`]).
    pub fn load_dump(&self, dump: &Path) -> Result<u64, StoreError> {
        self.load_dump_from(BufReader::with_capacity(1 << 20, File::open(dump)?))
    }

    /// [`Self::load_dump`] from a reader (a backup's decrypted dump).
    pub fn load_dump_from(&self, dump: impl Read) -> Result<u64, StoreError> {
        // A new store already holds its own markers in `meta`; what counts is data.
        let t = &self.0.t;
        if [&t.users, &t.entries, &t.events, &t.signup_tokens]
            .iter()
            .any(|tree| !tree.is_empty())
            || !self.segments().is_empty()
        {
            return Err(StoreError::Db(
                "the store to load a dump into is not empty".into(),
            ));
        }
        let _w = self.writer();
        let mut r = DumpReader::new(dump)?;
        let mut tree: Option<sled::Tree> = None;
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        let mut records = 0u64;
        let flush =
            |tree: &Option<sled::Tree>, batch: &mut sled::Batch| -> Result<(), StoreError> {
                if let Some(t) = tree {
                    t.apply_batch(std::mem::take(batch))?;
                }
                Ok(())
            };
        while let Some(f) = r.next_frame()? {
            match f {
                Frame::Tree(name) => {
                    flush(&tree, &mut batch)?;
                    pending = 0;
                    tree = Some(self.0.db.open_tree(name.as_bytes())?);
                }
                Frame::Record(k, v) => {
                    if tree.is_none() {
                        return Err(StoreError::Corrupt("dump: a record before any tree".into()));
                    }
                    batch.insert(k, v);
                    pending += 1;
                    records += 1;
                    if pending == 10_000 {
                        flush(&tree, &mut batch)?;
                        pending = 0;
                    }
                }
                Frame::End { records: n, .. } => {
                    if n != records {
                        return Err(StoreError::Corrupt(format!(
                            "dump: end frame counts {n} records, {records} were read"
                        )));
                    }
                }
            }
        }
        flush(&tree, &mut batch)?;
        // The dump brought the format of the store it was taken from.
        let found = super::database::stored_format(&t.meta)?;
        self.flush_durably()?;
        self.migrate(found)?;
        Ok(records)
    }

    /// Writes the archive's part of tree `name` as dump records, as sled held them before
    /// they moved (events with their `user_events` and `pub_events` keys), so a dump
    /// looks the same whether or not events were archived. Returns the records written.
    fn dump_archived(
        &self,
        w: &mut impl Write,
        segs: &[super::archive::Segment],
        name: &[u8],
    ) -> Result<u64, StoreError> {
        use super::archive::{walk, Filter};
        let filter = match name {
            b"events" | b"user_events" => Filter::All,
            b"pub_events" => Filter::Public,
            _ => return Ok(0),
        };
        let mut n = 0;
        for r in walk(segs, 0, u64::MAX, false, filter) {
            let (id, ev) = r?;
            let (key, value) = match name {
                b"events" => (super::keys::event(id).to_vec(), super::codec::encode(&ev)),
                b"user_events" => (super::keys::user_event(&ev.user, id), Vec::new()),
                _ => (super::keys::event(id).to_vec(), Vec::new()),
            };
            let klen = (key.len() as u32).to_le_bytes();
            frame(w, TAG_RECORD, &[&klen, &key, &value])?;
            n += 1;
        }
        Ok(n)
    }

    /// Where blob files live (`<data>/blobs`).
    pub fn blob_dir(&self) -> &Path {
        &self.0.blobs.root
    }

    fn pin_blobs(&self) {
        self.pins().count += 1;
    }

    fn unpin_blobs(&self) {
        let deferred = {
            let mut p = self.pins();
            p.count -= 1;
            if p.count > 0 {
                return;
            }
            std::mem::take(&mut p.deferred)
        };
        for hash in deferred {
            if let Err(e) = self.unlink_if_unreferenced(hash) {
                tracing::warn!(error = %e, "a blob kept for a snapshot could not be removed");
            }
        }
    }

    fn pins(&self) -> std::sync::MutexGuard<'_, Pins> {
        // A count and a list, valid after a panic elsewhere.
        self.0.pins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Unlinks a blob file whose reference count is zero, unless a snapshot pins blobs (then
    /// it waits for the last pin). Every unlink of a blob that may have been referenced goes
    /// through here.
    pub(super) fn unlink_if_unreferenced(&self, hash: [u8; 32]) -> Result<(), StoreError> {
        let _g = self.0.blob_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.unlink_if_unreferenced_locked(hash)
    }

    /// [`Self::unlink_if_unreferenced`] for a caller that holds `blob_lock`.
    pub(super) fn unlink_if_unreferenced_locked(&self, hash: [u8; 32]) -> Result<(), StoreError> {
        if self.0.t.blob_refs.contains_key(hash)? {
            return Ok(());
        }
        {
            let mut p = self.pins();
            if p.count > 0 {
                p.deferred.push(hash);
                return Ok(());
            }
        }
        self.0.blobs.remove(&hash)
    }
}

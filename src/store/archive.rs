//! The event archive: older events, moved out of sled into sealed segment files.
//!
//! Every write adds its event to sled (`events`, `user_events`, `pub_events`) in its own
//! transaction, as before. Once more than [`KEEP`] events lie past the archive, a background
//! pass moves the oldest [`BATCH`] of them into one segment file under `<data>/events/` and
//! then deletes them, with their index keys, from sled. sled keeps metadata for every page
//! of every tree in memory, so three of the five keys a small file used to cost for ever
//! now cost nothing once archived; the history stays readable through the same scans.
//!
//! A segment is written to `<data>/events/segment.tmp`, synced, renamed to
//! `<first id>.seg` and the directory synced, before a single sled key is deleted (the
//! move itself is `archiver`'s). A crash
//! before the rename leaves a `.tmp` (removed at open); after it, the events are in both
//! places and the open deletes sled's copies. Readers and the move exclude each other by
//! the lock around the segment list, so a scan sees every event exactly once.
//!
//! Segment format: `PEEVSEG1`, then records `len (u32 LE) ‖ id (u64 LE) ‖ value` (value:
//! the event in the store's versioned encoding, as sled held it; `len` counts id and
//! value), then the footer (versioned postcard of [`Footer`]), its
//! length (u32 LE) and `PEEVEND1`. The footer indexes blocks of [`BLOCK`] records: the
//! first id and offset of each, whether it holds a `/pub/` event, and a 64-bit mask of the
//! segment's users it holds, so public and per-user scans skip blocks without a match.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::{EventRecord, StoreError};
use crate::pubkey::PublicKey;

/// Events moved into one segment.
pub const BATCH: usize = 16_384;
/// Newest events that stay in sled (the live tail the streams read most).
pub const KEEP: u64 = 4_096;
/// Records per indexed block of a segment.
const BLOCK: usize = 64;

const MAGIC: &[u8; 8] = b"PEEVSEG1";
const END: &[u8; 8] = b"PEEVEND1";
/// Largest footer a reader accepts (a segment of [`BATCH`] events needs about 10 KiB).
const MAX_FOOTER: u32 = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Block {
    first: u64,
    offset: u64,
    public: bool,
    /// Bit `i % 64` set: the segment's user `i` has an event in this block.
    users: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Footer {
    first: u64,
    last: u64,
    count: u64,
    /// Where the records end (the footer starts).
    records_end: u64,
    blocks: Vec<Block>,
    users: Vec<PublicKey>,
    /// BLAKE3 of the records region, checked by `store check`.
    hash: [u8; 32],
}

/// One sealed segment: its file and its footer's index, held in memory.
pub struct Segment {
    path: PathBuf,
    f: Footer,
}

/// Which events a scan keeps.
#[derive(Clone, Copy)]
pub enum Filter<'a> {
    All,
    User(&'a PublicKey),
    Public,
}

impl Filter<'_> {
    pub fn keeps(&self, e: &EventRecord) -> bool {
        match self {
            Filter::All => true,
            Filter::User(u) => e.user == **u,
            Filter::Public => e.path.starts_with("/pub/"),
        }
    }
}

impl Segment {
    /// Ids `[lo, hi]` of block `b`.
    fn block_span(&self, b: usize) -> (u64, u64) {
        let hi = match self.f.blocks.get(b + 1) {
            Some(n) => n.first - 1,
            None => self.f.last,
        };
        (self.f.blocks[b].first, hi)
    }

    /// The bit of `user` in this segment's block masks, or `None` if it has no event here.
    fn user_bit(&self, user: &PublicKey) -> Option<u64> {
        let i = self.f.users.iter().position(|u| u == user)?;
        Some(1u64 << (i % 64))
    }

    fn may_hold(&self, b: usize, filter: Filter<'_>, bit: Option<u64>) -> bool {
        let block = &self.f.blocks[b];
        match filter {
            Filter::All => true,
            Filter::Public => block.public,
            Filter::User(_) => bit.is_some_and(|m| block.users & m != 0),
        }
    }

    /// The records of block `b`, in id order, as stored (id, sled value).
    fn read_block(&self, file: &File, b: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let start = self.f.blocks[b].offset;
        let end = match self.f.blocks.get(b + 1) {
            Some(n) => n.offset,
            None => self.f.records_end,
        };
        let len = end
            .checked_sub(start)
            .filter(|l| *l <= MAX_FOOTER as u64)
            .ok_or_else(|| self.corrupt("block bounds"))?;
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, start)?;
        parse_records(&buf).ok_or_else(|| self.corrupt("block records"))
    }

    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("event segment {}: {what}", self.path.display()))
    }

    /// Reads the whole records region and compares it with the footer's hash and count.
    pub fn verify(&self) -> Result<(), StoreError> {
        let mut file = File::open(&self.path)?;
        let mut buf = vec![0u8; (self.f.records_end - MAGIC.len() as u64) as usize];
        file.seek(SeekFrom::Start(MAGIC.len() as u64))?;
        file.read_exact(&mut buf)?;
        if *blake3::hash(&buf).as_bytes() != self.f.hash {
            return Err(self.corrupt("records do not match the footer's hash"));
        }
        let records = parse_records(&buf).ok_or_else(|| self.corrupt("records"))?;
        if records.len() as u64 != self.f.count {
            return Err(self.corrupt("record count"));
        }
        Ok(())
    }
}

fn parse_records(mut buf: &[u8]) -> Option<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let rec = buf.get(4..4 + len)?;
        let id = u64::from_le_bytes(rec.get(..8)?.try_into().ok()?);
        out.push((id, rec[8..].to_vec()));
        buf = &buf[4 + len..];
    }
    Some(out)
}

/// The segments of `<data>/events/`, oldest first, after removing unfinished ones.
pub fn open(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    fs::create_dir_all(dir)?;
    let mut segs = Vec::new();
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        match path.extension().and_then(|x| x.to_str()) {
            Some("tmp") => fs::remove_file(&path)?,
            Some("seg") => segs.push(read_footer(path)?),
            _ => {}
        }
    }
    segs.sort_by_key(|s| s.f.first);
    for w in segs.windows(2) {
        if w[1].f.first <= w[0].f.last {
            return Err(w[1].corrupt("overlaps the segment before it"));
        }
    }
    Ok(segs)
}

fn read_footer(path: PathBuf) -> Result<Segment, StoreError> {
    let mut file = File::open(&path)?;
    let size = file.metadata()?.len();
    let bad = |what: &str| StoreError::Corrupt(format!("event segment {}: {what}", path.display()));
    if size < (MAGIC.len() + 12) as u64 {
        return Err(bad("too short"));
    }
    let mut tail = [0u8; 12];
    file.read_exact_at(&mut tail, size - 12)?;
    let flen = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if &tail[4..] != END || flen > MAX_FOOTER || u64::from(flen) + 12 > size {
        return Err(bad("no footer"));
    }
    let mut footer = vec![0u8; flen as usize];
    file.read_exact_at(&mut footer, size - 12 - u64::from(flen))?;
    let f: Footer = decode("event segment footer", &footer)?;
    let consistent = f.records_end == size - 12 - u64::from(flen)
        && f.first <= f.last
        && f.blocks.first().is_some_and(|b| b.first == f.first)
        && f.blocks
            .windows(2)
            .all(|w| w[0].first < w[1].first && w[0].offset < w[1].offset)
        && f.blocks.iter().all(|b| b.offset < f.records_end);
    if !consistent {
        return Err(bad("footer does not describe the file"));
    }
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("not an event segment"));
    }
    Ok(Segment { path, f })
}

/// What sled held for one moved event: its id and the index keys it had.
pub struct Moved {
    pub id: u64,
    pub user: PublicKey,
    pub public: bool,
}

/// Writes `records` (ascending ids, sled's values) as a sealed segment in `dir`, durably,
/// streaming them; returns it and what was moved.
pub fn write<V: AsRef<[u8]>>(
    dir: &Path,
    records: impl Iterator<Item = Result<(u64, V), StoreError>>,
) -> Result<(Segment, Vec<Moved>), StoreError> {
    let tmp = dir.join("segment.tmp");
    let mut w = BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
    w.write_all(MAGIC)?;
    let mut hasher = blake3::Hasher::new();
    let mut offset = MAGIC.len() as u64;
    let mut users: Vec<PublicKey> = Vec::new();
    let mut blocks: Vec<Block> = Vec::new();
    let mut moved: Vec<Moved> = Vec::new();
    for (i, r) in records.enumerate() {
        let (id, value) = r?;
        let value = value.as_ref();
        let ev: EventRecord = decode("event", value)?;
        if i % BLOCK == 0 {
            blocks.push(Block {
                first: id,
                offset,
                public: false,
                users: 0,
            });
        }
        let u = match users.iter().position(|u| *u == ev.user) {
            Some(u) => u,
            None => {
                users.push(ev.user);
                users.len() - 1
            }
        };
        let public = ev.path.starts_with("/pub/");
        // Invariant: a block was pushed at i == 0 and every BLOCK records after.
        let block = blocks.last_mut().expect("a block is open");
        block.users |= 1 << (u % 64);
        block.public |= public;
        let len = u32::try_from(8 + value.len())
            .map_err(|_| StoreError::Db("an event too large for a segment".into()))?;
        for part in [&len.to_le_bytes()[..], &id.to_le_bytes(), value] {
            w.write_all(part)?;
            hasher.update(part);
        }
        offset += 4 + u64::from(len);
        moved.push(Moved {
            id,
            user: ev.user,
            public,
        });
    }
    let (Some(first), Some(last)) = (moved.first(), moved.last()) else {
        drop(w);
        fs::remove_file(&tmp)?;
        return Err(StoreError::Db("an empty event segment".into()));
    };
    let (first, last) = (first.id, last.id);
    let f = Footer {
        first,
        last,
        count: moved.len() as u64,
        records_end: offset,
        blocks,
        users,
        hash: *hasher.finalize().as_bytes(),
    };
    let footer = encode(&f);
    w.write_all(&footer)?;
    w.write_all(&(footer.len() as u32).to_le_bytes())?;
    w.write_all(END)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    let path = dir.join(format!("{first:020}.seg"));
    fs::rename(&tmp, &path)?;
    super::blobs::sync_dir(dir)?;
    Ok((Segment { path, f }, moved))
}

/// The last archived id (0 when nothing is archived).
pub fn upto(segs: &[Segment]) -> u64 {
    segs.last().map_or(0, |s| s.f.last)
}

/// Archived events with ids in `[lo, hi]` that pass `filter`, in id order (or reversed),
/// read a block at a time.
pub struct Walk<'a> {
    segs: &'a [Segment],
    lo: u64,
    hi: u64,
    reverse: bool,
    filter: Filter<'a>,
    /// The next block to read: (segment, block); `None` when done.
    at: Option<(usize, usize)>,
    file: Option<(usize, File)>,
    buf: VecDeque<(u64, EventRecord)>,
}

pub fn walk<'a>(
    segs: &'a [Segment],
    lo: u64,
    hi: u64,
    reverse: bool,
    filter: Filter<'a>,
) -> Walk<'a> {
    let at = if lo > hi || segs.is_empty() {
        None
    } else if reverse {
        let si = segs.partition_point(|s| s.f.first <= hi);
        si.checked_sub(1).map(|si| {
            let b = segs[si].f.blocks.partition_point(|b| b.first <= hi) - 1;
            (si, b)
        })
    } else {
        let si = segs.partition_point(|s| s.f.last < lo);
        segs.get(si).map(|s| {
            let b = s.f.blocks.partition_point(|b| b.first <= lo).max(1) - 1;
            (si, b)
        })
    };
    Walk {
        segs,
        lo,
        hi,
        reverse,
        filter,
        at,
        file: None,
        buf: VecDeque::new(),
    }
}

impl Walk<'_> {
    /// Moves `at` one block on in the walk's direction.
    fn advance(&mut self) {
        let Some((si, b)) = self.at else { return };
        self.at = if self.reverse {
            match b.checked_sub(1) {
                Some(b) => Some((si, b)),
                None => si
                    .checked_sub(1)
                    .map(|si| (si, self.segs[si].f.blocks.len() - 1)),
            }
        } else if b + 1 < self.segs[si].f.blocks.len() {
            Some((si, b + 1))
        } else if si + 1 < self.segs.len() {
            Some((si + 1, 0))
        } else {
            None
        };
    }

    /// Reads the next block that may hold a match into `buf`; false when none is left.
    fn fill(&mut self) -> Result<bool, StoreError> {
        while let Some((si, b)) = self.at {
            let seg = &self.segs[si];
            let (blo, bhi) = seg.block_span(b);
            if (self.reverse && bhi < self.lo) || (!self.reverse && blo > self.hi) {
                self.at = None;
                return Ok(false);
            }
            self.advance();
            let bit = match self.filter {
                Filter::User(u) => seg.user_bit(u),
                _ => None,
            };
            if bhi < self.lo || blo > self.hi || !seg.may_hold(b, self.filter, bit) {
                continue;
            }
            if self.file.as_ref().is_none_or(|(i, _)| *i != si) {
                self.file = Some((si, File::open(&seg.path)?));
            }
            // Invariant: set just above.
            let file = &self.file.as_ref().expect("segment open").1;
            for (id, v) in seg.read_block(file, b)? {
                if id < self.lo || id > self.hi {
                    continue;
                }
                let ev: EventRecord = decode("event", &v)?;
                if self.filter.keeps(&ev) {
                    self.buf.push_back((id, ev));
                }
            }
            if self.reverse {
                self.buf.make_contiguous().reverse();
            }
            if !self.buf.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<(u64, EventRecord), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.at = None;
                    return Some(Err(e));
                }
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

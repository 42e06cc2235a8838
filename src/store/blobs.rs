//! Request bodies on their way in and large bodies at rest. An [`Upload`] hashes the body
//! as it streams, keeps it in memory up to `inline_max`, and spills to `<data>/tmp/` past
//! that; finishing fsyncs the temp file. Large bodies live as `<data>/blobs/xx/<blake3 hex>`,
//! placed by rename (deduplicated by hash) and reference counted by the store.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use std::io::Write;

use smol::Task;

use super::StoreError;

/// Bytes kept from the start of a body for content sniffing.
pub const HEAD_LEN: usize = 8 * 1024;

pub struct Blobs {
    pub root: PathBuf,
    pub tmp: PathBuf,
}

impl Blobs {
    pub fn open(data_dir: &Path) -> Result<Blobs, StoreError> {
        let b = Blobs {
            root: data_dir.join("blobs"),
            tmp: data_dir.join("tmp"),
        };
        fs::create_dir_all(&b.root)?;
        // Uploads that were in progress when the process stopped are garbage.
        if b.tmp.exists() {
            fs::remove_dir_all(&b.tmp)?;
        }
        fs::create_dir_all(&b.tmp)?;
        Ok(b)
    }

    pub fn path(&self, hash: &[u8; 32]) -> PathBuf {
        blob_path(&self.root, hash)
    }

    /// Moves a finished temp file to its content address; an existing blob with the same
    /// hash is kept and the temp file dropped. The directory entries are fsync'd.
    pub fn place(&self, tmp: &Path, hash: &[u8; 32]) -> Result<(), StoreError> {
        let target = self.path(hash);
        if target.exists() {
            fs::remove_file(tmp)?;
            return Ok(());
        }
        // Invariant: `path` always has a parent (root/xx/hex).
        let dir = target.parent().expect("blob path has a parent");
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            sync_dir(&self.root)?;
        }
        fs::rename(tmp, &target)?;
        sync_dir(dir)
    }

    pub fn remove(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        match fs::remove_file(self.path(hash)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every blob file on disk with its hash (files with other names are skipped).
    pub fn all(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path())? {
                let f = f?;
                if let Some(h) = from_hex(&f.file_name().to_string_lossy()) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Where the blob of `hash` lives under a blob directory: `<root>/xx/<hex>`. Also how a
/// backup finds blobs in a data directory it did not open as a store.
pub fn blob_path(root: &Path, hash: &[u8; 32]) -> PathBuf {
    let hex = to_hex(hash);
    root.join(&hex[..2]).join(hex)
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Bytes handed to the disk writer at a time: large enough that the per-write hand-off to
/// the blocking pool is noise, small enough that an upload holds at most two of them.
const SPILL_BATCH: usize = 1 << 20;

/// After this many bytes, writeback of what is written so far is started, so the disk works
/// while the body still arrives and the final fsync has little left to do.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// A body being received.
pub struct Upload {
    tmp_dir: PathBuf,
    inline_max: usize,
    len: u64,
    head: Vec<u8>,
    /// The whole body while it fits inline; then the batch being filled for the writer.
    buf: Vec<u8>,
    spill: Option<Spill>,
}

/// A body past `inline_max`: batches go to a temp file on the blocking pool, one write in
/// flight while the next batch fills. The writer hashes what it writes, in order.
struct Spill {
    path: PathBuf,
    /// The writer while no write is in flight.
    idle: Option<SpillWriter>,
    inflight: Option<Task<std::io::Result<SpillWriter>>>,
}

struct SpillWriter {
    file: fs::File,
    hasher: blake3::Hasher,
    written: u64,
    writeback_from: u64,
    /// The previous batch's buffer, handed back for reuse.
    spare: Vec<u8>,
}

impl SpillWriter {
    fn write_batch(&mut self, mut batch: Vec<u8>) -> std::io::Result<()> {
        self.hasher.update(&batch);
        self.file.write_all(&batch)?;
        self.written += batch.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_EVERY {
            start_writeback(
                &self.file,
                self.writeback_from,
                self.written - self.writeback_from,
            );
            self.writeback_from = self.written;
        }
        batch.clear();
        self.spare = batch;
        Ok(())
    }
}

/// Asks the kernel to start writing a range of `file` back to disk without waiting for it
/// (durability still comes from the fsync at the end).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // sync_file_range has no safe wrapper in the crates we use
fn start_writeback(file: &fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a valid open descriptor and a plain range; the call only schedules writeback
    // and its failure is harmless (fsync follows).
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &fs::File, _offset: u64, _len: u64) {}

/// A fully received, hashed body: in memory, or an fsync'd temp file.
pub struct Staged {
    pub hash: [u8; 32],
    pub len: u64,
    pub body: StagedBody,
}

pub enum StagedBody {
    Inline(Bytes),
    File(TempFile),
}

/// A temp file that is removed when dropped unless it was placed.
pub struct TempFile(pub Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl Upload {
    pub fn new(tmp_dir: PathBuf, inline_max: usize) -> Upload {
        Upload {
            tmp_dir,
            inline_max,
            len: 0,
            head: Vec::new(),
            buf: Vec::new(),
            spill: None,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first bytes of the body (up to 8 KiB), for content-type sniffing.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.len += chunk.len() as u64;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if self.spill.is_none() && self.buf.len() + chunk.len() <= self.inline_max {
            self.buf.extend_from_slice(chunk);
            return Ok(());
        }
        if self.spill.is_none() {
            self.start_spill()?;
        }
        self.buf.extend_from_slice(chunk);
        if self.buf.len() >= SPILL_BATCH {
            self.send_batch().await?;
        }
        Ok(())
    }

    fn start_spill(&mut self) -> Result<(), StoreError> {
        // A spilled upload must not eat the reserve the database needs; checked again at
        // every batch.
        super::space::ensure(
            &self.tmp_dir,
            SPILL_BATCH as u64,
            super::space::RESERVE_BYTES,
        )?;
        let mut name = [0u8; 12];
        getrandom::fill(&mut name).map_err(|e| std::io::Error::other(e.to_string()))?;
        let path = self.tmp_dir.join(to_hex(&name));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        self.spill = Some(Spill {
            path,
            idle: Some(SpillWriter {
                file,
                hasher: blake3::Hasher::new(),
                written: 0,
                writeback_from: 0,
                spare: Vec::with_capacity(SPILL_BATCH),
            }),
            inflight: None,
        });
        self.buf.reserve(SPILL_BATCH.saturating_sub(self.buf.len()));
        Ok(())
    }

    /// Waits for the write in flight (if any), then hands the filled batch to the writer.
    async fn send_batch(&mut self) -> Result<(), StoreError> {
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        let mut writer = match spill.inflight.take() {
            Some(task) => task.await?,
            // Invariant: the writer is idle exactly when no write is in flight.
            None => spill.idle.take().expect("spill writer idle"),
        };
        super::space::ensure(
            &self.tmp_dir,
            self.buf.len() as u64,
            super::space::RESERVE_BYTES,
        )?;
        let batch = std::mem::replace(&mut self.buf, std::mem::take(&mut writer.spare));
        spill.inflight = Some(smol::unblock(move || {
            writer.write_batch(batch)?;
            Ok(writer)
        }));
        Ok(())
    }

    /// Completes the body: hashes it and, for spilled bodies, writes the rest and fsyncs.
    pub async fn finish(mut self) -> Result<Staged, StoreError> {
        let len = self.len;
        if self.spill.is_none() {
            let body = std::mem::take(&mut self.buf);
            let hash = *blake3::hash(&body).as_bytes();
            let body = StagedBody::Inline(Bytes::from(body));
            return Ok(Staged { hash, len, body });
        }
        if !self.buf.is_empty() {
            self.send_batch().await?;
        }
        let Some(mut spill) = self.spill.take() else {
            return Err(StoreError::Io(std::io::Error::other(
                "upload lost its spill file",
            )));
        };
        let guard = TempFile(Some(std::mem::take(&mut spill.path)));
        let writer = match spill.inflight.take() {
            Some(task) => task.await?,
            // Invariant: the writer is idle exactly when no write is in flight.
            None => spill.idle.take().expect("spill writer idle"),
        };
        let hash = smol::unblock(move || {
            writer.file.sync_all()?;
            Ok::<_, std::io::Error>(*writer.hasher.finalize().as_bytes())
        })
        .await?;
        Ok(Staged {
            hash,
            len,
            body: StagedBody::File(guard),
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // A write still in flight finishes into the unlinked file, which then goes away.
        if let Some(spill) = self.spill.take() {
            if !spill.path.as_os_str().is_empty() {
                let _ = fs::remove_file(&spill.path);
            }
        }
    }
}

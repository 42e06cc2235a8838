//! Request bodies on their way in and large bodies at rest. An [`Upload`] hashes the body
//! as it streams, keeps it in memory up to `inline_max`, and spills to `<data>/tmp/` past
//! that; finishing fsyncs the temp file. Large bodies live as `<data>/blobs/xx/<blake3 hex>`,
//! placed by rename (deduplicated by hash) and reference counted by the store.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use smol::io::AsyncWriteExt;
use smol::Unblock;

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
        let hex = to_hex(hash);
        self.root.join(&hex[..2]).join(hex)
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

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A body being received.
pub struct Upload {
    tmp_dir: PathBuf,
    inline_max: usize,
    hasher: blake3::Hasher,
    len: u64,
    head: Vec<u8>,
    buf: Vec<u8>,
    file: Option<(PathBuf, Unblock<fs::File>)>,
}

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
            hasher: blake3::Hasher::new(),
            len: 0,
            head: Vec::new(),
            buf: Vec::new(),
            file: None,
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
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if self.file.is_none() && self.buf.len() + chunk.len() <= self.inline_max {
            self.buf.extend_from_slice(chunk);
            return Ok(());
        }
        // A spilled upload must not eat the reserve the database needs: check free space
        // when the file starts and at each MiB it grows.
        if self.file.is_none() || (self.len - chunk.len() as u64) >> 20 != self.len >> 20 {
            super::space::ensure(
                &self.tmp_dir,
                chunk.len() as u64,
                super::space::RESERVE_BYTES,
            )?;
        }
        if self.file.is_none() {
            let mut name = [0u8; 12];
            getrandom::fill(&mut name).map_err(|e| std::io::Error::other(e.to_string()))?;
            let path = self.tmp_dir.join(to_hex(&name));
            let f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            let mut w = Unblock::new(f);
            let pending = std::mem::take(&mut self.buf);
            let res = w.write_all(&pending).await;
            self.file = Some((path, w));
            res?;
        }
        if let Some((_, w)) = self.file.as_mut() {
            w.write_all(chunk).await?;
        }
        Ok(())
    }

    /// Completes the body: hashes it and, for spilled bodies, flushes and fsyncs the file.
    pub async fn finish(mut self) -> Result<Staged, StoreError> {
        let hash = *self.hasher.finalize().as_bytes();
        let len = self.len;
        let body = match self.file.take() {
            None => StagedBody::Inline(Bytes::from(std::mem::take(&mut self.buf))),
            Some((path, mut w)) => {
                let guard = TempFile(Some(path));
                w.flush().await?;
                let f = w.into_inner().await;
                smol::unblock(move || f.sync_all()).await?;
                StagedBody::File(guard)
            }
        };
        Ok(Staged { hash, len, body })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some((p, _)) = self.file.take() {
            let _ = fs::remove_file(p);
        }
    }
}

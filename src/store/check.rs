//! Consistency check of the store's cross-tree invariants, for crash and disk-full tests
//! and for diagnosing a data directory: every entry has its body (inline content or an
//! intact blob file), blob reference counts equal the entries that use them, no blob file
//! is unreferenced, each user's quota usage equals the sum over their files, and every
//! archived event segment is intact.

use std::collections::BTreeMap;

use std::io::Read;

use super::codec::{decode, decode_with_tail};
use super::entries::FILE_OVERHEAD;
use super::{blobs, keys, EntryMeta, Store, StoreError, User};

/// Bytes or references counted per user key or blob hash.
type Counts = BTreeMap<[u8; 32], u64>;

/// What [`Store::check`] found. `problems` is empty for a consistent store.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub entries: usize,
    pub blob_files: usize,
    /// Quota usage per user (32-byte key), as stored.
    pub used_bytes: BTreeMap<[u8; 32], u64>,
    pub problems: Vec<String>,
}

impl Store {
    /// Walks every entry, blob reference and blob file (reading each blob to verify its
    /// hash), so it costs a full read of the data: meant for tests and offline checks.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport::default();
        let (usage, refs) = self.check_entries(&mut report)?;
        self.check_refcounts(refs, &mut report)?;
        self.check_blob_files(&mut report)?;
        self.check_usage(usage, &mut report)?;
        self.check_archive(&mut report)?;
        Ok(report)
    }

    /// Every archived segment matches its footer, and sled holds no event the archive has.
    fn check_archive(&self, report: &mut CheckReport) -> Result<(), StoreError> {
        let segs = self.segments();
        for seg in segs.iter() {
            if let Err(e) = seg.verify() {
                report.problems.push(e.to_string());
            }
        }
        let upto = super::archive::upto(&segs);
        if let Some(kv) = self.0.t.events.iter().next() {
            let (k, _) = kv?;
            if k.as_ref() <= &keys::event(upto)[..] {
                report.problems.push(format!(
                    "events up to {upto} are archived but still in the database"
                ));
            }
        }
        Ok(())
    }

    /// Every entry with its body; returns each user's counted usage and each blob's
    /// counted references.
    fn check_entries(&self, report: &mut CheckReport) -> Result<(Counts, Counts), StoreError> {
        let t = &self.0.t;
        let mut usage = Counts::new();
        let mut refs = Counts::new();
        for kv in t.entries.iter() {
            let (k, v) = kv?;
            report.entries += 1;
            let path = keys::entry_path(&k).unwrap_or("<bad key>").to_string();
            let user: [u8; 32] = k
                .get(..32)
                .and_then(|u| u.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("entry key of {path}")))?;
            let (meta, body) = decode_with_tail::<EntryMeta>("entry", &v)?;
            *usage.entry(user).or_default() += meta.len + FILE_OVERHEAD;
            if meta.inline {
                if body.len() as u64 != meta.len || *blake3::hash(body).as_bytes() != meta.hash {
                    report
                        .problems
                        .push(format!("{path}: inline body does not match its entry"));
                }
            } else {
                *refs.entry(meta.hash).or_default() += 1;
                if !body.is_empty() {
                    report
                        .problems
                        .push(format!("{path}: blob entry also has an inline body"));
                }
            }
        }
        // Emptied by the migration to format 2 at open; anything here was written since.
        let left = t.content.len();
        if left > 0 {
            report
                .problems
                .push(format!("{left} inline bodies left in the old content tree"));
        }
        Ok((usage, refs))
    }

    /// Stored reference counts against the entries that use each blob.
    fn check_refcounts(
        &self,
        mut refs: Counts,
        report: &mut CheckReport,
    ) -> Result<(), StoreError> {
        for kv in self.0.t.blob_refs.iter() {
            let (k, v) = kv?;
            let hash: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("blob ref key".into()))?;
            let stored: u64 = decode("blob refcount", &v)?;
            let counted = refs.remove(&hash).unwrap_or(0);
            if stored != counted {
                report.problems.push(format!(
                    "blob {}: refcount {stored}, entries using it {counted}",
                    blobs::to_hex(&hash)
                ));
            }
        }
        for (hash, n) in refs {
            report.problems.push(format!(
                "blob {}: used by {n} entries but has no refcount",
                blobs::to_hex(&hash)
            ));
        }
        Ok(())
    }

    /// Blob files: each referenced, each matching its name, none referenced but missing.
    fn check_blob_files(&self, report: &mut CheckReport) -> Result<(), StoreError> {
        let t = &self.0.t;
        let on_disk = self.0.blobs.all()?;
        report.blob_files = on_disk.len();
        for hash in &on_disk {
            if !t.blob_refs.contains_key(hash)? {
                report
                    .problems
                    .push(format!("blob {}: orphan file", blobs::to_hex(hash)));
            }
            let mut f = std::fs::File::open(self.0.blobs.path(hash))?;
            let mut h = blake3::Hasher::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match f.read(&mut buf)? {
                    0 => break,
                    n => h.update(&buf[..n]),
                };
            }
            if h.finalize().as_bytes() != hash {
                report.problems.push(format!(
                    "blob {}: content does not match its name",
                    blobs::to_hex(hash)
                ));
            }
        }
        for kv in t.blob_refs.iter() {
            let (k, _) = kv?;
            if !on_disk.iter().any(|h| h[..] == k[..]) {
                report.problems.push(format!(
                    "blob {}: referenced but no file",
                    blobs::to_hex(&k)
                ));
            }
        }
        Ok(())
    }

    /// Each account's recorded usage against the sum of its files.
    fn check_usage(&self, mut usage: Counts, report: &mut CheckReport) -> Result<(), StoreError> {
        for kv in self.0.t.users.iter() {
            let (k, v) = kv?;
            let user: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("user key".into()))?;
            let u: User = decode("user", &v)?;
            let counted = usage.remove(&user).unwrap_or(0);
            if u.used_bytes != counted {
                report.problems.push(format!(
                    "user {}: used_bytes {} but files sum to {counted}",
                    blobs::to_hex(&user),
                    u.used_bytes
                ));
            }
            report.used_bytes.insert(user, u.used_bytes);
        }
        for user in usage.keys() {
            report.problems.push(format!(
                "user {}: has files but no account",
                blobs::to_hex(user)
            ));
        }
        Ok(())
    }
}

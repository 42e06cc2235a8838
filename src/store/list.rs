//! Directory listings as range scans over `entries` (keys are `user ‖ path`, so a
//! directory is a key prefix). Deep listings walk the files under the prefix; shallow ones
//! jump over each child directory's subtree after emitting it once.

use super::{keys, ListOptions, Store, StoreError};
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;

impl Store {
    /// Paths under `dir` (canonical, shallow child directories end in `/`), ordered
    /// bytewise, after (or, reversed, before) the exclusive cursor. `NotFound` when the
    /// user has no file under `dir`.
    pub fn list(
        &self,
        pk: &PublicKey,
        dir: &StoragePath,
        opts: &ListOptions,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = keys::entry(pk, dir.as_str());
        let entries = &self.0.t.entries;
        if entries.scan_prefix(&prefix).next().transpose()?.is_none() {
            return Err(StoreError::NotFound);
        }
        if opts.limit == 0 {
            return Ok(Vec::new());
        }
        let cursor = opts.cursor.as_deref();
        let end = keys::after_prefix(&prefix);
        match (opts.shallow, opts.reverse) {
            (false, false) => {
                let start = match cursor {
                    Some(c) => keys::successor(&keys::entry(pk, c)).max(prefix.clone()),
                    None => prefix.clone(),
                };
                collect(entries.range(start..end), opts.limit)
            }
            (false, true) => {
                let stop = match cursor {
                    Some(c) => keys::entry(pk, c).min(end),
                    None => end,
                };
                if stop <= prefix {
                    return Ok(Vec::new());
                }
                collect(entries.range(prefix..stop).rev(), opts.limit)
            }
            (true, false) => self.shallow_forward(pk, dir, prefix, end, cursor, opts.limit),
            (true, true) => self.shallow_reverse(pk, dir, prefix, end, cursor, opts.limit),
        }
    }

    fn shallow_forward(
        &self,
        pk: &PublicKey,
        dir: &StoragePath,
        prefix: Vec<u8>,
        end: Vec<u8>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut pos = match cursor {
            Some(c) => keys::successor(&keys::entry(pk, c)).max(prefix),
            None => prefix,
        };
        let mut out = Vec::new();
        while out.len() < limit && pos < end {
            let Some(kv) = self.0.t.entries.range(pos.clone()..end.clone()).next() else {
                break;
            };
            let (k, _) = kv?;
            let (rendered, next) = child(pk, dir, &k)?;
            pos = next;
            if cursor.is_none_or(|c| rendered.as_str() > c) {
                out.push(rendered);
            }
        }
        Ok(out)
    }

    fn shallow_reverse(
        &self,
        pk: &PublicKey,
        dir: &StoragePath,
        prefix: Vec<u8>,
        end: Vec<u8>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // A cursor inside a child directory must still let that directory be listed, so
        // the scan starts after the whole child subtree.
        let mut stop = match cursor {
            Some(c) => {
                let rel = c.strip_prefix(dir.as_str()).unwrap_or("");
                match rel.find('/') {
                    Some(i) if c.starts_with(dir.as_str()) => {
                        keys::after_prefix(&keys::entry(pk, &c[..dir.as_str().len() + i + 1]))
                    }
                    _ => keys::entry(pk, c),
                }
            }
            None => end.clone(),
        }
        .min(end);
        let mut out = Vec::new();
        while out.len() < limit && stop > prefix {
            let Some(kv) = self
                .0
                .t
                .entries
                .range(prefix.clone()..stop.clone())
                .next_back()
            else {
                break;
            };
            let (k, _) = kv?;
            let (rendered, _) = child(pk, dir, &k)?;
            // Everything from the rendered child on (its subtree) is done.
            stop = keys::entry(pk, &rendered);
            if cursor.is_none_or(|c| rendered.as_str() < c) {
                out.push(rendered);
            }
        }
        Ok(out)
    }
}

/// The immediate child of `dir` that `key` lies in, rendered (`dir/name` or `dir/name/`),
/// and the first key after that child's subtree.
fn child(pk: &PublicKey, dir: &StoragePath, key: &[u8]) -> Result<(String, Vec<u8>), StoreError> {
    let path = keys::entry_path(key).ok_or_else(|| StoreError::Corrupt("entry key".into()))?;
    let rel = &path[dir.as_str().len().min(path.len())..];
    match rel.find('/') {
        Some(i) => {
            let rendered = path[..dir.as_str().len() + i + 1].to_string();
            let next = keys::after_prefix(&keys::entry(pk, &rendered));
            Ok((rendered, next))
        }
        None => Ok((path.to_string(), keys::successor(key))),
    }
}

fn collect(
    iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::with_capacity(limit.min(128));
    for kv in iter.take(limit) {
        let (k, _) = kv?;
        let p = keys::entry_path(&k).ok_or_else(|| StoreError::Corrupt("entry key".into()))?;
        out.push(p.to_string());
    }
    Ok(out)
}

//! Files: reading entries and bodies, and the write path. A PUT or DELETE checks
//! collisions and quota under the writer lock, then commits the entry (with its body when
//! inline), blob reference count, event and quota usage in one transaction, then waits for
//! durability.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::blobs::{Staged, StagedBody};
use super::codec::{decode, decode_with_tail, encode, encode_with_tail};
use super::{
    keys, space, tx_err, Content, EntryMeta, EventKind, EventRecord, Store, StoreError, User,
};
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;

/// Each file costs this much quota on top of its bytes.
pub const FILE_OVERHEAD: u64 = 256;

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

impl Store {
    pub fn entry(
        &self,
        pk: &PublicKey,
        path: &StoragePath,
    ) -> Result<Option<EntryMeta>, StoreError> {
        match self.0.t.entries.get(keys::entry(pk, path.as_str()))? {
            Some(v) => decode("entry", &v).map(Some),
            None => Ok(None),
        }
    }

    /// The entry and its body. An inline body is stored in the entry's own value, so the
    /// two are one consistent pair by construction; its BLAKE3 hash is still checked, so a
    /// damaged value is reported rather than served. No sled transaction: in sled 0.34
    /// even a read-only one takes the global transaction lock and appends a batch marker
    /// to the log. A blob that vanished between reading the entry and opening the file
    /// means the entry changed in between, and the read starts over.
    pub fn read(
        &self,
        pk: &PublicKey,
        path: &StoragePath,
    ) -> Result<Option<(EntryMeta, Content)>, StoreError> {
        let key = keys::entry(pk, path.as_str());
        let t = &self.0.t;
        for _ in 0..16 {
            let Some(raw) = t.entries.get(&key)? else {
                return Ok(None);
            };
            let (meta, body) = decode_with_tail::<EntryMeta>("entry", &raw)?;
            if meta.inline {
                if body.len() as u64 != meta.len || *blake3::hash(body).as_bytes() != meta.hash {
                    return Err(StoreError::Corrupt(format!(
                        "body of {path} does not match its entry"
                    )));
                }
                let body = bytes::Bytes::copy_from_slice(body);
                return Ok(Some((meta, Content::Inline(body))));
            }
            match std::fs::File::open(self.0.blobs.path(&meta.hash)) {
                // Blobs are never rewritten in place, so an open file stays this version.
                Ok(f) => return Ok(Some((meta, Content::File(f)))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let now = self.entry(pk, path)?;
                    if now.as_ref().map(|m| m.hash) == Some(meta.hash) {
                        return Err(StoreError::Corrupt(format!("blob of {path}: {e}")));
                    }
                }
                Err(e) => return Err(StoreError::Corrupt(format!("blob of {path}: {e}"))),
            }
        }
        Err(StoreError::Corrupt(format!(
            "{path} changed on every read attempt"
        )))
    }

    pub fn user(&self, pk: &PublicKey) -> Result<Option<User>, StoreError> {
        match self.0.t.users.get(pk.as_bytes())? {
            Some(v) => decode("user", &v).map(Some),
            None => Ok(None),
        }
    }

    fn quota_limit(&self, user: &User) -> Option<u64> {
        user.quota_bytes.or(self.0.cfg.default_quota_bytes)
    }

    /// Largest body this PUT may have under the owner's quota (`None`: unlimited).
    pub fn write_allowance(
        &self,
        pk: &PublicKey,
        path: &StoragePath,
    ) -> Result<Option<u64>, StoreError> {
        let user = self.user(pk)?.ok_or(StoreError::UserNotFound)?;
        let Some(limit) = self.quota_limit(&user) else {
            return Ok(None);
        };
        let (freed, overhead) = match self.entry(pk, path)? {
            Some(old) => (old.len, 0),
            None => (0, FILE_OVERHEAD),
        };
        // An "unlimited" override is u64::MAX: every sum here saturates.
        Ok(Some(
            limit
                .saturating_add(freed)
                .saturating_sub(user.used_bytes.saturating_add(overhead)),
        ))
    }

    fn check_collisions(&self, pk: &PublicKey, path: &StoragePath) -> Result<(), StoreError> {
        let below = keys::entry(pk, &format!("{}/", path.as_str()));
        if self
            .0
            .t
            .entries
            .scan_prefix(below)
            .next()
            .transpose()?
            .is_some()
        {
            return Err(StoreError::Collision);
        }
        for dir in path.ancestors() {
            let file = keys::entry(pk, dir.trim_end_matches('/'));
            if self.0.t.entries.contains_key(file)? {
                return Err(StoreError::Collision);
            }
        }
        Ok(())
    }

    pub async fn put(
        &self,
        pk: &PublicKey,
        path: &StoragePath,
        staged: Staged,
        content_type: &str,
        now_us: u64,
    ) -> Result<(), StoreError> {
        let Staged { hash, len, body } = staged;
        let (ticket, event_id, unlink) = match body {
            StagedBody::Inline(bytes) => {
                self.commit_put(pk, path, hash, len, content_type, now_us, Some(&bytes))?
            }
            StagedBody::File(mut tmp) => {
                let store = self.clone();
                let (pk, path, ct) = (*pk, path.clone(), content_type.to_string());
                smol::unblock(move || {
                    // Invariant: a staged file body always carries its temp path.
                    let tmp_path = tmp.0.take().expect("staged temp file");
                    let _g = store.0.blob_lock.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = store.0.blobs.place(&tmp_path, &hash) {
                        let _ = std::fs::remove_file(&tmp_path);
                        return Err(e);
                    }
                    let r = store.commit_put(&pk, &path, hash, len, &ct, now_us, None);
                    if r.is_err() {
                        store.unlink_if_unreferenced_locked(hash)?;
                    }
                    r
                })
                .await?
            }
        };
        self.durable(ticket).await?;
        self.0.feed.publish(event_id, pk);
        self.unlink_unreferenced(unlink, ticket).await
    }

    /// Checks and commits a PUT; returns the durability ticket, the event id and a blob
    /// whose last reference was dropped (to unlink once durable).
    #[allow(clippy::too_many_arguments)]
    fn commit_put(
        &self,
        pk: &PublicKey,
        path: &StoragePath,
        hash: [u8; 32],
        len: u64,
        content_type: &str,
        now_us: u64,
        inline: Option<&[u8]>,
    ) -> Result<(u64, u64, Option<[u8; 32]>), StoreError> {
        let inline_len = inline.map_or(0, |b| b.len() as u64);
        space::ensure(&self.0.blobs.root, inline_len, space::RESERVE_BYTES)?;
        let mut w = self.writer();
        let mut user = self.user(pk)?.ok_or(StoreError::UserNotFound)?;
        let old = self.entry(pk, path)?;
        if old.is_none() {
            self.check_collisions(pk, path)?;
        }
        let used = match &old {
            Some(o) => user.used_bytes.saturating_sub(o.len).saturating_add(len),
            None => user
                .used_bytes
                .saturating_add(len)
                .saturating_add(FILE_OVERHEAD),
        };
        if self.quota_limit(&user).is_some_and(|limit| used > limit) {
            return Err(StoreError::QuotaExceeded);
        }
        user.used_bytes = used;
        let meta = EntryMeta {
            hash,
            len,
            content_type: content_type.to_string(),
            created_at: old.as_ref().map_or(now_us, |o| o.created_at),
            modified_at: now_us,
            inline: inline.is_some(),
        };
        let event_id = w.last_event + 1;
        let event = EventRecord {
            user: *pk,
            path: path.as_str().to_string(),
            kind: EventKind::Put,
            hash: Some(hash),
            created_at: now_us,
        };
        let key = keys::entry(pk, path.as_str());
        let t = &self.0.t;
        let unlink = t
            .of_a_file_write()
            .transaction(|(entries, refs, events, meta_t, users, by_user, public)| {
                match inline {
                    Some(b) => entries.insert(key.as_slice(), encode_with_tail(&meta, b))?,
                    None => {
                        add_ref(refs, &hash, 1)?;
                        entries.insert(key.as_slice(), encode(&meta))?
                    }
                };
                let mut unlink = None;
                if let Some(o) = old.as_ref().filter(|o| !o.inline) {
                    if add_ref(refs, &o.hash, -1)? == 0 {
                        unlink = Some(o.hash);
                    }
                }
                log_event([events, meta_t, by_user, public], event_id, &event)?;
                users.insert(pk.as_bytes(), encode(&user))?;
                Ok(unlink)
            })
            .map_err(tx_err)?;
        w.last_event = event_id;
        Ok((self.0.commit.ticket(), event_id, unlink))
    }

    pub async fn delete(
        &self,
        pk: &PublicKey,
        path: &StoragePath,
        now_us: u64,
    ) -> Result<(), StoreError> {
        space::ensure(&self.0.blobs.root, 0, space::DELETE_RESERVE_BYTES)?;
        let (ticket, event_id, unlink) = {
            let mut w = self.writer();
            let old = self.entry(pk, path)?.ok_or(StoreError::NotFound)?;
            let mut user = self.user(pk)?.ok_or(StoreError::UserNotFound)?;
            user.used_bytes = user.used_bytes.saturating_sub(old.len + FILE_OVERHEAD);
            let event_id = w.last_event + 1;
            let event = EventRecord {
                user: *pk,
                path: path.as_str().to_string(),
                kind: EventKind::Del,
                hash: None,
                created_at: now_us,
            };
            let key = keys::entry(pk, path.as_str());
            let t = &self.0.t;
            let unlink = t
                .of_a_file_write()
                .transaction(|(entries, refs, events, meta_t, users, by_user, public)| {
                    entries.remove(key.as_slice())?;
                    let mut unlink = None;
                    if !old.inline && add_ref(refs, &old.hash, -1)? == 0 {
                        unlink = Some(old.hash);
                    }
                    log_event([events, meta_t, by_user, public], event_id, &event)?;
                    users.insert(pk.as_bytes(), encode(&user))?;
                    Ok(unlink)
                })
                .map_err(tx_err)?;
            w.last_event = event_id;
            (self.0.commit.ticket(), event_id, unlink)
        };
        self.durable(ticket).await?;
        self.0.feed.publish(event_id, pk);
        self.unlink_unreferenced(unlink, ticket).await
    }

    /// Removes a blob file if (still) nothing references it, once the change that dropped
    /// its last reference (`ticket`) is on disk. Even in relaxed mode: unlinking earlier lets
    /// a crash bring the reference back without its file, turning a lost recent write into
    /// a damaged older one.
    pub(super) async fn unlink_unreferenced(
        &self,
        hash: Option<[u8; 32]>,
        ticket: u64,
    ) -> Result<(), StoreError> {
        let Some(hash) = hash else { return Ok(()) };
        self.0.commit.wait(ticket).await?;
        let store = self.clone();
        smol::unblock(move || store.unlink_if_unreferenced(hash)).await
    }
}

/// Appends one event in a write's transaction: the record, the log's sequence, the
/// writer's index key and, for a public path, the feed's.
pub(super) fn log_event(
    [events, meta, by_user, public]: [&TransactionalTree; 4],
    id: u64,
    event: &EventRecord,
) -> TxResult<()> {
    let key = keys::event(id);
    events.insert(&key, encode(event))?;
    meta.insert(b"event_seq", encode(&id))?;
    by_user.insert(keys::user_event(&event.user, id), &[] as &[u8])?;
    if event.path.starts_with("/pub/") {
        public.insert(&key, &[] as &[u8])?;
    }
    Ok(())
}

/// Adds `delta` to a blob's reference count inside a transaction; returns the new count
/// (a count of 0 removes the key).
pub(super) fn add_ref(refs: &TransactionalTree, hash: &[u8; 32], delta: i64) -> TxResult<u64> {
    let cur = match refs.get(hash)? {
        Some(v) => {
            decode::<u64>("blob refcount", &v).map_err(ConflictableTransactionError::Abort)?
        }
        None => 0,
    };
    let next = (cur as i64 + delta).max(0) as u64;
    if next == 0 {
        refs.remove(hash)?;
    } else {
        refs.insert(hash, encode(&next))?;
    }
    Ok(next)
}

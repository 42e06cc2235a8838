//! The store's side of a standby (`crate::standby`): applying the primary's events with
//! the primary's own ids, and copying the tables that are not events (accounts, sessions,
//! tokens, quota overrides).
//!
//! A replicated event keeps its id, so the standby's log is the primary's log and its
//! `event_seq` is how far it has followed: nothing else records the position, and a
//! standby killed at any moment resumes from what is durable. A PUT arrives with the
//! file as the primary holds it *now* (when its path still has that event's body) or
//! without it (a later event of the same log overwrote or deleted it): then only the
//! event is logged, and the later event brings the path to the primary's state. Quota
//! usage is counted here with the primary's rules, from the files this store holds.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use sled::Transactional;

use super::codec::{decode, encode, encode_with_tail};
use super::entries::{add_ref, log_event, FILE_OVERHEAD};
use super::snapshot::{frame, DumpReader, Frame, DUMP_MAGIC, TAG_END, TAG_RECORD, TAG_TREE};
use super::{keys, tx_err, EntryMeta, EventKind, EventRecord, Store, StoreError, User};

/// The trees a standby copies whole from its primary: everything a takeover needs that is
/// not a file or an event. `users` is merged (quota usage is counted locally).
pub const TABLES: &[&str] = &[
    "cookie_sessions",
    "grants",
    "nonces",
    "sessions",
    "signup_tokens",
    "token_quotas",
    "user_grants",
    "user_quotas",
    "users",
];

/// The body that comes with a replicated PUT.
pub enum ReplicaBody {
    Inline(Vec<u8>),
    /// A blob: its file was fetched to this temp path (`None`: this store already has it).
    Blob(Option<PathBuf>),
}

/// One event of the primary's log, with the file when the primary still holds it.
pub struct Replicated {
    pub id: u64,
    pub event: EventRecord,
    pub file: Option<(EntryMeta, ReplicaBody)>,
}

impl Store {
    /// Whether this store holds the blob file of `hash`.
    pub fn has_blob(&self, hash: &[u8; 32]) -> bool {
        self.0.blobs.path(hash).is_file()
    }

    /// The blob file of `hash`, opened for reading.
    pub fn open_blob(&self, hash: &[u8; 32]) -> std::io::Result<std::fs::File> {
        std::fs::File::open(self.0.blobs.path(hash))
    }

    /// Blobs referenced by entries whose files are missing (a standby's copy fetches them).
    pub fn missing_blobs(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut out = Vec::new();
        for kv in self.0.t.blob_refs.iter() {
            let (k, _) = kv?;
            if let Ok(h) = <[u8; 32]>::try_from(&*k) {
                if !self.has_blob(&h) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }

    /// Puts a fetched blob file (checked against its hash by the caller) in place.
    pub fn place_blob(&self, tmp: &std::path::Path, hash: &[u8; 32]) -> Result<(), StoreError> {
        let _g = self.0.blob_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.0.blobs.place(tmp, hash)
    }

    /// Where a fetched body is written before it is placed (`<data>/tmp/`).
    pub fn tmp_dir(&self) -> &std::path::Path {
        &self.0.blobs.tmp
    }

    /// Applies events of the primary's log in order, each in its own transaction, and
    /// returns once all are durable. The first must follow this store's last event.
    pub async fn apply_replicated(&self, batch: Vec<Replicated>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let store = self.clone();
        let (done, unlinks, failed) = smol::unblock(move || {
            let mut unlinks = Vec::new();
            let mut done = None;
            for r in batch {
                let (id, user) = (r.id, r.event.user);
                match store.commit_replicated(r) {
                    Ok((ticket, unlink)) => {
                        unlinks.extend(unlink);
                        done = Some((ticket, id, user));
                    }
                    // What was committed before it is made durable and visible below.
                    Err(e) => return (done, unlinks, Some(e)),
                }
            }
            (done, unlinks, None)
        })
        .await;
        if let Some((ticket, last, user)) = done {
            self.durable(ticket).await?;
            self.0.feed.publish(last, &user);
            for hash in unlinks {
                self.unlink_unreferenced(Some(hash), ticket).await?;
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn commit_replicated(&self, r: Replicated) -> Result<(u64, Option<[u8; 32]>), StoreError> {
        let Replicated { id, event, file } = r;
        let blob_guard = match &file {
            Some((_, ReplicaBody::Blob(_))) => {
                Some(self.0.blob_lock.lock().unwrap_or_else(|e| e.into_inner()))
            }
            _ => None,
        };
        if let Some((meta, ReplicaBody::Blob(Some(tmp)))) = &file {
            self.0.blobs.place(tmp, &meta.hash)?;
        }
        let mut w = self.writer();
        if id != w.last_event + 1 {
            return Err(StoreError::Db(format!(
                "replicated event {id} does not follow this store's last event {}",
                w.last_event
            )));
        }
        let pk = event.user;
        let key = keys::entry(&pk, &event.path);
        let old = match self.0.t.entries.get(&key)? {
            Some(v) => Some(decode::<EntryMeta>("entry", &v)?),
            None => None,
        };
        let mut user = self.user(&pk)?.unwrap_or(User {
            created_at: event.created_at / 1_000_000,
            disabled: false,
            quota_bytes: None,
            used_bytes: 0,
            signup_token: None,
        });
        // What happens to the path: a new file, its removal, or nothing (event only).
        let change: Option<Option<(EntryMeta, ReplicaBody)>> = match (event.kind, file) {
            (EventKind::Put, Some(f)) => Some(Some(f)),
            (EventKind::Put, None) => None,
            (EventKind::Del, _) => old.is_some().then_some(None),
        };
        if let Some(new) = &change {
            let freed = old.as_ref().map_or(0, |o| o.len + FILE_OVERHEAD);
            let added = new.as_ref().map_or(0, |(m, _)| m.len + FILE_OVERHEAD);
            user.used_bytes = user.used_bytes.saturating_sub(freed).saturating_add(added);
        }
        let t = &self.0.t;
        let unlink = t
            .of_a_file_write()
            .transaction(|(entries, refs, events, meta_t, users, by_user, public)| {
                let mut unlink = None;
                if let Some(new) = &change {
                    if let Some(o) = old.as_ref().filter(|o| !o.inline) {
                        if add_ref(refs, &o.hash, -1)? == 0 {
                            unlink = Some(o.hash);
                        }
                    }
                    match new {
                        Some((meta, body)) => {
                            match body {
                                ReplicaBody::Inline(b) => {
                                    entries.insert(key.as_slice(), encode_with_tail(meta, b))?;
                                }
                                ReplicaBody::Blob(_) => {
                                    add_ref(refs, &meta.hash, 1)?;
                                    entries.insert(key.as_slice(), encode(meta))?;
                                }
                            }
                            if unlink == Some(meta.hash) {
                                unlink = None;
                            }
                        }
                        None => {
                            entries.remove(key.as_slice())?;
                        }
                    }
                    users.insert(pk.as_bytes(), encode(&user))?;
                } else if users.get(pk.as_bytes())?.is_none() {
                    users.insert(pk.as_bytes(), encode(&user))?;
                }
                log_event([events, meta_t, by_user, public], id, &event)?;
                Ok(unlink)
            })
            .map_err(tx_err)?;
        w.last_event = id;
        drop(blob_guard);
        Ok((self.0.commit.ticket(), unlink))
    }

    /// The [`TABLES`] as dump frames (the backup dump's format). Read without the writer
    /// lock, so a standby's copy every few seconds never holds up this box's writes: a
    /// write that lands between two trees (a grant without its session yet) reaches the
    /// standby whole at its next copy.
    pub fn dump_tables(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = DUMP_MAGIC.to_vec();
        let mut records = 0u64;
        for name in TABLES {
            frame(&mut out, TAG_TREE, &[name.as_bytes()])?;
            for kv in self.0.db.open_tree(name)?.iter() {
                let (k, v) = kv?;
                let klen = (k.len() as u32).to_le_bytes();
                frame(&mut out, TAG_RECORD, &[&klen, &k, &v])?;
                records += 1;
            }
        }
        // No event sequence: the same tables give the same bytes (and ETag).
        let mut end = records.to_le_bytes().to_vec();
        end.extend_from_slice(&0u64.to_le_bytes());
        frame(&mut out, TAG_END, &[&end])?;
        Ok(out)
    }

    /// Makes the [`TABLES`] hold exactly what `dump` (from [`Self::dump_tables`]) holds,
    /// except each account's quota usage, which stays this store's count. Returns how many
    /// keys changed. Durable when it returns.
    pub fn replace_tables(&self, dump: impl Read) -> Result<u64, StoreError> {
        let mut wanted: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
        let mut r = DumpReader::new(dump)?;
        let mut current: Option<String> = None;
        while let Some(f) = r.next_frame()? {
            match f {
                Frame::Tree(name) => {
                    if !TABLES.contains(&name.as_str()) {
                        return Err(StoreError::Corrupt(format!("tables: unexpected {name}")));
                    }
                    wanted.entry(name.clone()).or_default();
                    current = Some(name);
                }
                Frame::Record(k, v) => {
                    let tree = current.as_ref().ok_or_else(|| {
                        StoreError::Corrupt("tables: a record before any tree".into())
                    })?;
                    wanted.entry(tree.clone()).or_default().insert(k, v);
                }
                Frame::End { .. } => {}
            }
        }
        let _w = self.writer();
        let mut changed = 0u64;
        for (name, mut want) in wanted {
            let tree = self.0.db.open_tree(&name)?;
            if name == "users" {
                self.keep_local_usage(&tree, &mut want)?;
            }
            let mut batch = sled::Batch::default();
            for kv in tree.iter() {
                let (k, v) = kv?;
                match want.remove(&*k) {
                    Some(new) if new == *v => {}
                    Some(new) => {
                        batch.insert(&*k, new);
                        changed += 1;
                    }
                    None => {
                        batch.remove(&*k);
                        changed += 1;
                    }
                }
            }
            for (k, v) in want {
                batch.insert(k, v);
                changed += 1;
            }
            tree.apply_batch(batch)?;
        }
        if changed > 0 {
            self.flush_durably()?;
        }
        Ok(changed)
    }

    /// Rewrites the primary's account records in `want` with this store's own usage, and
    /// keeps accounts the primary no longer lists while this store still holds their files.
    fn keep_local_usage(
        &self,
        tree: &sled::Tree,
        want: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), StoreError> {
        for (k, v) in want.iter_mut() {
            let mut theirs: User = decode("user", v)?;
            theirs.used_bytes = match tree.get(k)? {
                Some(mine) => decode::<User>("user", &mine)?.used_bytes,
                None => 0,
            };
            *v = encode(&theirs);
        }
        for kv in tree.iter() {
            let (k, v) = kv?;
            if !want.contains_key(&*k) && self.0.t.entries.scan_prefix(&k).next().is_some() {
                want.insert(k.to_vec(), v.to_vec());
            }
        }
        Ok(())
    }
}

//! Opening the store: sled's database under its lock, the recorded format, the move of an
//! older format's data (a copy into a new database, or in place), then the checks and
//! indexes every start runs before the first request.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use super::database::{open_database, stored_format};
use super::{
    archive, blobs, codec, commit, events, rebuild, snapshot, Durability, Inner, Store,
    StoreConfig, StoreError, Trees, WriterState, FORMAT, RELAXED_FLUSH_MS,
};

impl Store {
    pub fn open(data_dir: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        // Strict: the group committer flushes for the writers that wait. Relaxed: nobody
        // waits, so sled's own timer flushes, or nothing would reach the disk before close.
        let flush_every = match cfg.durability {
            Durability::Strict => None,
            Durability::Relaxed => Some(RELAXED_FLUSH_MS),
        };
        let db_dir = data_dir.join("db");
        rebuild::settle(data_dir)?;
        let db = open_database(&db_dir, cfg.cache_capacity_bytes, flush_every)?;
        let tree = |n: &str| db.open_tree(n);
        let t = Trees {
            entries: tree("entries")?,
            content: tree("content")?,
            users: tree("users")?,
            blob_refs: tree("blob_refs")?,
            events: tree("events")?,
            user_events: tree("user_events")?,
            pub_events: tree("pub_events")?,
            meta: tree("meta")?,
            grants: tree("grants")?,
            user_grants: tree("user_grants")?,
            sessions: tree("sessions")?,
            nonces: tree("nonces")?,
            signup_tokens: tree("signup_tokens")?,
            cookie_sessions: tree("cookie_sessions")?,
            user_quotas: tree("user_quotas")?,
            token_quotas: tree("token_quotas")?,
        };
        let found = stored_format(&t.meta)?;
        // Format 1's bodies move into their entries. A copy into a fresh database when
        // there is room for one (it ends as compact as a store written afresh), else in
        // place by `migrate`.
        if !t.content.is_empty() {
            match rebuild::copy(&db, data_dir, cfg.cache_capacity_bytes) {
                Ok(r) => {
                    drop(t);
                    drop(db);
                    rebuild::settle(data_dir)?;
                    tracing::info!(
                        from = found,
                        to = FORMAT,
                        records = r.records,
                        bytes_before = r.bytes_before,
                        bytes_after = r.bytes_after,
                        "store migrated into a new database"
                    );
                    return Store::open(data_dir, cfg);
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "no copy of the database for the migration; migrating in place"
                ),
            }
        }
        let last_event = match t.meta.get(b"event_seq")? {
            Some(v) => codec::decode::<u64>("event_seq", &v)?,
            None => 0,
        };
        let blobs = blobs::Blobs::open(data_dir)?;
        let archive_dir = data_dir.join("events");
        let segments = archive::open(&archive_dir)?;
        let files = Arc::new(commit::SledFiles::open(&db_dir)?);
        let commit = commit::GroupCommit::start(db.clone(), files.clone());
        let store = Store(Arc::new(Inner {
            db,
            files,
            t,
            cfg,
            blobs,
            commit,
            feed: events::Feed::new(last_event),
            archive: RwLock::new(segments),
            archive_dir,
            archiver_pass: Mutex::new(()),
            archiver_stop: Default::default(),
            writer: Mutex::new(WriterState {
                last_event,
                last_nonce_gc: 0,
            }),
            blob_lock: Mutex::new(()),
            pins: Mutex::new(snapshot::Pins::default()),
        }));
        let ready = (|| {
            store.migrate(found)?;
            store.sweep_orphans()?;
            store.finish_archiving()?;
            store.index_user_events()?;
            store.index_public_events()?;
            store.hash_cookie_secrets()
        })();
        if let Err(e) = ready {
            // Let go of the database, so that this process can open it again (a retry,
            // `check`) once sled's own threads have.
            store.0.commit.stop();
            return Err(e);
        }
        store.start_archiver();
        Ok(store)
    }

    /// Removes blob files no entry references (left by a crash between placing a file and
    /// committing, or between committing a delete and unlinking).
    fn sweep_orphans(&self) -> Result<(), StoreError> {
        let mut removed = 0;
        for hash in self.0.blobs.all()? {
            if !self.0.t.blob_refs.contains_key(hash)? {
                self.0.blobs.remove(&hash)?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "orphan blob files swept");
        }
        Ok(())
    }
}

//! Group commit: writers apply their transaction, take a ticket, and wait until a sled flush
//! that started after their ticket has completed. One flusher thread runs flushes back to
//! back while anyone waits, so concurrent writers share a flush instead of each paying one.
//!
//! A sled flush alone is not durable: sled 0.34 writes its log with `sync_file_range`,
//! which neither commits the file's metadata (the blocks a growing log was given) nor
//! flushes the disk's write cache, and it writes items too large for a log segment to files
//! of their own without syncing them. Power cuts in an emulated machine lost acknowledged
//! writes that way. So each flush is followed by [`SledFiles::sync`]: `fdatasync` of the
//! log, `fsync` of each new item file and of their directory.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use event_listener::Event;

use super::StoreError;

struct State {
    /// Highest ticket someone waits for.
    requested: u64,
    /// Every ticket ≤ this is durable.
    durable: u64,
    /// The last failed flush covered tickets ≤ this; their waiters get the error (as
    /// `DiskFull` when the disk was full).
    failed: Option<(u64, String, bool)>,
    stopping: bool,
}

struct Shared {
    issued: AtomicU64,
    state: Mutex<State>,
    wake_flusher: Condvar,
    done: Event,
}

pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The files of a sled database that its flush leaves unsynced.
pub struct SledFiles {
    log: File,
    blobs: PathBuf,
    /// Item files already synced, with the length they had then. sled writes an item
    /// file while it fills a log buffer, so a sync can catch one half-written; it is
    /// synced again once its length has changed. sled never rewrites a finished one
    /// (names are log positions), and the flush covering the log message that points to
    /// an item starts after the item was written, so the sync after it sees the final
    /// length.
    synced: Mutex<HashMap<OsString, u64>>,
}

impl SledFiles {
    /// `db_dir` is the directory sled was opened on (`<data>/db`). Also makes sled's own
    /// creation of the database durable: sled writes `conf` without a sync, and a power
    /// cut in the first seconds of a new store could leave it empty, which sled then
    /// refuses to open ("corrupted data").
    pub fn open(db_dir: &Path) -> std::io::Result<SledFiles> {
        File::open(db_dir.join("conf"))?.sync_all()?;
        File::open(db_dir)?.sync_all()?;
        if let Some(parent) = db_dir.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(SledFiles {
            log: File::open(db_dir.join("db"))?,
            blobs: db_dir.join("blobs"),
            synced: Mutex::new(HashMap::new()),
        })
    }

    /// Makes what the last sled flush wrote durable. Returns how many item files it synced.
    pub fn sync(&self) -> std::io::Result<usize> {
        self.log.sync_data()?;
        let mut synced = lock(&self.synced);
        let mut present = HashMap::new();
        let mut new_files = false;
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut count = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let len = match entry.metadata() {
                Ok(m) => m.len(),
                // removed by sled's own cleanup since the listing
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let before = synced.get(&name).copied();
            if before != Some(len) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_all()?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                count += 1;
                new_files |= before.is_none();
            }
            present.insert(name, len);
        }
        if new_files {
            File::open(&self.blobs)?.sync_all()?;
        }
        *synced = present;
        Ok(count)
    }
}

impl GroupCommit {
    pub fn start(db: sled::Db, files: Arc<SledFiles>) -> GroupCommit {
        let shared = Arc::new(Shared {
            issued: AtomicU64::new(0),
            state: Mutex::new(State {
                requested: 0,
                durable: 0,
                failed: None,
                stopping: false,
            }),
            wake_flusher: Condvar::new(),
            done: Event::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || flusher(s, db, files))
            // Invariant: spawning one thread at start-up only fails when the OS is out of
            // resources, where the store cannot work anyway.
            .expect("spawn the flusher thread");
        GroupCommit {
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Call after a transaction has been applied: the returned ticket is covered by the
    /// next flush that starts.
    pub fn ticket(&self) -> u64 {
        self.shared.issued.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Waits until `ticket` is durable.
    pub async fn wait(&self, ticket: u64) -> Result<(), StoreError> {
        loop {
            let listener = self.shared.done.listen();
            {
                let mut st = lock(&self.shared.state);
                if st.durable >= ticket {
                    return Ok(());
                }
                if let Some((upto, msg, disk_full)) = &st.failed {
                    if *upto >= ticket {
                        if *disk_full {
                            return Err(StoreError::DiskFull);
                        }
                        return Err(StoreError::Io(std::io::Error::other(format!(
                            "flush failed: {msg}"
                        ))));
                    }
                }
                if st.requested < ticket {
                    st.requested = ticket;
                    self.shared.wake_flusher.notify_one();
                }
            }
            listener.await;
        }
    }

    /// Flushes whatever is pending and stops the thread.
    pub fn stop(&self) {
        {
            let mut st = lock(&self.shared.state);
            st.stopping = true;
            st.requested = self.shared.issued.load(Ordering::SeqCst);
            self.shared.wake_flusher.notify_one();
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain counters behind, which stay valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn flusher(s: Arc<Shared>, db: sled::Db, files: Arc<SledFiles>) {
    loop {
        {
            let mut st = lock(&s.state);
            while st.durable >= st.requested && !st.stopping {
                st = s.wake_flusher.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.stopping && st.durable >= st.requested {
                return;
            }
        }
        // Every ticket issued so far belongs to a transaction that is already applied.
        let target = s.issued.load(Ordering::SeqCst);
        let result = db
            .flush()
            .map_err(StoreError::from)
            .and_then(|_| files.sync().map(drop).map_err(StoreError::from));
        {
            let mut st = lock(&s.state);
            match result {
                Ok(()) => {
                    st.durable = st.durable.max(target);
                    st.failed = None;
                }
                Err(e) => {
                    tracing::error!("store flush failed: {e}");
                    let disk_full = matches!(e, StoreError::DiskFull);
                    st.failed = Some((target, e.to_string(), disk_full));
                }
            }
        }
        s.done.notify(usize::MAX);
        let failed = lock(&s.state)
            .failed
            .as_ref()
            .is_some_and(|(t, _, _)| *t == target);
        if failed {
            // Waiters covered by the failure got their error; retry later, not in a spin.
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SledFiles;
    use std::io::Write;

    /// sled can still be writing an item file when a sync lists it: that file must be
    /// synced again once it has grown, or its tail is not durable (a power-cut simulation
    /// caught exactly this, with sled's recovery then dropping or tearing later
    /// transactions).
    #[test]
    fn an_item_file_caught_half_written_is_synced_again() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        std::fs::create_dir_all(db.join("blobs")).unwrap();
        std::fs::write(db.join("conf"), b"segment_size: 524288\n").unwrap();
        std::fs::write(db.join("db"), b"").unwrap();
        let files = SledFiles::open(&db).unwrap();
        assert_eq!(files.sync().unwrap(), 0);

        let item = db.join("blobs").join("4096");
        let mut f = std::fs::File::create(&item).unwrap();
        f.write_all(b"crc!k").unwrap();
        assert_eq!(files.sync().unwrap(), 1, "a new item file is synced");
        assert_eq!(
            files.sync().unwrap(),
            0,
            "an unchanged one is not synced twice"
        );
        f.write_all(&[7; 100_000]).unwrap();
        assert_eq!(files.sync().unwrap(), 1, "a grown one is synced again");
        assert_eq!(files.sync().unwrap(), 0);

        std::fs::remove_file(&item).unwrap();
        assert_eq!(files.sync().unwrap(), 0, "a removed one is forgotten");
    }

    #[test]
    fn opening_needs_the_files_sled_creates() {
        let tmp = tempfile::tempdir().unwrap();
        let err = SledFiles::open(&tmp.path().join("db"))
            .err()
            .expect("no conf");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}

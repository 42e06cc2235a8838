//! sled's database as every path that opens one needs it (`Store::open`, a restore's load,
//! `rebuild`'s copy and `compact`): opened under its lock, with a replay panic made an
//! error, and the store format it records.

use std::path::Path;
use std::time::Duration;

use super::{codec, recovery, StoreError, FORMAT};

/// How long `Store::open` waits for a database lock held by someone else. A store closed
/// in this process releases its lock only when sled's own background threads let go of the
/// database, a moment after `close` returns (a restore reopens right away); a server that
/// runs holds it for good.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Opens the database with `open`, trying again while its lock is held, up to `LOCK_WAIT`.
fn open_waiting_for_lock<T>(
    db_dir: &Path,
    mut open: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match open() {
            // sled reports a held lock as a plain I/O error with this text.
            Err(StoreError::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::InUse(db_dir.to_path_buf()));
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// sled's database in `db_dir`, waiting for its lock (`LOCK_WAIT`), a replay panic made
/// an error (`recovery`).
pub(super) fn open_database(
    db_dir: &Path,
    cache_capacity: u64,
    flush_every: Option<u64>,
) -> Result<sled::Db, StoreError> {
    open_waiting_for_lock(db_dir, || {
        let sled_cfg = sled::Config::new()
            .path(db_dir)
            .cache_capacity(cache_capacity)
            .flush_every_ms(flush_every);
        recovery::open_db(db_dir, || sled_cfg.open())
    })
}

/// The format recorded in `meta` (format 1 when none is: written before formats were
/// recorded); a newer one than this version reads is an error.
pub(super) fn stored_format(meta: &sled::Tree) -> Result<u32, StoreError> {
    let found = match meta.get(b"store_format")? {
        Some(v) => codec::decode::<u32>("store_format", &v)?,
        None => 1,
    };
    if found > FORMAT {
        return Err(StoreError::NewerFormat { found });
    }
    Ok(found)
}

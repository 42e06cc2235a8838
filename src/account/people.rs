//! What the owner does to the household's accounts beyond the admin API's single calls:
//! when someone was last active, and deleting everything a person stored (each file as an
//! ordinary delete, so quota usage, events and blob references stay right).

use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;
use crate::store::{ListOptions, Scan, Store, StoreError};

/// When `user` last wrote or deleted anything (µs since the epoch), from their newest event.
pub fn last_activity(store: &Store, user: &PublicKey) -> Result<Option<u64>, StoreError> {
    let scan = Scan {
        cursor: None,
        reverse: true,
        limit: 1,
    };
    let page = store.scan_user_events(user, scan, |_| true)?;
    Ok(page.events.first().map(|(_, e)| e.created_at))
}

/// Deletes every file of `user` under `/pub/` and `/priv/`; returns how many.
pub async fn delete_data(store: &Store, user: &PublicKey, now_us: u64) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for top in ["/pub/", "/priv/"] {
        let dir = StoragePath::strict(top).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        loop {
            let opts = ListOptions {
                limit: 256,
                cursor: None,
                reverse: false,
                shallow: false,
            };
            let paths = match store.list(user, &dir, &opts) {
                Ok(p) => p,
                Err(StoreError::NotFound) => break,
                Err(e) => return Err(e),
            };
            if paths.is_empty() {
                break;
            }
            for p in paths {
                let path =
                    StoragePath::strict(&p).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                match store.delete(user, &path, now_us).await {
                    Ok(()) => deleted += 1,
                    Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if deleted > 0 {
        tracing::info!(user = %user, files = deleted, "the owner deleted a person's data");
    }
    Ok(deleted)
}

//! Comparing a standby's store with its primary's.

use pubky_edge::pubkey::PublicKey;
use pubky_edge::storage_path::StoragePath;
use pubky_edge::store::{EventRecord, ListOptions, Store};

/// Everything a standby must hold the same as its primary.
#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Account, disabled, quota usage.
    pub users: Vec<(PublicKey, bool, u64)>,
    /// Account, path, hash, length, content type.
    pub files: Vec<(PublicKey, String, [u8; 32], u64, String)>,
    pub events: Vec<(u64, EventRecord)>,
}

pub fn fingerprint(store: &Store) -> Fingerprint {
    let mut users = Vec::new();
    let mut files = Vec::new();
    let root = StoragePath::strict("/").unwrap();
    let all = ListOptions {
        limit: usize::MAX,
        cursor: None,
        reverse: false,
        shallow: false,
    };
    for (pk, u) in store.users().unwrap() {
        users.push((pk, u.disabled, u.used_bytes));
        for path in store.list(&pk, &root, &all).unwrap_or_default() {
            let p = StoragePath::strict(&path).unwrap();
            let m = store.entry(&pk, &p).unwrap().unwrap();
            files.push((pk, path, m.hash, m.len, m.content_type));
        }
    }
    let events = store.events_after(0, usize::MAX).unwrap();
    Fingerprint {
        users,
        files,
        events,
    }
}

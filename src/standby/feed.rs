//! What the primary gives its standby: a batch of the log with the files the primary
//! still holds for it. Every event, private paths included: the standby is this
//! homeserver's own copy. No HTTP types here; `http::standby` carries it.

use crate::storage_path::StoragePath;
use crate::store::{Content, EventKind, Store, StoreError};

use super::wire::{Batch, WireEvent, MAX_BATCH, MAX_BATCH_BYTES};

/// Events after `after` (at most `limit`, only durable ones), each PUT with its file when
/// the path still holds that PUT's body. Blocking: call it off the async threads.
pub fn batch(store: &Store, after: u64, limit: usize) -> Result<Batch, StoreError> {
    let head = store.event_head();
    let limit = limit.clamp(1, MAX_BATCH);
    let mut events = Vec::new();
    let mut bytes = 0usize;
    for (id, event) in store.events_after(after, limit)? {
        if id > head {
            break;
        }
        let mut file = None;
        if event.kind == EventKind::Put {
            let path = StoragePath::strict(&event.path)
                .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))?;
            if let Some((meta, content)) = store.read(&event.user, &path)? {
                if Some(meta.hash) == event.hash {
                    let inline = match content {
                        Content::Inline(b) => Some(b.to_vec()),
                        Content::File(_) => None,
                    };
                    bytes += inline.as_ref().map_or(0, Vec::len);
                    file = Some((meta, inline));
                }
            }
        }
        events.push(WireEvent { id, event, file });
        if bytes >= MAX_BATCH_BYTES {
            break;
        }
    }
    Ok(Batch { head, events })
}

/// The blob file of `hash` (hex), if this store holds it.
pub fn blob(store: &Store, hex: &str) -> Option<(std::fs::File, u64)> {
    let hash = crate::store::hash_from_hex(hex)?;
    let f = store.open_blob(&hash).ok()?;
    let len = f.metadata().ok()?.len();
    Some((f, len))
}

/// The tables and their ETag (a BLAKE3 of the bytes, quoted).
pub fn tables(store: &Store) -> Result<(Vec<u8>, String), StoreError> {
    let dump = store.dump_tables()?;
    let tag = format!("\"{}\"", blake3::hash(&dump).to_hex());
    Ok((dump, tag))
}

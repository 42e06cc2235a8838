//! The store: the only owner of disk state. Metadata, small bodies, events, accounts and
//! sessions live in one sled database; bodies larger than `inline_max` are BLAKE3-addressed
//! files. All writes go through one writer lock and one multi-tree transaction, and are
//! acknowledged after the group flush that covers them (`commit`).
//!
//! | tree            | key                               | value (versioned postcard) |
//! |-----------------|-----------------------------------|----------------------------|
//! | `entries`       | user (32 B) ‖ path (UTF-8)        | [`EntryMeta`], then the raw body if inline |
//! | `content`       | user ‖ path                       | format 1's inline bodies; empty once migrated |
//! | `users`         | user (32 B)                       | [`User`]                   |
//! | `blob_refs`     | BLAKE3 hash (32 B)                | u64 reference count        |
//! | `events`        | event id (u64 big-endian)         | [`EventRecord`]            |
//! | `user_events`   | user ‖ event id                   | empty (per-user event index) |
//! | `pub_events`    | event id, for `/pub/` paths       | empty (public feed index)  |
//! | `meta`          | `event_seq`                       | u64 last event id          |
//! |                 | `store_format`                    | u32 [`FORMAT`] that wrote it |
//! |                 | `pub_events_indexed`              | empty: `pub_events` is complete |
//! | `grants`        | grant id (UTF-8)                  | [`GrantRecord`]            |
//! | `user_grants`   | user ‖ grant id                   | empty                      |
//! | `sessions`      | SHA-256 of the bearer (32 B)      | [`SessionRecord`]          |
//! | `nonces`        | PoP nonce (UTF-8)                 | u64 issued-at seconds      |
//! | `signup_tokens` | token (UTF-8)                     | [`SignupToken`]            |
//! | `cookie_sessions` | SHA-256 of the cookie secret    | [`CookieSession`]          |
//! | `user_quotas`   | user (32 B)                       | [`QuotaOverrides`] (admin-set) |
//! | `token_quotas`  | signup token (UTF-8)              | [`QuotaOverrides`] for its redeemer |
//!
//! `events`, `user_events` and `pub_events` hold only the newest events: older ones move to
//! sealed segment files (`archive`), read back by the same scans.
//!
//! Files: `<data>/db/` (sled; `db.new`, `db.old` and `db.new-ready` only while `rebuild`
//! swaps in a copy), `<data>/events/<first id>.seg` (archived events),
//! `<data>/blobs/xx/<hex>` (large bodies), `<data>/tmp/` (uploads in progress, cleared at
//! open).

mod accounts;
mod archive;
mod archiver;
mod blobs;
mod check;
pub mod codec;
mod commit;
mod cookies;
mod database;
mod entries;
mod events;
mod keys;
mod list;
mod migrate;
mod open;
mod quotas;
mod rebuild;
pub mod recovery;
mod replica;
pub mod snapshot;
pub mod space;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};

pub use blobs::{blob_path, from_hex as hash_from_hex, to_hex, Staged, Upload};
pub use check::CheckReport;
pub use cookies::{CookieSession, COOKIE_LIFETIME_SECS};
pub use events::{Page, Scan, Wake, SCAN_BUDGET};
pub use quotas::{Limit, QuotaOverrides};
pub use rebuild::Rebuilt;
pub use replica::{ReplicaBody, Replicated, TABLES};
pub use snapshot::Snapshot;

use crate::pubkey::PublicKey;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub cache_capacity_bytes: u64,
    pub inline_max: usize,
    pub durability: Durability,
    pub default_quota_bytes: Option<u64>,
}

/// When a write is acknowledged; the config names it (`storage.durability`).
pub use crate::config::Durability;

/// How often relaxed mode flushes: at most this much acknowledged work is lost to a power
/// cut (what `storage.durability = "relaxed"` promises).
pub const RELAXED_FLUSH_MS: u64 = 1000;

/// The on-disk format this version reads and writes. A store written in a newer format is
/// refused at open (no downgrade across a format change); release manifests carry it, and
/// an update that changes it is not installed by itself.
///
/// 1: inline bodies under their own key in `content`. 2: inline bodies in the entry's
/// value (`migrate` moves them at open).
pub const FORMAT: u32 = 2;

#[derive(Debug)]
pub enum StoreError {
    Io(std::io::Error),
    Db(String),
    Corrupt(String),
    NotFound,
    Collision,
    QuotaExceeded,
    UserExists,
    UserNotFound,
    TokenUnknown,
    TokenUsed,
    GrantRevoked,
    /// A grant with this id is stored for another user or client key.
    GrantConflict,
    GrantExpired,
    DiskFull,
    /// The database cannot be opened (its log could not be replayed).
    Unrecoverable(String),
    /// Written in a newer format than this version knows (`found`).
    NewerFormat {
        found: u32,
    },
    /// Another holder kept the database's lock for longer than `LOCK_WAIT` (a running
    /// server, or a tool working on the same data directory).
    InUse(PathBuf),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "I/O error: {e}"),
            StoreError::Db(e) => write!(f, "database error: {e}"),
            StoreError::Corrupt(e) => write!(f, "corrupt stored value: {e}"),
            StoreError::NotFound => f.write_str("not found"),
            StoreError::Collision => f.write_str("file/folder path collision"),
            StoreError::QuotaExceeded => f.write_str("quota exceeded"),
            StoreError::UserExists => f.write_str("user already exists"),
            StoreError::UserNotFound => f.write_str("user not found"),
            StoreError::TokenUnknown => f.write_str("unknown signup token"),
            StoreError::TokenUsed => f.write_str("signup token already used"),
            StoreError::GrantRevoked => f.write_str("grant has been revoked"),
            StoreError::GrantConflict => f.write_str("grant id belongs to another grant"),
            StoreError::GrantExpired => f.write_str("grant has expired"),
            StoreError::DiskFull => f.write_str("disk full"),
            StoreError::Unrecoverable(e) => f.write_str(e),
            StoreError::NewerFormat { found } => write!(
                f,
                "the store is in format {found}, written by a newer pubky-edge; this version \
                 reads format {FORMAT}: run the newer version, or restore the backup made \
                 before the update (`pubky-edge backup restore`)"
            ),
            StoreError::InUse(db) => write!(
                f,
                "the database {} is in use by another process (is the server running?)",
                db.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            StoreError::DiskFull
        } else {
            StoreError::Io(e)
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => io.into(),
            sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Db(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    pub hash: [u8; 32],
    pub len: u64,
    pub content_type: String,
    /// µs since the epoch
    pub created_at: u64,
    /// µs since the epoch
    pub modified_at: u64,
    /// The body follows this metadata in the entry's value (else it is a blob file).
    pub inline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// seconds since the epoch
    pub created_at: u64,
    pub disabled: bool,
    /// Per-user override of the default quota.
    pub quota_bytes: Option<u64>,
    pub used_bytes: u64,
    pub signup_token: Option<String>,
}

/// A stored body, ready to be sent.
pub enum Content {
    Inline(bytes::Bytes),
    File(std::fs::File),
}

#[derive(Debug, Clone)]
pub struct ListOptions {
    pub limit: usize,
    /// A canonical path; exclusive.
    pub cursor: Option<String>,
    pub reverse: bool,
    pub shallow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Del,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub user: PublicKey,
    pub path: String,
    pub kind: EventKind,
    pub hash: Option<[u8; 32]>,
    /// µs since the epoch
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub id: String,
    pub user: PublicKey,
    pub client_id: String,
    pub caps: Vec<String>,
    pub cnf: PublicKey,
    pub issued_at: u64,
    pub expires_at: u64,
    /// When this homeserver first stored the grant (seconds).
    pub created_at: u64,
    pub revoked: bool,
    /// The grant's current bearer session, if any.
    pub bearer_hash: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub grant_id: String,
    pub user: PublicKey,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupToken {
    pub created_at: u64,
    pub used_by: Option<PublicKey>,
}

struct Trees {
    entries: sled::Tree,
    content: sled::Tree,
    users: sled::Tree,
    blob_refs: sled::Tree,
    events: sled::Tree,
    user_events: sled::Tree,
    pub_events: sled::Tree,
    meta: sled::Tree,
    grants: sled::Tree,
    user_grants: sled::Tree,
    sessions: sled::Tree,
    nonces: sled::Tree,
    signup_tokens: sled::Tree,
    cookie_sessions: sled::Tree,
    user_quotas: sled::Tree,
    token_quotas: sled::Tree,
}

struct Inner {
    db: sled::Db,
    /// What a sled flush leaves unsynced; synced after each flush (see `commit`).
    files: Arc<commit::SledFiles>,
    t: Trees,
    cfg: StoreConfig,
    blobs: blobs::Blobs,
    commit: commit::GroupCommit,
    /// Published end of the event log; wakes live subscribers.
    feed: events::Feed,
    /// Sealed segments of older events (`<data>/events/`), oldest first; see `archive`.
    archive: RwLock<Vec<archive::Segment>>,
    archive_dir: PathBuf,
    /// Held by a pass of the archiver; `close` sets `archiver_stop` and waits for it.
    archiver_pass: Mutex<()>,
    archiver_stop: std::sync::atomic::AtomicBool,
    /// Serialises all metadata writes (each is one short transaction).
    writer: Mutex<WriterState>,
    /// Held from placing a blob file until its refcount is committed, and by unlinkers
    /// while they re-check a zero count.
    blob_lock: Mutex<()>,
    /// Blob unlinks held back while a snapshot exists (see `snapshot`).
    pins: Mutex<snapshot::Pins>,
}

/// The trees one file write (PUT, DELETE or a replicated event) changes in its
/// transaction: entries, blob_refs, events, meta, users, user_events, pub_events.
type FileTrees<'a> = (
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
);

impl Trees {
    fn of_a_file_write(&self) -> FileTrees<'_> {
        (
            &self.entries,
            &self.blob_refs,
            &self.events,
            &self.meta,
            &self.users,
            &self.user_events,
            &self.pub_events,
        )
    }
}

struct WriterState {
    last_event: u64,
    last_nonce_gc: u64,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store(Arc<Inner>);

impl Store {
    /// Final flush; stops the flusher thread.
    pub async fn close(&self) -> Result<(), StoreError> {
        let inner = self.0.clone();
        smol::unblock(move || {
            Store(inner.clone()).stop_archiver();
            inner.commit.stop();
            Store(inner).flush_durably()
        })
        .await
    }

    /// A sled flush made durable (see `commit`), outside the group committer.
    fn flush_durably(&self) -> Result<(), StoreError> {
        self.0.db.flush()?;
        self.0.files.sync()?;
        Ok(())
    }

    pub fn upload(&self) -> Upload {
        Upload::new(self.0.blobs.tmp.clone(), self.0.cfg.inline_max)
    }

    fn writer(&self) -> MutexGuard<'_, WriterState> {
        // The guarded state is two counters that stay valid after a panic elsewhere.
        self.0.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for `ticket` to be durable (not in relaxed mode).
    async fn durable(&self, ticket: u64) -> Result<(), StoreError> {
        match self.0.cfg.durability {
            Durability::Strict => self.0.commit.wait(ticket).await,
            Durability::Relaxed => Ok(()),
        }
    }
}

/// Turns a sled transaction error into ours.
fn tx_err(e: sled::transaction::TransactionError<StoreError>) -> StoreError {
    match e {
        sled::transaction::TransactionError::Abort(e) => e,
        sled::transaction::TransactionError::Storage(e) => e.into(),
    }
}

//! What the two boxes send each other, under `/standby/v1/` on the primary's client
//! listeners (PubkyTLS, so the standby checks it reached the homeserver key):
//!
//! | request | answer |
//! |---|---|
//! | `POST pair` (JSON [`PairRequest`], no token) | JSON [`PairReply`] |
//! | `GET events?after=N&limit=L&wait_ms=W` | postcard [`Batch`]: events after `N`, waiting up to `W` for one |
//! | `GET blob/<hex>` | the blob file |
//! | `GET tables` (`If-None-Match`) | the tables as dump frames (`store::TABLES`), ETag its BLAKE3 |
//! | `GET snapshot` | the whole store as a dump (the backup's format), `x-event-seq` |
//!
//! Every request but `pair` carries `Authorization: Bearer <replication token>`.

use serde::{Deserialize, Serialize};

use crate::store::{EntryMeta, EventRecord};

pub const PREFIX: &str = "/standby/v1/";

/// Most events in one batch.
pub const MAX_BATCH: usize = 1000;
/// Inline bodies in one batch stop being added past this many bytes.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Longest a `wait_ms` may hold a request open.
pub const MAX_WAIT_MS: u64 = 25_000;

#[derive(Debug, Serialize, Deserialize)]
pub struct PairRequest {
    /// The secret half of the pairing code.
    pub code: String,
    /// The standby's own age X25519 recipient (`age1…`): the homeserver key is sealed to it.
    pub recipient: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PairReply {
    /// The replication token (bearer) for every later request.
    pub token: String,
    /// Whether the owner allowed this standby to take over.
    pub takeover: bool,
    /// The homeserver's secret key, age-encrypted to the standby's recipient (base64), when
    /// takeover is allowed.
    pub sealed_key: Option<String>,
}

/// Events after the standby's position, with the files the primary still holds for them.
#[derive(Debug, Serialize, Deserialize)]
pub struct Batch {
    /// The primary's last durable event when the batch was read (for the lag).
    pub head: u64,
    pub events: Vec<WireEvent>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireEvent {
    pub id: u64,
    pub event: EventRecord,
    /// For a PUT whose body is still the path's: the entry, and its body when inline (a
    /// blob is fetched by hash, unless the standby has it).
    pub file: Option<(EntryMeta, Option<Vec<u8>>)>,
}

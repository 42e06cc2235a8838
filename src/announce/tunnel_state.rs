//! What each side of the relay rung reports, in the data directory, for `pubky-edge
//! status`, the dashboard's verdict and the tests: the box's link ([`LinkState`]) and the
//! relay's boxes ([`RelayState`]). The workers are in `crate::tunnel`.

use serde::{Deserialize, Serialize};

/// The box side's report.
pub const LINK_FILE: &str = "tunnel-link.json";
/// The relay side's report.
pub const RELAY_FILE: &str = "tunnel-relay.json";

/// What the box knows of its link to the relay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LinkState {
    /// `<relay key>@<ip>:<port>`, as configured.
    pub relay: String,
    /// "connected", "connecting" or "waiting" (to retry).
    pub state: String,
    /// The relay endpoint the record announces (`ip:port`), once the relay has answered.
    pub published: Option<String>,
    /// When the state last changed (seconds since the epoch).
    pub since_secs: u64,
    /// Why the last link ended or failed.
    pub last_error: Option<String>,
    /// Links made since start.
    pub links: u64,
    /// Client connections that came through the relay since start.
    pub forwarded: u64,
    /// Whether the record announces the relay now (else this box's own address).
    pub in_record: bool,
    /// The last connect-back: whether the relay reached this box at its own address…
    pub direct_ok: Option<bool>,
    /// …where (`ip:port`) or why not…
    pub direct: Option<String>,
    /// …and when (seconds since the epoch).
    pub checked_secs: u64,
}

/// What a relay knows of one box it serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServedState {
    pub key: String,
    pub port: u16,
    pub connected: bool,
    /// Where the box's link comes from, while connected.
    pub from: Option<String>,
    /// When the box last connected or went away (seconds since the epoch).
    pub since_secs: u64,
    /// Client connections being forwarded now.
    pub open: usize,
    /// Client connections forwarded since start.
    pub forwarded: u64,
    /// Bytes forwarded since start, both directions.
    pub bytes: u64,
    /// Client connections turned away since start (box not connected, or at its cap).
    pub refused: u64,
}

/// The relay side's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RelayState {
    /// Where boxes connect.
    pub listen: String,
    pub boxes: Vec<ServedState>,
}

impl LinkState {
    pub fn load(data_dir: &std::path::Path) -> Option<LinkState> {
        super::worker::load_json(data_dir, LINK_FILE)
    }

    pub fn connected(&self) -> bool {
        self.state == "connected"
    }
}

impl RelayState {
    pub fn load(data_dir: &std::path::Path) -> Option<RelayState> {
        super::worker::load_json(data_dir, RELAY_FILE)
    }
}

//! What a standby keeps about its primary: `<data>/standby/follow.json` (which primary,
//! the replication token, the sealed homeserver key), its own age key (`standby/key.txt`,
//! to open the sealed key at promotion), and what the follower last saw
//! (`follow-status.json`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use super::role::DIR;
use crate::pubkey::PublicKey;

const FILE: &str = "follow.json";
const KEY_FILE: &str = "key.txt";
pub(super) const STATUS_FILE: &str = "follow-status.json";

/// Which primary this box follows, written at pairing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Follow {
    pub primary: String,
    /// The primary's PubkyTLS address, when given at pairing (else found on the DHT).
    pub at: Option<SocketAddr>,
    pub token: String,
    pub takeover: bool,
    /// The homeserver key sealed to `key.txt` (base64 age), when takeover is allowed.
    pub sealed_key: Option<String>,
    /// The first full copy is complete.
    pub copied: bool,
    /// This box became the homeserver (`standby promote`).
    pub promoted: bool,
    pub paired_at: u64,
}

impl Follow {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(DIR).join(FILE)
    }

    pub fn load(data_dir: &Path) -> Option<Follow> {
        serde_json::from_slice(&std::fs::read(Self::path(data_dir)).ok()?).ok()
    }

    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = Self::path(data_dir);
        std::fs::create_dir_all(path.parent().context("standby directory")?)?;
        // Invariant: strings, numbers and an address always serialize.
        let text = serde_json::to_vec_pretty(self).expect("follow state serializes");
        crate::backup::write_private(&path, &text)
    }

    pub fn primary_key(&self) -> Result<PublicKey> {
        PublicKey::parse_z32(&self.primary).map_err(|_| anyhow!("follow.json: bad primary key"))
    }
}

/// This box's own age key (made at pairing): the sealed homeserver key opens with it.
pub fn own_key(data_dir: &Path) -> Result<age::x25519::Identity> {
    use std::str::FromStr;
    let path = data_dir.join(DIR).join(KEY_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    age::x25519::Identity::from_str(text.trim()).map_err(|e| anyhow!("{}: {e}", path.display()))
}

pub(super) fn make_own_key(data_dir: &Path) -> Result<age::x25519::Identity> {
    use age::secrecy::ExposeSecret;
    if let Ok(k) = own_key(data_dir) {
        return Ok(k);
    }
    let id = age::x25519::Identity::generate();
    let path = data_dir.join(DIR).join(KEY_FILE);
    std::fs::create_dir_all(path.parent().context("standby directory")?)?;
    crate::backup::write_private(&path, id.to_string().expose_secret().as_bytes())?;
    Ok(id)
}

/// What the follower last saw, for `standby status`, the dashboard and the metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FollowStatus {
    /// The primary's last event at the last contact.
    pub primary_head: u64,
    /// This box's last event.
    pub local_head: u64,
    /// When this box last held everything the primary had (seconds; 0: not yet).
    pub caught_up_at: u64,
    pub last_contact: u64,
    pub last_error: Option<String>,
}

impl FollowStatus {
    pub fn load(data_dir: &Path) -> Option<FollowStatus> {
        crate::announce::worker::load_json(&data_dir.join(DIR), STATUS_FILE)
    }

    pub fn lag_events(&self) -> u64 {
        self.primary_head.saturating_sub(self.local_head)
    }

    /// Seconds since this box last held everything the primary had (0 when it does now).
    pub fn lag_seconds(&self, now: u64) -> u64 {
        if self.lag_events() == 0 {
            0
        } else {
            now.saturating_sub(self.caught_up_at)
        }
    }
}

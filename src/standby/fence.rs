//! Standing down when another box took over (taking over is `promote`). [`Guard`]: a primary that paired a standby allowed to take over looks at its own
//! record before every publish and every `standby.check_interval`, and a record newer than
//! the last one it signed means the standby took over. It then fences itself
//! (`standby/fenced.json`): it refuses writes, stops publishing, and lists the events it
//! accepted that the standby had not confirmed reading; they stay in its store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::pairing::Pairing;
use super::role::{Mode, Role, DIR};
use crate::announce::dht::DhtClient;
use crate::pubkey::PublicKey;
use crate::store::{EventKind, Store};

const FILE: &str = "fenced.json";
/// Most unconfirmed events listed one by one in `fenced.json` (all are counted).
const MAX_LISTED: usize = 10_000;

/// Why and since when this box refuses writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fenced {
    pub since: u64,
    /// The newer record of the homeserver key: its timestamp (µs) and the address it names.
    pub record_timestamp_us: u64,
    pub record_points_to: Option<String>,
    /// The last event the standby had confirmed holding.
    pub standby_position: u64,
    /// Events this box accepted after that: the new homeserver may not have them.
    pub unconfirmed: Vec<Unconfirmed>,
    pub unconfirmed_total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unconfirmed {
    pub id: u64,
    pub user: String,
    pub path: String,
    pub kind: String,
    /// µs since the epoch
    pub created_at: u64,
}

impl Fenced {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(DIR).join(FILE)
    }

    pub fn load(data_dir: &Path) -> Option<Fenced> {
        serde_json::from_slice(&std::fs::read(Self::path(data_dir)).ok()?).ok()
    }

    fn save(&self, data_dir: &Path) -> Result<()> {
        let path = Self::path(data_dir);
        std::fs::create_dir_all(path.parent().context("standby directory")?)?;
        // Invariant: strings and numbers always serialize.
        let text = serde_json::to_vec_pretty(self).expect("fence state serializes");
        crate::backup::write_private(&path, &text)
    }
}

/// The primary's watch over its own record (see the module docs).
pub struct Guard {
    pub key: PublicKey,
    pub dht: DhtClient,
    pub pairing: Arc<Pairing>,
    pub store: Store,
    pub role: Arc<Role>,
    pub data_dir: PathBuf,
    /// The timestamp of the newest record this box signed (µs).
    signed_us: AtomicU64,
}

impl Guard {
    pub fn new(
        key: PublicKey,
        dht: DhtClient,
        pairing: Arc<Pairing>,
        store: Store,
        role: Arc<Role>,
        data_dir: PathBuf,
    ) -> Guard {
        let signed = crate::announce::publisher::PublishStatus::load(&data_dir)
            .map_or(0, |s| s.packet_timestamp_us);
        Guard {
            key,
            dht,
            pairing,
            store,
            role,
            data_dir,
            signed_us: AtomicU64::new(signed),
        }
    }

    /// This box signed a record with this timestamp.
    pub fn signed(&self, timestamp_us: u64) {
        self.signed_us.fetch_max(timestamp_us, Ordering::SeqCst);
    }

    /// Whether this box may go on as the homeserver (publish, accept writes); fences it
    /// when the DHT holds a record of the key newer than any this box signed.
    pub async fn check(&self) -> bool {
        if self.role.get() == Mode::Fenced {
            return false;
        }
        if !self.pairing.standby().is_some_and(|s| s.takeover) {
            return true;
        }
        let Some(packet) = self.dht.get(&self.key).await else {
            return true;
        };
        let ts = packet.timestamp().as_u64();
        if ts <= self.signed_us.load(Ordering::SeqCst) {
            return true;
        }
        let (ip, port) = crate::announce::packet::direct_endpoint(&packet);
        let to = ip.map(|ip| match port {
            Some(p) => format!("{ip} port {p}"),
            None => ip.to_string(),
        });
        if let Err(e) = self.fence(ts, to) {
            tracing::error!(error = %format!("{e:#}"), "cannot write down the fence");
        }
        false
    }

    fn fence(&self, record_timestamp_us: u64, record_points_to: Option<String>) -> Result<()> {
        self.role.set(Mode::Fenced);
        self.pairing.flush();
        let position = self.pairing.standby().map_or(0, |s| s.position);
        let mut unconfirmed = Vec::new();
        let mut total = 0u64;
        let mut after = position;
        loop {
            let page = self.store.events_after(after, 1000)?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            for (id, e) in page {
                total += 1;
                if unconfirmed.len() < MAX_LISTED {
                    unconfirmed.push(Unconfirmed {
                        id,
                        user: e.user.to_string(),
                        path: e.path,
                        kind: match e.kind {
                            EventKind::Put => "PUT",
                            EventKind::Del => "DEL",
                        }
                        .into(),
                        created_at: e.created_at,
                    });
                }
            }
        }
        tracing::error!(
            newer_record_points_to = ?record_points_to,
            standby_position = position,
            unconfirmed = total,
            "another box took over as this homeserver: this box no longer accepts writes \
             nor publishes (see `pubky-edge standby status`)"
        );
        Fenced {
            since: crate::clock::now_secs(),
            record_timestamp_us,
            record_points_to,
            standby_position: position,
            unconfirmed,
            unconfirmed_total: total,
        }
        .save(&self.data_dir)
    }

    /// Checks every `interval` until fenced or shut down.
    pub async fn run(
        self: Arc<Self>,
        interval: std::time::Duration,
        shutdown: crate::runtime::shutdown::ShutdownSignal,
    ) {
        loop {
            let stop = shutdown.sleep(interval).await;
            if stop || !self.check().await {
                return;
            }
        }
    }
}

impl crate::announce::publisher::Gate for Guard {
    fn allows(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(self.check())
    }

    fn signed(&self, timestamp_us: u64) {
        Guard::signed(self, timestamp_us);
    }
}

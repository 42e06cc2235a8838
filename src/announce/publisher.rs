//! Keeps the homeserver's record on the DHT: publish at start, again every
//! `republish_interval`, at once when the public address changes, and with exponential
//! backoff after a failure. The same signed bytes are re-put until the address changes. The
//! outcome of the last attempt is logged and kept in `<data>/announce.json`, which
//! `pubky-edge info` reads.

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_listener::Event;
use pkarr::SignedPacket;
use serde::{Deserialize, Serialize};
use smol::future::FutureExt;

use super::address::PublicAddress;
use super::dht::DhtClient;
use super::packet::{homeserver_packet, RecordSpec};
use super::worker::backoff;
use crate::runtime::shutdown::ShutdownSignal;

pub const STATUS_FILE: &str = "announce.json";

/// What the last publish did; persisted as JSON for `pubky-edge info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishStatus {
    pub last_attempt_secs: u64,
    pub last_success_secs: Option<u64>,
    pub last_error: Option<String>,
    pub published_ip: Option<String>,
    pub pubky_tls_port: u16,
    pub stored_at_nodes: u32,
    pub packet_timestamp_us: u64,
    /// The address the DHT nodes saw the last publish come from (an independent view of
    /// the public address), and whether the DHT port is unreachable inbound.
    #[serde(default)]
    pub dht_seen_ip: Option<String>,
    #[serde(default)]
    pub dht_firewalled: Option<bool>,
    /// The IPv6 address announced beside `published_ip`, if any.
    #[serde(default)]
    pub published_ipv6: Option<String>,
}

/// The addresses and port a record is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signed {
    ip: IpAddr,
    ipv6: Option<Ipv6Addr>,
    port: u16,
}

impl PublishStatus {
    pub fn load(data_dir: &Path) -> Option<PublishStatus> {
        super::worker::load_json(data_dir, STATUS_FILE)
    }

    /// The address the DHT's nodes saw the last publish come from.
    pub fn dht_seen_addr(&self) -> Option<IpAddr> {
        self.dht_seen_ip.as_deref()?.parse().ok()
    }

    fn save(&self, data_dir: &Path) {
        // Best effort: the status is informational and rewritten on every attempt.
        super::worker::save_json(data_dir, STATUS_FILE, self);
    }
}

pub struct Publisher {
    pub seed: [u8; 32],
    /// Ports and domain; `public_ip` is replaced by the current [`PublicAddress`].
    pub spec: RecordSpec,
    pub address: Arc<PublicAddress>,
    /// Where the record goes: the DHT (if on) ...
    pub dht: Option<DhtClient>,
    /// ... and the device's own pkarr relay (if on), so LAN clients resolve the device
    /// through it even with the DHT off or unreachable.
    pub relay: Option<Arc<super::relay::Relay>>,
    pub data_dir: PathBuf,
    pub interval: Duration,
    pub retry_min: Duration,
    pub status: Arc<Mutex<PublishStatus>>,
    /// Notified after every attempt (tests and `info` wait on it).
    pub attempted: Arc<Event>,
    /// `pubky_edge_dht_last_publish_timestamp_seconds` follows successful publishes.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Asked before every publish (when a standby may take over: a newer record of this
    /// key means it did, and this box stops publishing).
    pub gate: Option<Arc<dyn Gate>>,
}

/// What a publisher asks before each publish (`crate::standby::fence::Guard`).
pub trait Gate: Send + Sync {
    /// Whether this box may publish; `false` ends the publisher for good.
    fn allows(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>;
    /// This box signed a record with this timestamp (µs).
    fn signed(&self, timestamp_us: u64);
}

impl Publisher {
    pub async fn run(self, shutdown: ShutdownSignal) {
        let mut packet: Option<SignedPacket> = None;
        // What the packet was signed with: re-signed only when this changes.
        let mut signed: Option<Signed> = None;
        let mut failures = 0u32;
        loop {
            let changed = self.address.changed();
            let port = self
                .address
                .pubky_tls_port()
                .unwrap_or(self.spec.pubky_tls_port);
            let ipv6 = self.address.ipv6_for(port);
            // Without an IPv4 address (none configured, the router named none), an open
            // IPv6 one is enough for a record.
            let ip = match self.address.get() {
                None if self.address.is_held() => None,
                ip => ip.or(ipv6.map(IpAddr::V6)),
            };
            let wait = match ip {
                None if self.address.is_held() => {
                    tracing::debug!("waiting for the router's external address before publishing");
                    self.interval
                }
                None => {
                    tracing::warn!("no public address known; the pkarr record is not published");
                    self.interval
                }
                Some(ip) => {
                    let now = Signed { ip, ipv6, port };
                    if signed != Some(now) || packet.is_none() {
                        packet = self.sign(now);
                        signed = Some(now);
                    }
                    if let (Some(gate), Some(p)) = (&self.gate, &packet) {
                        if !gate.allows().await {
                            self.attempted.notify(usize::MAX);
                            tracing::warn!("the homeserver record is no longer published here");
                            shutdown.wait().await;
                            return;
                        }
                        gate.signed(p.timestamp().as_u64());
                    }
                    match &packet {
                        Some(p) => {
                            if self.publish(p, now).await {
                                failures = 0;
                                self.interval
                            } else {
                                failures += 1;
                                backoff(failures, self.retry_min, self.interval)
                            }
                        }
                        None => self.interval,
                    }
                }
            };
            let stop = async {
                smol::Timer::after(wait).await;
                false
            }
            .or(async {
                changed.await;
                false
            })
            .or(async {
                shutdown.wait().await;
                true
            })
            .await;
            if stop {
                return;
            }
        }
    }

    fn sign(&self, with: Signed) -> Option<SignedPacket> {
        let spec = RecordSpec {
            public_ip: with.ip,
            public_ipv6: with.ipv6,
            pubky_tls_port: with.port,
            ..self.spec.clone()
        };
        match homeserver_packet(&self.seed, &spec, crate::clock::now_micros()) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("cannot build the pkarr record: {e}");
                None
            }
        }
    }

    async fn publish(&self, packet: &SignedPacket, with: Signed) -> bool {
        let Signed { ip, ipv6, port } = with;
        if let Some(relay) = &self.relay {
            relay.remember(packet);
        }
        let Some(dht) = &self.dht else {
            self.attempted.notify(usize::MAX);
            return true;
        };
        let result = dht.put(packet).await;
        let (seen, firewalled) = dht.view().await;
        let now = crate::clock::now_secs();
        let snapshot = {
            let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            st.last_attempt_secs = now;
            st.published_ip = Some(ip.to_string());
            st.published_ipv6 = ipv6
                .filter(|v6| IpAddr::V6(*v6) != ip)
                .map(|v6| v6.to_string());
            st.pubky_tls_port = port;
            st.packet_timestamp_us = packet.timestamp().as_u64();
            if let Some(seen) = seen {
                st.dht_seen_ip = Some(seen.ip().to_string());
                st.dht_firewalled = Some(firewalled);
            }
            match &result {
                Ok(n) => {
                    self.metrics.set_dht_last_publish(now);
                    st.last_success_secs = Some(now);
                    st.last_error = None;
                    st.stored_at_nodes = *n;
                }
                Err(e) => st.last_error = Some(e.to_string()),
            }
            st.clone()
        };
        snapshot.save(&self.data_dir);
        match &result {
            Ok(n) => {
                tracing::info!(%ip, ipv6 = ?ipv6, port, nodes = n, "published the homeserver record")
            }
            Err(e) => {
                tracing::warn!(%ip, error = %e, "publishing the homeserver record failed; will retry")
            }
        }
        self.attempted.notify(usize::MAX);
        result.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(PublishStatus::load(dir.path()).is_none());
        let st = PublishStatus {
            last_attempt_secs: 5,
            last_success_secs: Some(5),
            published_ip: Some("192.0.2.1".into()),
            pubky_tls_port: 6287,
            stored_at_nodes: 3,
            ..Default::default()
        };
        st.save(dir.path());
        assert_eq!(PublishStatus::load(dir.path()), Some(st));
    }
}

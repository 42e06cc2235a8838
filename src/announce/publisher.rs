//! Keeps the homeserver's record on the DHT: publish at start, again every
//! `republish_interval`, at once when the public address changes, and with exponential
//! backoff after a failure. The same signed bytes are re-put until the address changes. The
//! outcome of the last attempt is logged and kept in `<data>/announce.json`, which
//! `pubky-edge info` reads.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_listener::Event;
use pkarr::SignedPacket;
use serde::{Deserialize, Serialize};
use smol::future::FutureExt;

use super::dht::DhtClient;
use super::packet::{homeserver_packet, RecordSpec};
use crate::shutdown::ShutdownSignal;

pub const STATUS_FILE: &str = "announce.json";

/// The address the record announces. The configured value, or what the router reports
/// over UPnP, and the external PubkyTLS port when the router mapped a different one; every
/// change wakes the publisher. While *held* (the router is about to be asked) it reads as
/// unknown, so a LAN address is never published ahead of the router's answer.
#[derive(Debug, Default)]
pub struct PublicAddress {
    ip: Mutex<Option<IpAddr>>,
    pubky_tls_port: Mutex<Option<u16>>,
    held: AtomicBool,
    changed: Event,
}

impl PublicAddress {
    pub fn new(ip: Option<IpAddr>) -> Arc<PublicAddress> {
        Arc::new(PublicAddress {
            ip: Mutex::new(ip),
            pubky_tls_port: Mutex::new(None),
            held: AtomicBool::new(false),
            changed: Event::new(),
        })
    }

    /// The address to publish; `None` while unknown or held.
    pub fn get(&self) -> Option<IpAddr> {
        if self.is_held() {
            return None;
        }
        *self.ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the address (and releases a hold); the publisher republishes if it differs.
    pub fn set(&self, ip: IpAddr) {
        let mut cur = self.ip.lock().unwrap_or_else(|e| e.into_inner());
        let was_held = self.held.swap(false, Ordering::SeqCst);
        if *cur != Some(ip) || was_held {
            *cur = Some(ip);
            drop(cur);
            self.changed.notify(usize::MAX);
        }
    }

    /// Keeps the current address unpublished until [`set`](Self::set) or
    /// [`release`](Self::release).
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Ends a hold: the address known so far is published after all.
    pub fn release(&self) {
        if self.held.swap(false, Ordering::SeqCst) {
            self.changed.notify(usize::MAX);
        }
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// The external PubkyTLS port, when it differs from the configured/bound one.
    pub fn pubky_tls_port(&self) -> Option<u16> {
        *self
            .pubky_tls_port
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the external PubkyTLS port (a router mapping); republishes on change.
    pub fn set_pubky_tls_port(&self, port: u16) {
        let mut cur = self
            .pubky_tls_port
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *cur != Some(port) {
            *cur = Some(port);
            drop(cur);
            self.changed.notify(usize::MAX);
        }
    }
}

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
}

impl PublishStatus {
    pub fn load(data_dir: &Path) -> Option<PublishStatus> {
        let text = std::fs::read_to_string(data_dir.join(STATUS_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, data_dir: &Path) {
        // Best effort: the status is informational and rewritten on every attempt.
        super::upnp::save_json(data_dir, STATUS_FILE, self);
    }
}

/// Exponential backoff between failed publishes: `min`, doubling, capped at `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    min.saturating_mul(factor).min(max)
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
}

impl Publisher {
    pub async fn run(self, shutdown: ShutdownSignal) {
        let mut packet: Option<SignedPacket> = None;
        let mut signed_port = 0u16;
        let mut failures = 0u32;
        loop {
            let changed = self.address.changed.listen();
            let ip = self.address.get();
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
                    let port = self
                        .address
                        .pubky_tls_port()
                        .unwrap_or(self.spec.pubky_tls_port);
                    let stale = packet
                        .as_ref()
                        .map(|p| published_ip(p) != Some(ip) || signed_port != port);
                    if stale != Some(false) {
                        packet = self.sign(ip, port);
                        signed_port = port;
                    }
                    match &packet {
                        Some(p) => {
                            if self.publish(p, ip, port).await {
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

    fn sign(&self, ip: IpAddr, pubky_tls_port: u16) -> Option<SignedPacket> {
        let spec = RecordSpec {
            public_ip: ip,
            pubky_tls_port,
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

    async fn publish(&self, packet: &SignedPacket, ip: IpAddr, port: u16) -> bool {
        if let Some(relay) = &self.relay {
            relay.remember(packet);
        }
        let Some(dht) = &self.dht else {
            self.attempted.notify(usize::MAX);
            return true;
        };
        let result = dht.put(packet).await;
        let now = crate::clock::now_secs();
        let snapshot = {
            let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            st.last_attempt_secs = now;
            st.published_ip = Some(ip.to_string());
            st.pubky_tls_port = port;
            st.packet_timestamp_us = packet.timestamp().as_u64();
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
                tracing::info!(%ip, port, nodes = n, "published the homeserver record")
            }
            Err(e) => {
                tracing::warn!(%ip, error = %e, "publishing the homeserver record failed; will retry")
            }
        }
        self.attempted.notify(usize::MAX);
        result.is_ok()
    }
}

/// The apex A/AAAA address of one of our packets.
fn published_ip(p: &SignedPacket) -> Option<IpAddr> {
    use pkarr::dns::rdata::RData;
    let z = p.public_key().to_z32();
    p.resource_records(&z).find_map(|rr| match &rr.rdata {
        RData::A(a) => Some(IpAddr::from(std::net::Ipv4Addr::from(a.address))),
        RData::AAAA(a) => Some(IpAddr::from(std::net::Ipv6Addr::from(a.address))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, min, max), Duration::from_secs(1));
        assert_eq!(backoff(2, min, max), Duration::from_secs(2));
        assert_eq!(backoff(5, min, max), Duration::from_secs(16));
        assert_eq!(backoff(7, min, max), max);
        assert_eq!(backoff(u32::MAX, min, max), max);
    }

    #[test]
    fn address_change_notifies_only_on_change() {
        let a = PublicAddress::new(None);
        let l = a.changed.listen();
        a.set("192.0.2.1".parse().unwrap());
        assert!(smol::block_on(async {
            l.or(async {
                smol::Timer::after(Duration::from_secs(5)).await;
            })
            .await;
            true
        }));
        let l2 = a.changed.listen();
        a.set("192.0.2.1".parse().unwrap());
        let fired = smol::block_on(
            async {
                l2.await;
                true
            }
            .or(async {
                smol::Timer::after(Duration::from_millis(50)).await;
                false
            }),
        );
        assert!(!fired);
    }

    #[test]
    fn a_mapped_port_is_kept_and_notifies_once() {
        let a = PublicAddress::new(None);
        assert_eq!(a.pubky_tls_port(), None);
        let l = a.changed.listen();
        a.set_pubky_tls_port(6288);
        assert_eq!(a.pubky_tls_port(), Some(6288));
        smol::block_on(l);
        let l2 = a.changed.listen();
        a.set_pubky_tls_port(6288);
        let fired = smol::block_on(
            async {
                l2.await;
                true
            }
            .or(async {
                smol::Timer::after(Duration::from_millis(50)).await;
                false
            }),
        );
        assert!(!fired);
    }

    #[test]
    fn a_held_address_reads_unknown_until_set_or_released() {
        let ip: IpAddr = "192.168.1.5".parse().unwrap();
        let a = PublicAddress::new(Some(ip));
        a.hold();
        assert_eq!(a.get(), None);
        let l = a.changed.listen();
        a.release();
        smol::block_on(l);
        assert_eq!(a.get(), Some(ip));
        a.hold();
        let l = a.changed.listen();
        a.set(ip);
        smol::block_on(l);
        assert!(!a.is_held());
        assert_eq!(a.get(), Some(ip));
    }

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

    #[test]
    fn published_ip_reads_the_apex_address() {
        let spec = RecordSpec {
            public_ip: "192.0.2.9".parse().unwrap(),
            pubky_tls_port: 1,
            icann_http_port: 2,
            icann_domain: None,
        };
        let p = homeserver_packet(&[1; 32], &spec, 1).unwrap();
        assert_eq!(published_ip(&p), Some(spec.public_ip));
    }
}

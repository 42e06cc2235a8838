//! The pkarr relay behind `GET`/`PUT /pkarr/<z32>`: browsers and JS apps on the LAN resolve
//! and publish through the device instead of public relays. Packets are checked (signature,
//! DNS encoding, size, timestamp), kept in a bounded in-memory cache and forwarded to the
//! device's DHT client.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use pkarr::SignedPacket;

use super::dht::{DhtClient, PutError};
use crate::pubkey::PublicKey;

/// signature (64) + timestamp (8) + DNS packet (≤ 1000).
pub const MAX_PAYLOAD: usize = 64 + 8 + 1000;
/// A packet dated further ahead than this is refused (clocks drift, not by hours).
pub const MAX_FUTURE_US: u64 = 15 * 60 * 1_000_000;
/// Cached packets are served without asking the DHT for at most this long, and at least
/// the packet's own smallest TTL clamped to [`MIN_TTL`, `MAX_TTL`] (pkarr's rule).
const MIN_TTL: u32 = 300;
const MAX_TTL: u32 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    CacheFirst,
    CacheOnly,
    NetworkOnly,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "CacheFirst" => Some(Policy::CacheFirst),
            "CacheOnly" => Some(Policy::CacheOnly),
            "NetworkOnly" => Some(Policy::NetworkOnly),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RelayError {
    TooLarge,
    BadPacket(String),
    FutureTimestamp,
    /// A more recent packet for this key is already known.
    NotMostRecent,
    DhtUnavailable(String),
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayError::TooLarge => write!(f, "signed packet larger than {MAX_PAYLOAD} bytes"),
            RelayError::BadPacket(e) => write!(f, "invalid signed packet: {e}"),
            RelayError::FutureTimestamp => f.write_str("signed packet timestamp is in the future"),
            RelayError::NotMostRecent => f.write_str("a more recent packet is known"),
            RelayError::DhtUnavailable(e) => write!(f, "DHT unavailable: {e}"),
        }
    }
}

struct Cache {
    map: HashMap<PublicKey, SignedPacket>,
    order: VecDeque<PublicKey>,
    capacity: usize,
}

impl Cache {
    fn insert(&mut self, key: PublicKey, p: SignedPacket) {
        if self.map.insert(key, p).is_none() {
            self.order.push_back(key);
            while self.map.len() > self.capacity {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }
}

pub struct Relay {
    cache: Mutex<Cache>,
    dht: Option<DhtClient>,
}

impl Relay {
    pub fn new(dht: Option<DhtClient>, capacity: usize) -> Relay {
        Relay {
            cache: Mutex::new(Cache {
                map: HashMap::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            }),
            dht,
        }
    }

    fn cached(&self, key: &PublicKey) -> Option<SignedPacket> {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.map.get(key).cloned()
    }

    /// Keeps `p` in the cache unless a more recent packet of its key is already there.
    pub fn remember(&self, p: &SignedPacket) {
        let key = super::packet::packet_key(p);
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match c.map.get(&key) {
            Some(old) if !p.more_recent_than(old) => {}
            _ => c.insert(key, p.clone()),
        }
    }

    /// Checks a relay payload (`signature ‖ timestamp ‖ dns`) without storing it.
    pub fn verify(
        key: &PublicKey,
        payload: &[u8],
        now_us: u64,
    ) -> Result<SignedPacket, RelayError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(RelayError::TooLarge);
        }
        let pk = pkarr::PublicKey::try_from(key.as_bytes())
            .map_err(|e| RelayError::BadPacket(e.to_string()))?;
        let p = SignedPacket::from_relay_payload(&pk, &Bytes::copy_from_slice(payload))
            .map_err(|e| RelayError::BadPacket(e.to_string()))?;
        if p.timestamp().as_u64() > now_us.saturating_add(MAX_FUTURE_US) {
            return Err(RelayError::FutureTimestamp);
        }
        Ok(p)
    }

    /// `PUT /<key>`: verify, refuse what is older than what we know, cache, forward.
    /// Returns the number of DHT nodes that stored it (None without a DHT).
    pub async fn put(
        &self,
        key: &PublicKey,
        payload: &[u8],
        now_us: u64,
    ) -> Result<Option<u32>, RelayError> {
        let p = Self::verify(key, payload, now_us)?;
        if let Some(old) = self.cached(key) {
            let same = old.as_bytes() == p.as_bytes();
            if !same && !p.more_recent_than(&old) {
                return Err(RelayError::NotMostRecent);
            }
        }
        let stored = match &self.dht {
            None => None,
            Some(dht) => match dht.put(&p).await {
                Ok(n) => Some(n),
                Err(PutError::NotMostRecent) => return Err(RelayError::NotMostRecent),
                Err(PutError::Failed(e)) => return Err(RelayError::DhtUnavailable(e)),
            },
        };
        self.remember(&p);
        Ok(stored)
    }

    /// `GET /<key>`: the most recent packet by `policy`.
    pub async fn get(&self, key: &PublicKey, policy: Policy) -> Option<SignedPacket> {
        let cached = self.cached(key);
        let fresh = cached
            .as_ref()
            .filter(|p| !p.is_expired(MIN_TTL, MAX_TTL))
            .cloned();
        match policy {
            Policy::CacheOnly => return cached,
            Policy::CacheFirst if fresh.is_some() => return fresh,
            _ => {}
        }
        let from_dht = match &self.dht {
            Some(dht) => dht.get(key).await,
            None => None,
        };
        match (from_dht, cached) {
            (Some(n), Some(c)) if !n.more_recent_than(&c) => Some(c),
            (Some(n), _) => {
                self.remember(&n);
                Some(n)
            }
            (None, c) => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announce::packet::{homeserver_packet, RecordSpec};

    fn packet(seed: u8, ts: u64) -> SignedPacket {
        let spec = RecordSpec {
            public_ip: "192.0.2.1".parse().unwrap(),
            public_ipv6: None,
            pubky_tls_port: 6287,
            icann_http_port: 6286,
            icann_domain: None,
        };
        homeserver_packet(&[seed; 32], &spec, ts).unwrap()
    }

    fn key(p: &SignedPacket) -> PublicKey {
        crate::announce::packet::packet_key(p)
    }

    const NOW: u64 = 1_700_000_000_000_000;

    #[test]
    fn verify_rejects_bad_input() {
        let p = packet(1, NOW);
        let k = key(&p);
        let payload = p.to_relay_payload();
        assert!(Relay::verify(&k, &payload, NOW).is_ok());
        // Wrong key for the signature.
        let other = key(&packet(2, NOW));
        assert!(matches!(
            Relay::verify(&other, &payload, NOW),
            Err(RelayError::BadPacket(_))
        ));
        // Flipped DNS byte, truncated, empty, garbage, oversized.
        let mut bad = payload.to_vec();
        *bad.last_mut().unwrap() ^= 0xff;
        assert!(Relay::verify(&k, &bad, NOW).is_err());
        assert!(Relay::verify(&k, &payload[..50], NOW).is_err());
        assert!(Relay::verify(&k, &[], NOW).is_err());
        assert!(Relay::verify(&k, &[0xAB; 300], NOW).is_err());
        assert_eq!(
            Relay::verify(&k, &vec![0; MAX_PAYLOAD + 1], NOW).unwrap_err(),
            RelayError::TooLarge
        );
        // Dated two hours ahead.
        let future = packet(1, NOW + 2 * 3600 * 1_000_000);
        assert_eq!(
            Relay::verify(&k, &future.to_relay_payload(), NOW).unwrap_err(),
            RelayError::FutureTimestamp
        );
    }

    #[test]
    fn cache_keeps_the_newest_and_refuses_stale() {
        smol::block_on(async {
            let r = Relay::new(None, 8);
            let new = packet(1, NOW);
            let old = packet(1, NOW - 1_000_000);
            let k = key(&new);
            assert_eq!(r.get(&k, Policy::CacheFirst).await, None);
            r.put(&k, &new.to_relay_payload(), NOW).await.unwrap();
            // Same bytes again is fine (idempotent republish).
            r.put(&k, &new.to_relay_payload(), NOW).await.unwrap();
            assert_eq!(
                r.put(&k, &old.to_relay_payload(), NOW).await.unwrap_err(),
                RelayError::NotMostRecent
            );
            let got = r.get(&k, Policy::CacheOnly).await.unwrap();
            assert_eq!(got.as_bytes(), new.as_bytes());
        });
    }

    #[test]
    fn cache_is_bounded() {
        smol::block_on(async {
            let r = Relay::new(None, 3);
            let ps: Vec<_> = (1..=5).map(|s| packet(s, NOW)).collect();
            for p in &ps {
                r.put(&key(p), &p.to_relay_payload(), NOW).await.unwrap();
            }
            assert!(r.get(&key(&ps[0]), Policy::CacheOnly).await.is_none());
            assert!(r.get(&key(&ps[1]), Policy::CacheOnly).await.is_none());
            assert!(r.get(&key(&ps[4]), Policy::CacheOnly).await.is_some());
            assert_eq!(r.cache.lock().unwrap().map.len(), 3);
        });
    }
}

//! The device's Mainline DHT client: BEP 44 mutable items carrying pkarr packets. The
//! `mainline` actor runs on its own thread; its async API is runtime-agnostic, so calls are
//! awaited directly on the smol executor.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use mainline::{Dht, MutableItem};
use pkarr::SignedPacket;

use crate::pubkey::PublicKey;

/// A DHT client shared by the publisher, the users' republisher and the relay.
#[derive(Clone, Debug)]
pub struct DhtClient {
    dht: mainline::async_dht::AsyncDht,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutError {
    /// Nodes hold a more recent packet for this key.
    NotMostRecent,
    Failed(String),
}

impl std::fmt::Display for PutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PutError::NotMostRecent => f.write_str("the DHT holds a more recent packet"),
            PutError::Failed(e) => f.write_str(e),
        }
    }
}

/// Where the DHT client starts and how long it waits for answers.
#[derive(Clone, Debug)]
pub struct DhtSettings {
    /// `host:port` bootstrap nodes; empty = Mainline's public defaults.
    pub bootstrap: Vec<String>,
    pub request_timeout: Duration,
    /// UDP port; `None` = Mainline's 6881 if free, else any (with loopback-only bootstrap
    /// nodes: any, so local networks never take the well-known port).
    pub port: Option<u16>,
}

impl DhtClient {
    /// Starts the client. When every bootstrap node is a loopback address the socket binds to
    /// loopback too, so a local testnet never talks to anything else.
    pub fn start(settings: &DhtSettings) -> std::io::Result<DhtClient> {
        let mut b = Dht::builder();
        b.request_timeout(settings.request_timeout);
        let mut port = settings.port;
        if !settings.bootstrap.is_empty() {
            b.bootstrap(&settings.bootstrap);
            if all_loopback(&settings.bootstrap) {
                b.bind_address(Ipv4Addr::LOCALHOST);
                port = port.or(Some(0));
            }
        }
        if let Some(port) = port {
            b.port(port);
        }
        Ok(DhtClient {
            dht: b.build()?.as_async(),
        })
    }

    /// Puts a signed packet as-is (never re-signed). Returns how many nodes stored it.
    pub async fn put(&self, packet: &SignedPacket) -> Result<u32, PutError> {
        use mainline::errors::{ConcurrencyError, PutMutableError};
        let item = to_item(packet);
        match self.dht.put_mutable(item, None).await {
            Ok(o) => Ok(o.stored_at),
            Err(PutMutableError::Concurrency(ConcurrencyError::NotMostRecent)) => {
                Err(PutError::NotMostRecent)
            }
            Err(e) => Err(PutError::Failed(e.to_string())),
        }
    }

    /// The most recent valid packet of `key` the DHT holds.
    pub async fn get(&self, key: &PublicKey) -> Option<SignedPacket> {
        let item = self
            .dht
            .get_mutable_most_recent(key.as_bytes(), None)
            .await?;
        from_item(&item)
    }

    /// `host:port` of this node, for others to bootstrap from.
    /// What the DHT nodes that answered say about this node (BEP 42's `ip` field): the
    /// address they saw it come from, once a query gathered their votes, and whether a
    /// ping to that address failed to come back (its UDP port is not reachable inbound).
    pub async fn view(&self) -> (Option<std::net::SocketAddrV4>, bool) {
        let info = self.dht.info().await;
        (info.public_address(), info.firewalled())
    }

    pub async fn local_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.dht.info().await.local_addr())
    }

    pub async fn bootstrapped(&self) -> bool {
        self.dht.bootstrapped().await
    }
}

/// A small Mainline network on loopback: a first node on `first_port` (0 = any) that the
/// others bootstrap from, all in server mode. Dropping the nodes stops the network.
pub fn local_testnet(
    first_port: u16,
    nodes: usize,
) -> std::io::Result<(Vec<mainline::async_dht::AsyncDht>, Vec<String>)> {
    local_testnet_on(Ipv4Addr::LOCALHOST, first_port, nodes)
}

/// [`local_testnet`] on another local address, so that the nodes know each other by an
/// address a virtual machine (or another host of a private network) can reach too.
pub fn local_testnet_on(
    bind: Ipv4Addr,
    first_port: u16,
    nodes: usize,
) -> std::io::Result<(Vec<mainline::async_dht::AsyncDht>, Vec<String>)> {
    let first = Dht::builder()
        .server_mode()
        .no_bootstrap()
        .port(first_port)
        .bind_address(bind)
        .build()?
        .as_async();
    let bootstrap = vec![smol::block_on(first.info()).local_addr().to_string()];
    let mut all = vec![first];
    for _ in 1..nodes.max(1) {
        all.push(
            Dht::builder()
                .server_mode()
                .bootstrap(&bootstrap)
                .port(0)
                .bind_address(bind)
                .build()?
                .as_async(),
        );
    }
    Ok((all, bootstrap))
}

fn all_loopback(nodes: &[String]) -> bool {
    nodes.iter().all(|n| {
        n.to_socket_addrs()
            .map(|mut a| a.all(|a| a.ip().is_loopback()))
            .unwrap_or(false)
    })
}

/// A pkarr packet as a BEP 44 item: key, signature, `seq` = timestamp, `v` = DNS packet.
pub fn to_item(packet: &SignedPacket) -> MutableItem {
    MutableItem::new_signed_unchecked(
        packet.public_key().to_bytes(),
        packet.signature().to_bytes(),
        &packet.encoded_packet(),
        packet.timestamp().as_u64() as i64,
        None,
    )
}

/// Back from a BEP 44 item, with the pkarr signature checked again.
pub fn from_item(item: &MutableItem) -> Option<SignedPacket> {
    let mut payload = Vec::with_capacity(72 + item.value().len());
    payload.extend_from_slice(item.signature());
    payload.extend_from_slice(&(item.seq() as u64).to_be_bytes());
    payload.extend_from_slice(item.value());
    let key = pkarr::PublicKey::try_from(item.key()).ok()?;
    SignedPacket::from_relay_payload(&key, &Bytes::from(payload)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announce::packet::{homeserver_packet, RecordSpec};
    use std::net::IpAddr;

    #[test]
    fn item_round_trip_keeps_the_signed_bytes() {
        let spec = RecordSpec {
            public_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            public_ipv6: None,
            pubky_tls_port: 6287,
            icann_http_port: 6286,
            icann_domain: None,
        };
        let p = homeserver_packet(&[3; 32], &spec, 42_000_000).unwrap();
        let item = to_item(&p);
        assert_eq!(item.seq(), 42_000_000);
        let back = from_item(&item).unwrap();
        assert_eq!(back.as_bytes(), p.as_bytes());
        // A tampered value fails the signature check.
        let mut v = item.value().to_vec();
        v[5] ^= 1;
        let bad =
            MutableItem::new_signed_unchecked(*item.key(), *item.signature(), &v, item.seq(), None);
        assert!(from_item(&bad).is_none());
    }

    #[test]
    fn loopback_detection() {
        assert!(all_loopback(&["127.0.0.1:6881".into(), "[::1]:1".into()]));
        assert!(!all_loopback(&[
            "127.0.0.1:6881".into(),
            "192.0.2.1:1".into()
        ]));
        assert!(!all_loopback(&["not an address".into()]));
    }
}

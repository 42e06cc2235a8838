//! The address the homeserver's record announces, shared by whoever learns it (the config,
//! the router over UPnP) and the publisher, which wakes on every change.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use event_listener::Event;

/// The address the record announces. The configured value, or what the router reports
/// over UPnP, and the external PubkyTLS port when the router mapped a different one; every
/// change wakes the publisher. While *held* (the router is about to be asked) it reads as
/// unknown, so a LAN address is never published ahead of the router's answer.
#[derive(Debug, Default)]
pub struct PublicAddress {
    ip: Mutex<Option<IpAddr>>,
    pubky_tls_port: Mutex<Option<u16>>,
    /// The relay's public address and the port it gives this box: while set, it is what
    /// the record announces, whatever the router or the config say.
    relayed: Mutex<Option<SocketAddr>>,
    /// The box's global IPv6 address and the port open to it at the router's firewall
    /// (the record's `AAAA`, when that port is the record's port).
    ipv6: Mutex<Option<(Ipv6Addr, u16)>>,
    held: AtomicBool,
    changed: Event,
}

impl PublicAddress {
    pub fn new(ip: Option<IpAddr>) -> Arc<PublicAddress> {
        Arc::new(PublicAddress {
            ip: Mutex::new(ip),
            pubky_tls_port: Mutex::new(None),
            relayed: Mutex::new(None),
            ipv6: Mutex::new(None),
            held: AtomicBool::new(false),
            changed: Event::new(),
        })
    }

    /// The address to publish: the relay's when there is one, else `None` while unknown or
    /// held.
    pub fn get(&self) -> Option<IpAddr> {
        if let Some(relayed) = self.relayed() {
            return Some(relayed.ip());
        }
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

    /// Resolves at the next change of address, port or hold.
    pub fn changed(&self) -> event_listener::EventListener {
        self.changed.listen()
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// The external PubkyTLS port, when it differs from the configured/bound one (the
    /// relay's port while there is one).
    pub fn pubky_tls_port(&self) -> Option<u16> {
        if let Some(relayed) = self.relayed() {
            return Some(relayed.port());
        }
        *self
            .pubky_tls_port
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Announces the relay's public address and port instead of this box's own; republishes
    /// on change.
    pub fn set_relayed(&self, at: SocketAddr) {
        let mut cur = self.relayed.lock().unwrap_or_else(|e| e.into_inner());
        if *cur != Some(at) {
            *cur = Some(at);
            drop(cur);
            self.changed.notify(usize::MAX);
        }
    }

    /// Announces this box's own address again (the relay reached it directly).
    pub fn clear_relayed(&self) {
        if self
            .relayed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some()
        {
            self.changed.notify(usize::MAX);
        }
    }

    /// This box's own address (configured or the router's), relay or hold aside.
    pub fn direct_ip(&self) -> Option<IpAddr> {
        *self.ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The external PubkyTLS port the router mapped, relay or not.
    pub fn direct_pubky_tls_port(&self) -> Option<u16> {
        *self
            .pubky_tls_port
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The relay endpoint the record announces, if any.
    pub fn relayed(&self) -> Option<SocketAddr> {
        *self.relayed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (or, with `None`, withdraws) the IPv6 address and port open to it; republishes
    /// on change.
    pub fn set_ipv6(&self, open: Option<(Ipv6Addr, u16)>) {
        let mut cur = self.ipv6.lock().unwrap_or_else(|e| e.into_inner());
        if *cur != open {
            *cur = open;
            drop(cur);
            self.changed.notify(usize::MAX);
        }
    }

    /// The IPv6 address to announce beside the IPv4 one: only when its open port is `port`,
    /// the one the record names for every address it carries.
    pub fn ipv6_for(&self, port: u16) -> Option<Ipv6Addr> {
        let open = *self.ipv6.lock().unwrap_or_else(|e| e.into_inner());
        open.filter(|(_, p)| *p == port).map(|(ip, _)| ip)
    }

    /// The IPv6 address and its open port, whatever the record's port.
    pub fn ipv6(&self) -> Option<(Ipv6Addr, u16)> {
        *self.ipv6.lock().unwrap_or_else(|e| e.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;
    use smol::future::FutureExt;
    use std::time::Duration;

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
    fn an_ipv6_address_is_announced_only_at_the_records_port() {
        let a = PublicAddress::new(None);
        let ip: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let l = a.changed.listen();
        a.set_ipv6(Some((ip, 6287)));
        smol::block_on(l);
        assert_eq!(a.ipv6_for(6287), Some(ip));
        // The IPv4 side mapped another external port (or a relay's): one `port` parameter
        // covers every address of the record, so the IPv6 one is left out.
        assert_eq!(a.ipv6_for(6288), None);
        assert_eq!(a.ipv6(), Some((ip, 6287)));
        let l = a.changed.listen();
        a.set_ipv6(None);
        smol::block_on(l);
        assert_eq!(a.ipv6_for(6287), None);
    }

    #[test]
    fn a_relay_endpoint_wins_over_the_router_and_a_hold() {
        let a = PublicAddress::new(Some("192.168.1.5".parse().unwrap()));
        a.hold();
        a.set_pubky_tls_port(6288);
        let l = a.changed.listen();
        let relay: SocketAddr = "203.0.113.5:6290".parse().unwrap();
        a.set_relayed(relay);
        smol::block_on(l);
        assert_eq!(a.get(), Some(relay.ip()));
        assert_eq!(a.pubky_tls_port(), Some(6290));
        // The router's later answers do not take the record back from the relay.
        a.set("11.0.0.1".parse().unwrap());
        assert_eq!(a.get(), Some(relay.ip()));
        assert_eq!(a.pubky_tls_port(), Some(6290));
        assert_eq!(a.direct_pubky_tls_port(), Some(6288));
        // The relay reached the box directly: its own address is announced again.
        let l = a.changed.listen();
        a.clear_relayed();
        smol::block_on(l);
        assert_eq!(a.get(), Some("11.0.0.1".parse().unwrap()));
        assert_eq!(a.pubky_tls_port(), Some(6288));
    }
}

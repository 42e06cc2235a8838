//! The address the homeserver's record announces, shared by whoever learns it (the config,
//! the router over UPnP) and the publisher, which wakes on every change.

use std::net::IpAddr;
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

    /// Resolves at the next change of address, port or hold.
    pub fn changed(&self) -> event_listener::EventListener {
        self.changed.listen()
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
}

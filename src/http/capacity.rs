//! The connection cap: counting live connections and turning the overflow away.
//!
//! `server::serve` asks `ConnStats::try_admit` for every accepted socket. Admitted ones get a
//! `LiveGuard` that lives as long as the connection task; refused ones go to
//! `refuse`, which answers a bare `503` and closes. One address (IPv6: one /64) may hold
//! only its share of the cap, so one client cannot fill a listener. At the cap, a connection
//! that has not yet sent a complete request head (the oldest such) is evicted to make room,
//! so a flood of idle or slowloris connections cannot lock normal clients out until the
//! header timeout. The counters are read by the drain logic in `server.rs` and by the metrics
//! listener (one `ConnStats` per listener).

use std::collections::BTreeMap;
use std::net::{IpAddr, Shutdown as NetShutdown};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_listener::Event;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Executor;

use crate::limits::peer::Shares;

/// The whole answer to a connection over the cap. No body, no keep-alive.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Refusals in progress beyond this are closed without an answer, so a flood cannot grow an
/// unbounded set of refusal tasks.
const MAX_REFUSING: usize = 32;

/// How long a refusal may spend writing the 503 and draining what the client already sent.
const REFUSE_BUDGET: Duration = Duration::from_secs(1);

/// Bytes a refusal reads and discards before closing (see `refuse`).
const REFUSE_DRAIN_BYTES: usize = 16 * 1024;

/// Live and total connection counts for one `serve` call (one listener). Cheap to clone.
#[derive(Clone, Default)]
pub struct ConnStats {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    live: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Of `refused`: turned away because their address held its share.
    refused_per_ip: AtomicU64,
    refusing: AtomicUsize,
    evicted: AtomicU64,
    /// Notified whenever a live connection ends.
    closed: Event,
    next_id: AtomicU64,
    /// Live connections that have not sent a complete request head yet, oldest first.
    fresh: Mutex<BTreeMap<u64, Arc<Slot>>>,
    /// Live connections per address key.
    shares: Mutex<Shares>,
}

/// One admitted connection's eviction flag.
pub(crate) struct Slot {
    id: u64,
    /// Its address key, when counted per address.
    peer: Option<IpAddr>,
    evicted: AtomicBool,
    wake: Event,
}

impl Slot {
    /// Resolves once the connection has been chosen for eviction.
    pub(crate) async fn evicted(&self) {
        loop {
            if self.evicted.load(Ordering::SeqCst) {
                return;
            }
            let listener = self.wake.listen();
            if self.evicted.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }
}

impl ConnStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections currently being served (including TLS handshakes in progress).
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Connections admitted since start.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Connections turned away because the cap was reached.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Connections evicted at the cap before they sent a request head.
    pub fn evicted(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }

    /// Connections turned away because their address already held its share.
    pub fn refused_per_ip(&self) -> u64 {
        self.inner.refused_per_ip.load(Ordering::Relaxed)
    }

    /// Admits one more connection unless its address (`Some(key)`; `None` for a trusted
    /// proxy, which is not counted per address) already holds `share` (and none of them is
    /// still waiting for its first request head), or `max` are already
    /// live and none of them is still waiting for its first request head; if one is, the
    /// oldest is told to close and the newcomer takes its place (live may exceed `max` until
    /// it has gone). Only the accept loop calls this, so check-then-increment cannot race
    /// with another admission.
    pub(crate) fn try_admit(
        &self,
        max: usize,
        peer: Option<IpAddr>,
        share: usize,
    ) -> Option<LiveGuard> {
        // At its share, an address may still replace its own oldest connection that has not
        // sent a request head (a browser's stale preconnect), never anyone else's.
        let mut replaced = false;
        if let Some(key) = peer {
            if !lock(&self.inner.shares).take(key, share) {
                if !self.evict_oldest_fresh_of(key) {
                    self.inner.refused.fetch_add(1, Ordering::Relaxed);
                    self.inner.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                // The evicted one still counts until its task ends.
                lock(&self.inner.shares).take(key, usize::MAX);
                replaced = true;
            }
        }
        if !replaced && self.live() >= max && !self.evict_oldest_fresh() {
            if let Some(key) = peer {
                lock(&self.inner.shares).give_back(key);
            }
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.inner.live.fetch_add(1, Ordering::SeqCst);
        self.inner.accepted.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            peer,
            evicted: AtomicBool::new(false),
            wake: Event::new(),
        });
        lock(&self.inner.fresh).insert(slot.id, slot.clone());
        Some(LiveGuard {
            stats: self.clone(),
            slot,
        })
    }

    fn evict_oldest_fresh(&self) -> bool {
        let Some((_, slot)) = lock(&self.inner.fresh).pop_first() else {
            return false;
        };
        self.evict(slot)
    }

    /// Like `evict_oldest_fresh`, among the connections of one address.
    fn evict_oldest_fresh_of(&self, key: IpAddr) -> bool {
        let mut fresh = lock(&self.inner.fresh);
        let Some(id) = fresh
            .iter()
            .find(|(_, s)| s.peer == Some(key))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        let Some(slot) = fresh.remove(&id) else {
            return false;
        };
        drop(fresh);
        self.evict(slot)
    }

    fn evict(&self, slot: Arc<Slot>) -> bool {
        slot.evicted.store(true, Ordering::SeqCst);
        slot.wake.notify(usize::MAX);
        self.inner.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Resolves once no connection is live.
    pub(crate) async fn wait_idle(&self) {
        loop {
            if self.live() == 0 {
                return;
            }
            let listener = self.inner.closed.listen();
            if self.live() == 0 {
                return;
            }
            listener.await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays valid after a panic elsewhere: entries are inserted and removed whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Held by a connection task; releases its slot when the task ends or is dropped.
pub(crate) struct LiveGuard {
    stats: ConnStats,
    slot: Arc<Slot>,
}

impl LiveGuard {
    pub(crate) fn slot(&self) -> Arc<Slot> {
        self.slot.clone()
    }

    /// The connection delivered a request head: it is no longer a candidate for eviction.
    pub(crate) fn mark_active(stats: &ConnStats, slot: &Slot) {
        lock(&stats.inner.fresh).remove(&slot.id);
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        lock(&self.stats.inner.fresh).remove(&self.slot.id);
        if let Some(key) = self.slot.peer {
            lock(&self.stats.inner.shares).give_back(key);
        }
        self.stats.inner.live.fetch_sub(1, Ordering::SeqCst);
        self.stats.inner.closed.notify(usize::MAX);
    }
}

/// Answers an over-the-cap connection with `503` + `Retry-After: 1` and closes it, on its own
/// short-lived task so the accept loop never waits on a client. TLS connections are closed
/// without an answer: a handshake is exactly the work the cap exists to avoid.
pub(crate) fn refuse(ex: &Executor<'static>, stats: &ConnStats, mut tcp: TcpStream, tls: bool) {
    let counters = stats.inner.clone();
    if tls || counters.refusing.load(Ordering::Relaxed) >= MAX_REFUSING {
        return;
    }
    counters.refusing.fetch_add(1, Ordering::Relaxed);
    ex.spawn(async move {
        let answer = async {
            tcp.write_all(BUSY_RESPONSE).await?;
            tcp.flush().await?;
            tcp.shutdown(NetShutdown::Write)?;
            // Closing with unread request bytes in the socket makes the kernel send a reset,
            // which can destroy the 503 before the client reads it. Read (a bounded amount)
            // until the client closes its side.
            let mut sink = [0u8; 1024];
            let mut drained = 0;
            while drained < REFUSE_DRAIN_BYTES {
                match tcp.read(&mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            Ok::<(), std::io::Error>(())
        };
        let budget = async {
            smol::Timer::after(REFUSE_BUDGET).await;
            Ok(())
        };
        if let Err(e) = answer.or(budget).await {
            tracing::debug!(error = %e, "refusal write failed");
        }
        counters.refusing.fetch_sub(1, Ordering::Relaxed);
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn an_address_at_its_share_replaces_only_its_own_idle_connections() {
        let stats = ConnStats::new();
        let a1 = stats.try_admit(4, ip(1), 2).unwrap();
        let a2 = stats.try_admit(4, ip(1), 2).unwrap();
        let b1 = stats.try_admit(4, ip(2), 2).unwrap();
        // a's third replaces a's oldest idle one …
        let a3 = stats.try_admit(4, ip(1), 2).unwrap();
        assert!(a1.slot.evicted.load(Ordering::SeqCst));
        assert!(!b1.slot.evicted.load(Ordering::SeqCst));
        // … and once a's connections are busy, a is refused while b is not
        LiveGuard::mark_active(&stats, &a2.slot);
        LiveGuard::mark_active(&stats, &a3.slot);
        drop(a1);
        let before = stats.refused_per_ip();
        assert!(stats.try_admit(4, ip(1), 2).is_none());
        assert_eq!(stats.refused_per_ip(), before + 1);
        assert!(!b1.slot.evicted.load(Ordering::SeqCst));
        let b2 = stats.try_admit(4, ip(2), 2).unwrap();
        // a proxy (no address key) is counted only under the cap: the cap is full (4 live),
        // so it takes b's oldest idle connection
        let proxied = stats.try_admit(4, None, 2).unwrap();
        assert!(b1.slot.evicted.load(Ordering::SeqCst));
        drop((a2, a3, b1, b2, proxied));
        assert_eq!(stats.live(), 0);
        assert_eq!(
            lock(&stats.inner.shares).held(IpAddr::from([10, 0, 0, 1])),
            0
        );
    }
}

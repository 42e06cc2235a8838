//! The cap on open event streams (`events.max_streams`, and each address's share of it,
//! `events.max_streams_per_ip`), and the shutdown flag that ends them all. A stream holds a
//! [`Slot`] for as long as its response body lives.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::peer::Shares;
use crate::metrics::Metrics;

/// Open streams under the cap, and the shutdown flag that ends them.
pub struct Streams {
    open: AtomicUsize,
    max: usize,
    per_ip: usize,
    shares: Mutex<Shares>,
    closing: AtomicBool,
    /// Event scans running at once on the blocking pool.
    scans: smol::lock::Semaphore,
}

/// Event scans that may run at once: enough to keep streams moving, few enough that a
/// crowd of streams cannot occupy every core or start hundreds of threads.
const SCANS_AT_ONCE: usize = 2;

impl Streams {
    /// At most `max` streams, `per_ip` of them for one address.
    pub fn new(max: usize, per_ip: usize) -> Arc<Streams> {
        Arc::new(Streams {
            open: AtomicUsize::new(0),
            max,
            per_ip,
            shares: Mutex::new(Shares::default()),
            closing: AtomicBool::new(false),
            scans: smol::lock::Semaphore::new(SCANS_AT_ONCE),
        })
    }

    /// Waits for one of the scan permits; the scan runs while the guard lives.
    pub async fn scan_permit(&self) -> smol::lock::SemaphoreGuard<'_> {
        self.scans.acquire().await
    }

    fn shares(&self) -> std::sync::MutexGuard<'_, Shares> {
        // Counts are changed whole; a panic elsewhere leaves them valid.
        self.shares.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Whether [`Streams::close_all`] was called.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Ends every stream at its next wake-up; the caller then wakes them (store).
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// A place for one more stream, for the client with address key `client` (`None`: the
    /// operator, counted only under the total cap).
    pub fn acquire(
        self: &Arc<Self>,
        metrics: &Arc<Metrics>,
        client: Option<IpAddr>,
    ) -> Option<Slot> {
        if let Some(key) = client {
            if !self.shares().take(key, self.per_ip) {
                metrics.stream_refused();
                return None;
            }
        }
        let taken = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            if let Some(key) = client {
                self.shares().give_back(key);
            }
            metrics.stream_refused();
            return None;
        }
        metrics.stream_opened();
        Some(Slot {
            streams: self.clone(),
            metrics: metrics.clone(),
            since: Instant::now(),
            client,
        })
    }
}

/// One stream's place under the cap; released when the response body is dropped.
pub struct Slot {
    streams: Arc<Streams>,
    metrics: Arc<Metrics>,
    since: Instant,
    client: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.client {
            self.streams.shares().give_back(key);
        }
        self.streams.open.fetch_sub(1, Ordering::SeqCst);
        self.metrics.stream_closed(self.since.elapsed());
    }
}

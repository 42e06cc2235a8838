//! The cap on open event streams (`events.max_streams`), and the shutdown flag that ends
//! them all. A stream holds a [`Slot`] for as long as its response body lives.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::Metrics;

/// Open streams under the cap, and the shutdown flag that ends them.
pub struct Streams {
    open: AtomicUsize,
    max: usize,
    closing: AtomicBool,
}

impl Streams {
    pub fn new(max: usize) -> Arc<Streams> {
        Arc::new(Streams {
            open: AtomicUsize::new(0),
            max,
            closing: AtomicBool::new(false),
        })
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

    pub fn acquire(self: &Arc<Self>, metrics: &Arc<Metrics>) -> Option<Slot> {
        let taken = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            metrics.stream_refused();
            return None;
        }
        metrics.stream_opened();
        Some(Slot {
            streams: self.clone(),
            metrics: metrics.clone(),
            since: Instant::now(),
        })
    }
}

/// One stream's place under the cap; released when the response body is dropped.
pub struct Slot {
    streams: Arc<Streams>,
    metrics: Arc<Metrics>,
    since: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.streams.open.fetch_sub(1, Ordering::SeqCst);
        self.metrics.stream_closed(self.since.elapsed());
    }
}

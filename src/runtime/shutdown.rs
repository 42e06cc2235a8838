//! Shutdown: the one-shot "stop now" flag, its listeners, and the OS signals that raise it.
//!
//! `app` owns a [`Shutdown`] and triggers it (usually when [`on_signals`] resolves);
//! every long-running loop holds a [`ShutdownSignal`] and either awaits [`ShutdownSignal::wait`]
//! or polls [`ShutdownSignal::is_triggered`]. The HTTP accept loop (`http::server::serve`) uses
//! it to stop accepting and to drain live connections within [`ShutdownSignal::drain_timeout`].

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_signal::{Signal, Signals};
use event_listener::Event;
use smol::stream::StreamExt;

struct Flag {
    triggered: AtomicBool,
    changed: Event,
    drain: Duration,
}

/// The trigger side. Dropping it does *not* trigger: shutdown is always an explicit decision.
pub struct Shutdown {
    flag: Arc<Flag>,
}

/// The listening side: cheap to clone, one per task that must stop.
#[derive(Clone)]
pub struct ShutdownSignal {
    flag: Arc<Flag>,
}

impl Shutdown {
    /// `drain` is how long listeners may take to finish in-flight work once triggered.
    pub fn new(drain: Duration) -> Self {
        Shutdown {
            flag: Arc::new(Flag {
                triggered: AtomicBool::new(false),
                changed: Event::new(),
                drain,
            }),
        }
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            flag: self.flag.clone(),
        }
    }

    /// Idempotent; wakes every current and future `wait()`.
    pub fn trigger(&self) {
        self.flag.triggered.store(true, Ordering::SeqCst);
        self.flag.changed.notify(usize::MAX);
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.triggered.load(Ordering::SeqCst)
    }
}

impl ShutdownSignal {
    pub fn is_triggered(&self) -> bool {
        self.flag.triggered.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown has been triggered (immediately if it already was).
    pub async fn wait(&self) {
        loop {
            if self.is_triggered() {
                return;
            }
            // Register before re-checking, so a trigger between the check and the await is
            // not missed.
            let listener = self.flag.changed.listen();
            if self.is_triggered() {
                return;
            }
            listener.await;
        }
    }

    /// Sleeps for `d`, or until shutdown if that comes first; says whether it did.
    pub async fn sleep(&self, d: Duration) -> bool {
        use smol::future::FutureExt;
        async {
            smol::Timer::after(d).await;
            false
        }
        .or(async {
            self.wait().await;
            true
        })
        .await
    }

    /// The grace period for in-flight work after the trigger.
    pub fn drain_timeout(&self) -> Duration {
        self.flag.drain
    }
}

/// Registers SIGTERM and SIGINT handlers now and returns a future that resolves on the first
/// of them. Registration is eager so a signal arriving before the first poll is not lost.
pub fn on_signals() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut signals = Signals::new([Signal::Term, Signal::Int])?;
    Ok(async move {
        match signals.next().await {
            Some(Ok(signal)) => tracing::info!(?signal, "shutdown requested"),
            Some(Err(e)) => tracing::warn!(error = %e, "signal stream failed; shutting down"),
            None => tracing::warn!("signal stream ended; shutting down"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_resolves_after_trigger_and_for_late_listeners() {
        let shutdown = Shutdown::new(Duration::from_secs(1));
        let signal = shutdown.signal();
        let late = signal.clone();
        assert!(!signal.is_triggered());
        smol::block_on(async {
            let waiting = smol::spawn(async move { signal.wait().await });
            // Not yet triggered: a poll does not complete.
            assert!(smol::future::poll_once(late.wait()).await.is_none());
            shutdown.trigger();
            waiting.await;
            late.wait().await;
        });
        assert!(late.is_triggered());
        assert_eq!(late.drain_timeout(), Duration::from_secs(1));
    }

    #[test]
    fn on_signals_resolves_on_sigterm() {
        let signalled = on_signals().unwrap();
        // The handler is installed by now, so the signal is caught instead of ending the
        // test process.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        smol::block_on(signalled);
    }
}

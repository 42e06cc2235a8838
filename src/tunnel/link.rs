//! The box side: one outbound link to the relay of `tunnel.via`, kept up with backoff.
//!
//! The link is PubkyTLS with the relay's key checked, then this box's signed hello
//! ([`super::wire`]). The relay answers with the public port it gives this box. With
//! `use_relay = "always"` the record announces the relay's address and that port at once
//! ([`PublicAddress::set_relayed`]); with `"when_unreachable"` only after the relay's
//! connect-back failed to reach the box at its own address. Either way it keeps doing so
//! while the link is being made again: the box's own address reached nobody. Each stream the relay opens is one client; it is spliced to the
//! box's relayed PubkyTLS listener on loopback, which reads the PROXY line the relay put in
//! front, so rate limits and connection shares count the real client.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::net::TcpStream;
use smol::Executor;

use super::wire::{self, Answer};
use super::{LinkState, HANDSHAKE_TIMEOUT};
use crate::announce::worker::save_json;
use crate::announce::PublicAddress;
use crate::config::{RelayTarget, RelayUse};
use crate::runtime::shutdown::ShutdownSignal;

/// First wait after a failed link; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A link that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
/// How often a busy link's counters are written to its report.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Time for the relay's answer to a connect-back request.
const CHECK_ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// Checks are at least this far apart.
const MIN_CHECK_GAP: Duration = Duration::from_secs(2);
/// Streams (clients) one link carries at once.
const MAX_STREAMS: usize = 256;

pub struct Link {
    pub target: RelayTarget,
    pub signing: SigningKey,
    /// The loopback PubkyTLS listener that takes relayed clients (PROXY preface first).
    pub ingress: SocketAddr,
    pub address: Arc<PublicAddress>,
    pub data_dir: PathBuf,
    pub ex: Arc<Executor<'static>>,
    /// The report, shared with tests.
    pub state: Arc<Mutex<LinkState>>,
    pub use_relay: RelayUse,
    pub check_interval: Duration,
    /// The PubkyTLS port the record announces when the router maps none.
    pub direct_port: u16,
}

impl Link {
    /// Keeps the link up until `shutdown`.
    pub async fn run(self, shutdown: ShutdownSignal) {
        let mut retry = RETRY_MIN;
        loop {
            self.report(|s| {
                s.state = "connecting".into();
            });
            let started = Instant::now();
            let ended = async { Some(self.session().await) }
                .or(async {
                    shutdown.wait().await;
                    None
                })
                .await;
            let Some(ended) = ended else {
                return;
            };
            if started.elapsed() >= STABLE {
                retry = RETRY_MIN;
            }
            let why = match ended {
                Ok(()) => "the relay closed the link".to_string(),
                Err(e) => e,
            };
            tracing::warn!(relay = %self.target, retry_s = retry.as_secs(), "relay link: {why}");
            self.report(|s| {
                s.state = "waiting".into();
                s.last_error = Some(why);
            });
            let stop = shutdown.sleep(retry).await;
            if stop {
                return;
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
    }

    /// The shared report, for counters that reach the file later.
    fn counted(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, f: impl FnOnce(&mut LinkState)) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.relay = self.target.to_string();
        let was = s.state.clone();
        f(&mut s);
        if s.state != was {
            s.since_secs = crate::clock::now_secs();
        }
        save_json(&self.data_dir, super::LINK_FILE, &*s);
    }

    /// One link, from dialling to its end (which is always an error: the link is kept).
    async fn session(&self) -> Result<(), String> {
        let (tls, relay_at) = async { self.dial().await }
            .or(async {
                smol::Timer::after(HANDSHAKE_TIMEOUT).await;
                Err("no answer within the handshake time".to_string())
            })
            .await?;
        let always = self.use_relay == RelayUse::Always;
        if always {
            self.address.set_relayed(relay_at);
            tracing::info!(relay = %self.target, %relay_at, "relay link up; the record announces the relay");
        } else {
            tracing::info!(relay = %self.target, %relay_at, "relay link up; asking it to connect back");
        }
        self.report(|s| {
            s.state = "connected".into();
            s.published = Some(relay_at.to_string());
            s.links += 1;
            s.in_record = self.address.relayed().is_some();
        });
        let conn =
            yamux::Connection::new(tls, super::yamux_config(MAX_STREAMS), yamux::Mode::Server);
        let (open, requests) = smol::channel::bounded(4);
        let (ex, ingress, state) = (self.ex.clone(), self.ingress, self.state.clone());
        let driven = super::drive(conn, requests, move |stream| {
            state.lock().unwrap_or_else(|e| e.into_inner()).forwarded += 1;
            ex.spawn(async move {
                if let Err(e) = serve_stream(stream, ingress).await {
                    tracing::debug!("relayed client ended: {e}");
                }
            })
            .detach();
        });
        let ended = driven.or(self.keep(open, relay_at, !always)).await;
        Err(ended)
    }

    /// While the link is up: brings the report file's counters up to date within
    /// [`REPORT_EVERY`] and, with `checking`, has the relay connect back at the start, every
    /// `check_interval` and whenever the address changes. Never ends by itself.
    async fn keep(
        &self,
        open: smol::channel::Sender<super::Opened>,
        relay_at: SocketAddr,
        checking: bool,
    ) -> String {
        let mut reported = self.counted().forwarded;
        let mut next_check = checking.then(Instant::now);
        let mut last_check: Option<Instant> = None;
        loop {
            if next_check.is_some_and(|at| at <= Instant::now()) {
                // At most one check every MIN_CHECK_GAP, however often the address moves.
                if let Some(gap) = last_check.map(|t| MIN_CHECK_GAP.saturating_sub(t.elapsed())) {
                    smol::Timer::after(gap).await;
                }
                self.check(&open, relay_at).await;
                last_check = Some(Instant::now());
                next_check = Some(Instant::now() + self.check_interval);
            }
            let changed = self.address.changed();
            let wait = next_check.map_or(REPORT_EVERY, |at| {
                at.saturating_duration_since(Instant::now())
                    .min(REPORT_EVERY)
            });
            let moved = async {
                changed.await;
                true
            }
            .or(async {
                smol::Timer::after(wait).await;
                false
            })
            .await;
            if moved && checking {
                next_check = Some(Instant::now());
            }
            let n = self.counted().forwarded;
            if n != reported {
                reported = n;
                self.report(|_| ());
            }
        }
    }

    /// One connect-back: the relay connects to the address this link comes from at the
    /// box's own PubkyTLS port and must complete a handshake with the box's key. The record
    /// names this box's own address only if that worked and the relay reached it at the
    /// address this box announces; else it names the relay.
    async fn check(&self, open: &smol::channel::Sender<super::Opened>, relay_at: SocketAddr) {
        let port = self
            .address
            .direct_pubky_tls_port()
            .unwrap_or(self.direct_port);
        let asked = async {
            let mut s = super::open_stream(open).await.map_err(|e| e.to_string())?;
            s.write_all(wire::check_request(port).as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())?;
            let line = super::read_line(&mut s).await.map_err(|e| e.to_string())?;
            wire::Checked::parse(&line)
        }
        .or(async {
            smol::Timer::after(CHECK_ANSWER_TIMEOUT).await;
            Err("the relay did not answer".to_string())
        })
        .await;
        let own = self.address.direct_ip();
        let outcome = match asked {
            Ok(wire::Checked::Busy) => {
                tracing::debug!(relay = %self.target, "the relay is busy with another check");
                return;
            }
            Err(e) => {
                tracing::warn!(relay = %self.target, "connect-back check failed: {e}");
                return;
            }
            Ok(wire::Checked::Reached { at, ms }) if own == Some(at.ip()) => {
                Ok(format!("{at} ({ms} ms)"))
            }
            Ok(wire::Checked::Reached { at, .. }) => Err(format!(
                "reached at {at}, but this box announces {}",
                own.map_or("no address yet".into(), |ip| ip.to_string())
            )),
            Ok(wire::Checked::Failed(why)) => Err(why),
        };
        match &outcome {
            Ok(at) => {
                self.address.clear_relayed();
                tracing::info!(relay = %self.target, "the relay reached this box at {at}; the record names it");
            }
            Err(why) => {
                self.address.set_relayed(relay_at);
                tracing::info!(relay = %self.target, %relay_at, "the relay could not reach this box ({why}); the record names the relay");
            }
        }
        self.report(|s| {
            s.direct_ok = Some(outcome.is_ok());
            s.direct = Some(match outcome {
                Ok(at) | Err(at) => at,
            });
            s.checked_secs = crate::clock::now_secs();
            s.in_record = self.address.relayed().is_some();
        });
    }

    /// TCP, PubkyTLS with the relay's key, the hello, and the relay's answer.
    async fn dial(
        &self,
    ) -> Result<(futures_rustls::client::TlsStream<TcpStream>, SocketAddr), String> {
        let target = &self.target;
        let tcp = TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
        super::keepalive(&tcp);
        tcp.set_nodelay(true).ok();
        let mut tls = super::pubky_tls_connect(tcp, &target.key)
            .await
            .map_err(|e| format!("TLS with the relay (is its key {}?): {e}", target.key))?;
        let exported = tls
            .get_ref()
            .1
            .export_keying_material([0u8; 32], wire::EXPORTER_LABEL, None)
            .map_err(|e| format!("TLS exporter: {e}"))?;
        tls.write_all(wire::hello(&self.signing, &exported).as_bytes())
            .await
            .map_err(|e| format!("hello: {e}"))?;
        tls.flush().await.map_err(|e| format!("hello: {e}"))?;
        let line = super::read_line(&mut tls)
            .await
            .map_err(|e| format!("the relay's answer: {e}"))?;
        match Answer::parse(&line)? {
            Answer::No(why) => Err(format!("the relay refused: {why}")),
            Answer::Ok { port, ip } => {
                Ok((tls, SocketAddr::new(ip.unwrap_or(target.addr.ip()), port)))
            }
        }
    }
}

/// One relayed client: its stream spliced to the relayed listener.
async fn serve_stream(stream: yamux::Stream, ingress: SocketAddr) -> io::Result<()> {
    let tcp = TcpStream::connect(ingress).await?;
    tcp.set_nodelay(true).ok();
    super::splice(stream, tcp, None).await.map(|_| ())
}

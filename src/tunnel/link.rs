//! The box side: one outbound link to the relay of `tunnel.via`, kept up with backoff.
//!
//! The link is PubkyTLS with the relay's key checked, then this box's signed hello
//! ([`super::wire`]). Once the relay answers with the public port, the record announces the
//! relay's address and that port ([`PublicAddress::set_relayed`]), and it keeps doing so
//! while the link is being made again: in the households that need a relay, the box's own
//! address reaches nobody. Each stream the relay opens is one client; it is spliced to the
//! box's relayed PubkyTLS listener on loopback, which reads the PROXY line the relay put in
//! front, so rate limits and connection shares count the real client.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use futures_rustls::TlsConnector;
use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::net::TcpStream;
use smol::Executor;

use super::wire::{self, Answer};
use super::{LinkState, HANDSHAKE_TIMEOUT};
use crate::announce::worker::save_json;
use crate::announce::PublicAddress;
use crate::config::RelayTarget;
use crate::runtime::shutdown::ShutdownSignal;

/// First wait after a failed link; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A link that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
/// How often a busy link's counters are written to its report.
const REPORT_EVERY: Duration = Duration::from_secs(5);
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
            let stop = async {
                smol::Timer::after(retry).await;
                false
            }
            .or(async {
                shutdown.wait().await;
                true
            })
            .await;
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

    /// One link, from dialling to its end.
    async fn session(&self) -> Result<(), String> {
        let (tls, published) = async { self.dial().await }
            .or(async {
                smol::Timer::after(HANDSHAKE_TIMEOUT).await;
                Err("no answer within the handshake time".to_string())
            })
            .await?;
        self.address.set_relayed(published);
        tracing::info!(relay = %self.target, %published, "relay link up; the record announces the relay");
        self.report(|s| {
            s.state = "connected".into();
            s.published = Some(published.to_string());
            s.links += 1;
        });
        let mut conn =
            yamux::Connection::new(tls, super::yamux_config(MAX_STREAMS), yamux::Mode::Server);
        let mut reported = 0;
        loop {
            let next = async { Some(smol::future::poll_fn(|cx| conn.poll_next_inbound(cx)).await) }
                .or(async {
                    smol::Timer::after(REPORT_EVERY).await;
                    None
                })
                .await;
            let stream = match next {
                // The report file's counters follow within REPORT_EVERY.
                None => {
                    let n = self.counted().forwarded;
                    if n != reported {
                        reported = n;
                        self.report(|_| ());
                    }
                    continue;
                }
                Some(None) => return Ok(()),
                Some(Some(Err(e))) => return Err(e.to_string()),
                Some(Some(Ok(stream))) => stream,
            };
            self.counted().forwarded += 1;
            let ingress = self.ingress;
            self.ex
                .spawn(async move {
                    if let Err(e) = serve_stream(stream, ingress).await {
                        tracing::debug!("relayed client ended: {e}");
                    }
                })
                .detach();
        }
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
        let name = rustls::pki_types::ServerName::try_from(target.key.to_z32())
            .map_err(|e| format!("relay key as a server name: {e}"))?;
        let connector = TlsConnector::from(crate::http::tls::client_config(&target.key));
        let mut tls = connector
            .connect(name, tcp)
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

//! The relay side: boxes dial in on `tunnel.listen_socket`, prove their key, and get the
//! public port configured for them in `tunnel.boxes`; every client that connects to that
//! port is forwarded to the box through its link, as one yamux stream opened by the relay.
//!
//! Bounds: a box's link replaces its previous one; links still in their handshake are
//! capped ([`MAX_PENDING`]) and timed ([`super::HANDSHAKE_TIMEOUT`]); each box has at most
//! `tunnel.max_connections_per_box` forwarded connections and
//! `tunnel.max_kib_per_second_per_box` over all of them; a client arriving while its box
//! is not linked is closed at once.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_rustls::TlsAcceptor;
use smol::channel::Sender;
use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Task};

use super::wire::{self, Answer};
use super::{drive, Opened, RelayState, ServedState, HANDSHAKE_TIMEOUT};
use crate::announce::worker::save_json;
use crate::announce::PublicAddress;
use crate::config::Tunnel;
use crate::limits::bandwidth::Throttle;
use crate::pubkey::PublicKey;
use crate::runtime::shutdown::ShutdownSignal;

/// How often the counters in the report file are brought up to date.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Links at most in their handshake at once; more are closed on arrival.
pub const MAX_PENDING: usize = 16;

/// A box's current link: ask it for a stream through `open`.
struct Link {
    id: u64,
    from: SocketAddr,
    open: Sender<Opened>,
}

/// One box the relay serves.
struct Served {
    key: PublicKey,
    port: u16,
    link: Mutex<Option<Link>>,
    since: AtomicU64,
    open: AtomicUsize,
    forwarded: AtomicU64,
    bytes: AtomicU64,
    refused: AtomicU64,
    /// A connect-back check is running.
    checking: std::sync::atomic::AtomicBool,
}

struct Hub {
    boxes: HashMap<PublicKey, Arc<Served>>,
    tls: TlsAcceptor,
    /// The relay's own public address, told to each box for its record.
    address: Arc<PublicAddress>,
    max_connections: usize,
    rate: u64,
    throttle: Throttle,
    listen: SocketAddr,
    data_dir: PathBuf,
    next_link: AtomicU64,
    pending: AtomicUsize,
    ex: Arc<Executor<'static>>,
    shutdown: ShutdownSignal,
}

/// A running relay: its accept loops end at the shutdown signal.
pub struct Relay {
    tasks: Vec<Task<()>>,
    hub: Arc<Hub>,
    pub listen: SocketAddr,
}

impl Relay {
    /// Binds the link listener and every box's public port, then serves them on `ex`.
    pub async fn start(
        ex: &Arc<Executor<'static>>,
        settings: &Tunnel,
        listen: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        address: Arc<PublicAddress>,
        data_dir: PathBuf,
        shutdown: ShutdownSignal,
    ) -> io::Result<Relay> {
        let control = TcpListener::bind(listen)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("tunnel.listen_socket {listen}: {e}")))?;
        let listen = control.local_addr()?;
        let mut publics = Vec::new();
        for b in &settings.boxes {
            let at = SocketAddr::new(listen.ip(), b.port);
            let l = TcpListener::bind(at).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("tunnel.boxes: port {} for {}: {e}", b.port, b.key),
                )
            })?;
            publics.push((b.key, l));
        }
        let now = crate::clock::now_secs();
        let hub = Arc::new(Hub {
            boxes: settings
                .boxes
                .iter()
                .map(|b| {
                    let served = Served {
                        key: b.key,
                        port: b.port,
                        link: Mutex::new(None),
                        since: AtomicU64::new(now),
                        open: AtomicUsize::new(0),
                        forwarded: AtomicU64::new(0),
                        bytes: AtomicU64::new(0),
                        refused: AtomicU64::new(0),
                        checking: std::sync::atomic::AtomicBool::new(false),
                    };
                    (b.key, Arc::new(served))
                })
                .collect(),
            tls: TlsAcceptor::from(tls),
            address,
            max_connections: settings.max_connections_per_box,
            rate: settings.max_bytes_per_second_per_box,
            throttle: Throttle::default(),
            listen,
            data_dir,
            next_link: AtomicU64::new(1),
            pending: AtomicUsize::new(0),
            ex: ex.clone(),
            shutdown,
        });
        hub.save();
        let mut tasks = vec![
            ex.spawn(hub.clone().accept_links(control)),
            ex.spawn(hub.clone().keep_report()),
        ];
        for (key, l) in publics {
            let served = hub.boxes[&key].clone();
            tasks.push(ex.spawn(hub.clone().accept_clients(served, l)));
        }
        tracing::info!(%listen, boxes = settings.boxes.len(), "relay for other boxes is listening");
        Ok(Relay { tasks, hub, listen })
    }

    /// What the relay knows of each box it serves, now.
    pub fn report(&self) -> RelayState {
        self.hub.report()
    }

    /// Waits for the accept loops to end (they end at the shutdown signal).
    pub async fn stop(self) {
        for t in self.tasks {
            t.await;
        }
    }
}

impl Hub {
    /// Saves the report on every link change, and the counters every [`REPORT_EVERY`].
    fn save(&self) {
        save_json(&self.data_dir, super::RELAY_FILE, &self.report());
    }

    async fn keep_report(self: Arc<Self>) {
        let mut saved = self.report();
        loop {
            let stop = self.shutdown.sleep(REPORT_EVERY).await;
            let now = self.report();
            if now != saved {
                save_json(&self.data_dir, super::RELAY_FILE, &now);
                saved = now;
            }
            if stop {
                return;
            }
        }
    }

    fn report(&self) -> RelayState {
        let mut boxes: Vec<ServedState> = self
            .boxes
            .values()
            .map(|s| {
                let link = s.link.lock().unwrap_or_else(|e| e.into_inner());
                ServedState {
                    key: s.key.to_z32(),
                    port: s.port,
                    connected: link.is_some(),
                    from: link.as_ref().map(|l| l.from.to_string()),
                    since_secs: s.since.load(Ordering::Relaxed),
                    open: s.open.load(Ordering::Relaxed),
                    forwarded: s.forwarded.load(Ordering::Relaxed),
                    bytes: s.bytes.load(Ordering::Relaxed),
                    refused: s.refused.load(Ordering::Relaxed),
                }
            })
            .collect();
        boxes.sort_by_key(|b| b.port);
        RelayState {
            listen: self.listen.to_string(),
            boxes,
        }
    }

    /// The next connection on `listener`; `None` at shutdown. A failed accept (a full fd
    /// table) is logged and retried after a pause.
    async fn accept(&self, listener: &TcpListener, what: &str) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let accepted = async { Some(listener.accept().await) }
                .or(async {
                    self.shutdown.wait().await;
                    None
                })
                .await?;
            match accepted {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "relay: accepting {what} failed");
                    if self
                        .shutdown
                        .sleep(std::time::Duration::from_millis(100))
                        .await
                    {
                        return None;
                    }
                }
            }
        }
    }

    async fn accept_links(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Some((tcp, peer)) = self.accept(&listener, "a link").await else {
                return;
            };
            if self.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                tracing::debug!(%peer, "relay: too many links in their handshake; closed");
                continue;
            }
            let hub = self.clone();
            self.ex
                .spawn(async move {
                    let shutdown = hub.shutdown.clone();
                    hub.link(tcp, peer).or(shutdown.wait()).await;
                })
                .detach();
        }
    }

    /// One box's link, from its handshake until it ends or is replaced.
    async fn link(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        super::keepalive(&tcp);
        // Small frames (a request head, a handshake flight) must not wait for Nagle.
        tcp.set_nodelay(true).ok();
        let greeted = async { Some(self.greet(tcp).await) }
            .or(async {
                smol::Timer::after(HANDSHAKE_TIMEOUT).await;
                None
            })
            .await;
        self.pending.fetch_sub(1, Ordering::SeqCst);
        let (tls, served) = match greeted {
            None => {
                tracing::debug!(%peer, "relay: link handshake timed out");
                return;
            }
            Some(Err(e)) => {
                tracing::info!(%peer, "relay: link refused: {e}");
                return;
            }
            Some(Ok(ok)) => ok,
        };
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let (open, requests) = smol::channel::bounded(64);
        let replaced = served
            .link
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(Link {
                id,
                from: peer,
                open,
            });
        served
            .since
            .store(crate::clock::now_secs(), Ordering::Relaxed);
        self.save();
        tracing::info!(box_key = %served.key, %peer, replaced = replaced.is_some(), "relay: box linked");
        drop(replaced);
        let conn = yamux::Connection::new(
            tls,
            super::yamux_config(self.max_connections),
            yamux::Mode::Client,
        );
        let (ex, box_key) = (self.ex.clone(), served.key);
        let checker = served.clone();
        let ended = drive(conn, requests, move |stream| {
            let served = checker.clone();
            ex.spawn(async move {
                // One connect-back at a time per box; another is told so.
                let allowed = !served.checking.swap(true, Ordering::SeqCst);
                let r = check_back(stream, peer.ip(), box_key, allowed).await;
                if allowed {
                    served.checking.store(false, Ordering::SeqCst);
                }
                if let Err(e) = r {
                    tracing::debug!(%box_key, "relay: connect-back request ended: {e}");
                }
            })
            .detach();
        })
        .await;
        let mut link = served.link.lock().unwrap_or_else(|e| e.into_inner());
        if link.as_ref().is_some_and(|l| l.id == id) {
            *link = None;
            drop(link);
            served
                .since
                .store(crate::clock::now_secs(), Ordering::Relaxed);
            self.save();
        }
        tracing::info!(box_key = %served.key, %peer, "relay: box link ended: {ended}");
    }

    /// TLS with this relay's key, then the box's hello and our answer.
    async fn greet(
        &self,
        tcp: TcpStream,
    ) -> Result<(futures_rustls::server::TlsStream<TcpStream>, Arc<Served>), String> {
        let mut tls = self
            .tls
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let exported = tls
            .get_ref()
            .1
            .export_keying_material([0u8; 32], wire::EXPORTER_LABEL, None)
            .map_err(|e| format!("TLS exporter: {e}"))?;
        let line = super::read_line(&mut tls)
            .await
            .map_err(|e| format!("hello: {e}"))?;
        let checked = wire::check_hello(&line, &exported).and_then(|key| {
            self.boxes
                .get(&key)
                .cloned()
                .ok_or_else(|| format!("{key} is not a box this relay serves"))
        });
        let answer = match &checked {
            Ok(served) => Answer::Ok {
                port: served.port,
                // What this relay's own record announces, else the address it listens on.
                ip: self.address.get().or_else(|| {
                    let ip = self.listen.ip();
                    (!ip.is_unspecified()).then_some(ip)
                }),
            },
            Err(why) => Answer::No(why.clone()),
        };
        tls.write_all(answer.line().as_bytes())
            .await
            .map_err(|e| format!("answer: {e}"))?;
        tls.flush().await.map_err(|e| format!("answer: {e}"))?;
        checked.map(|served| (tls, served))
    }

    async fn accept_clients(self: Arc<Self>, served: Arc<Served>, listener: TcpListener) {
        loop {
            let Some((tcp, client)) = self.accept(&listener, "a client").await else {
                return;
            };
            let open = served
                .link
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|l| l.open.clone());
            let Some(open) = open else {
                served.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(box_key = %served.key, %client, "relay: box not linked; client closed");
                continue;
            };
            if served.open.fetch_add(1, Ordering::SeqCst) >= self.max_connections {
                served.open.fetch_sub(1, Ordering::SeqCst);
                served.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(box_key = %served.key, %client, "relay: box at its connection cap");
                continue;
            }
            let hub = self.clone();
            let served = served.clone();
            self.ex
                .spawn(async move {
                    let local = tcp.local_addr().unwrap_or(hub.listen);
                    let shutdown = hub.shutdown.clone();
                    let r = hub
                        .forward(&served, tcp, client, local, open)
                        .or(async {
                            shutdown.wait().await;
                            Ok(())
                        })
                        .await;
                    served.open.fetch_sub(1, Ordering::SeqCst);
                    if let Err(e) = r {
                        tracing::debug!(box_key = %served.key, %client, "relay: forward ended: {e}");
                    }
                })
                .detach();
        }
    }

    async fn forward(
        &self,
        served: &Served,
        tcp: TcpStream,
        client: SocketAddr,
        local: SocketAddr,
        open: Sender<Opened>,
    ) -> io::Result<()> {
        let mut stream = super::open_stream(&open).await?;
        served.forwarded.fetch_add(1, Ordering::Relaxed);
        stream
            .write_all(wire::proxy_line(client, local).as_bytes())
            .await?;
        tcp.set_nodelay(true).ok();
        let key = served.key.to_z32();
        let pace = super::Pace {
            throttle: &self.throttle,
            key: &key,
            rate: self.rate,
            moved: &served.bytes,
        };
        super::splice(tcp, stream, Some(&pace)).await.map(|_| ())
    }
}

/// How long a connect-back may take, connection and handshake together.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves one `CHECK <port>` from a box: connects to `box_ip` (where its link comes from,
/// never an address the box names) at that port and completes a PubkyTLS handshake that
/// must present `box_key`; answers what happened. `allowed` is false while another check
/// of the same box runs.
async fn check_back(
    mut stream: yamux::Stream,
    box_ip: std::net::IpAddr,
    box_key: PublicKey,
    allowed: bool,
) -> io::Result<()> {
    let line = async { super::read_line(&mut stream).await.map(Some) }
        .or(async {
            smol::Timer::after(HANDSHAKE_TIMEOUT).await;
            Ok(None)
        })
        .await?;
    let Some(line) = line else {
        return Ok(());
    };
    let answer = match wire::parse_check_request(&line) {
        Err(e) => wire::Checked::Failed(e),
        Ok(_) if !allowed => wire::Checked::Busy,
        Ok(port) => {
            let at = SocketAddr::new(box_ip, port);
            let start = std::time::Instant::now();
            let attempt = async {
                let tcp = TcpStream::connect(at)
                    .await
                    .map_err(|e| format!("cannot connect to {at}: {e}"))?;
                super::pubky_tls_connect(tcp, &box_key).await.map_err(|e| {
                    format!("no PubkyTLS handshake with this box's key at {at}: {e}")
                })?;
                Ok::<_, String>(())
            }
            .or(async {
                smol::Timer::after(CHECK_TIMEOUT).await;
                Err(format!(
                    "no answer from {at} within {} s",
                    CHECK_TIMEOUT.as_secs()
                ))
            })
            .await;
            match attempt {
                Ok(()) => wire::Checked::Reached {
                    at,
                    ms: start.elapsed().as_millis() as u64,
                },
                Err(e) => wire::Checked::Failed(e),
            }
        }
    };
    stream.write_all(answer.line().as_bytes()).await?;
    stream.close().await
}

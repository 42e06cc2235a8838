//! Every socket the server listens on, bound before anything is served (so a port in use
//! stops start-up with its address named), then each run by `http::serve` with its own
//! connection accounting: the client API over plain HTTP (ICANN) and PubkyTLS, the optional
//! dedicated pkarr relay, and the operator listeners (admin API, metrics).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use smol::net::TcpListener;
use smol::{Executor, Task};

use crate::config::{ClientIdentity, Config, TrustedProxies};
use crate::http::tls::PubkyTls;
use crate::http::{serve, App, ConnStats, PlainTcp, ServerLimits};
use crate::runtime::shutdown::ShutdownSignal;

/// The bound sockets, not yet served.
pub struct Listeners {
    icann: TcpListener,
    pubky_tls: TcpListener,
    relay: Option<TcpListener>,
    /// PubkyTLS for the clients a relay forwards (`tunnel.via`): loopback, PROXY line first.
    relayed: Option<TcpListener>,
    admin: Option<TcpListener>,
    metrics: Option<TcpListener>,
    dashboard: Option<TcpListener>,
}

/// Where each listener ended up (port 0 in the config picks a free port).
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub icann: SocketAddr,
    pub pubky_tls: SocketAddr,
    pub relay: Option<SocketAddr>,
    pub relayed: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub dashboard: Option<SocketAddr>,
}

/// One task per listener, each with its own connection counts.
pub struct Served {
    pub icann: Task<io::Result<()>>,
    pub pubky_tls: Task<io::Result<()>>,
    pub relay: Option<Task<io::Result<()>>>,
    pub relayed: Option<Task<io::Result<()>>>,
    pub admin: Option<Task<io::Result<()>>>,
    pub metrics: Option<Task<io::Result<()>>>,
    pub dashboard: Option<Task<io::Result<()>>>,
}

impl Served {
    /// The tasks in the order they stop: client listeners first, then the operator ones.
    pub fn into_stop_order(self) -> impl Iterator<Item = (&'static str, Task<io::Result<()>>)> {
        [
            ("http", Some(self.icann)),
            ("pubky-tls", Some(self.pubky_tls)),
            ("relayed pubky-tls", self.relayed),
            ("relay", self.relay),
            ("admin", self.admin),
            ("metrics", self.metrics),
            ("dashboard", self.dashboard),
        ]
        .into_iter()
        .filter_map(|(name, t)| t.map(|t| (name, t)))
    }
}

/// Where the relayed PubkyTLS listener binds: loopback, any free port.
const RELAYED: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Loopback, the only peer the relayed listener takes.
fn loopback() -> TrustedProxies {
    // Invariant: both are valid networks.
    TrustedProxies::new(vec![
        "127.0.0.0/8".parse().expect("valid network"),
        "::1".parse().expect("valid network"),
    ])
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let bound = if addr.is_ipv6() && addr.ip().is_unspecified() {
        match dual_stack(addr) {
            // A kernel without IPv6 (ipv6.disable=1): every IPv4 address still serves.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::AFNOSUPPORT.raw_os_error()) => {
                let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
                tracing::warn!(%addr, "this kernel has no IPv6: listening on {v4} instead");
                TcpListener::bind(v4).await
            }
            other => other.and_then(TcpListener::try_from),
        }
    } else {
        TcpListener::bind(addr).await
    };
    bound.with_context(|| format!("cannot listen on {addr}"))
}

/// A listener on `[::]` that takes IPv4 too (as IPv4-mapped addresses, which the limits
/// and proxy rules read as IPv4), whatever the system's `net.ipv6.bindv6only` says.
fn dual_stack(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::INET6,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_ipv6_v6only(&fd, false)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 1024)?;
    Ok(std::net::TcpListener::from(fd))
}

async fn bind_if(on: bool, addr: Option<SocketAddr>) -> Result<Option<TcpListener>> {
    match addr {
        Some(a) if on => Ok(Some(bind(a).await?)),
        _ => Ok(None),
    }
}

/// The dashboard's socket: the one systemd passed as `dashboard` (port 80 on the image,
/// bound by systemd so the service needs no privilege), else `dashboard.listen_socket`.
async fn bind_dashboard(config: &Config) -> Result<Option<TcpListener>> {
    if !config.dashboard.enabled {
        return Ok(None);
    }
    if let Some(passed) = crate::runtime::systemd::passed_listener("dashboard") {
        let l = passed.context("the dashboard socket systemd passed")?;
        return Ok(Some(
            TcpListener::try_from(l).context("the dashboard socket systemd passed")?,
        ));
    }
    bind_if(true, Some(config.dashboard.listen_socket)).await
}

fn local(l: &Option<TcpListener>) -> io::Result<Option<SocketAddr>> {
    l.as_ref().map(TcpListener::local_addr).transpose()
}

impl Listeners {
    /// Binds every enabled listener.
    pub async fn bind(config: &Config) -> Result<Listeners> {
        let relay = &config.pkarr_relay;
        Ok(Listeners {
            icann: bind(config.drive.icann_listen_socket).await?,
            pubky_tls: bind(config.drive.pubky_listen_socket).await?,
            relay: bind_if(relay.enabled, relay.listen_socket).await?,
            relayed: bind_if(config.tunnel.via.is_some(), Some(RELAYED)).await?,
            admin: bind_if(config.admin.enabled, Some(config.admin.listen_socket)).await?,
            metrics: bind_if(config.metrics.enabled, Some(config.metrics.listen_socket)).await?,
            dashboard: bind_dashboard(config).await?,
        })
    }

    pub fn addresses(&self) -> io::Result<Addresses> {
        Ok(Addresses {
            icann: self.icann.local_addr()?,
            pubky_tls: self.pubky_tls.local_addr()?,
            relay: local(&self.relay)?,
            relayed: local(&self.relayed)?,
            admin: local(&self.admin)?,
            metrics: local(&self.metrics)?,
            dashboard: local(&self.dashboard)?,
        })
    }

    /// Serves every listener on `ex` until `signal`.
    pub fn serve(
        self,
        ex: &Arc<Executor<'static>>,
        app: &Arc<App>,
        tls: PubkyTls,
        limits: &ServerLimits,
        signal: &ShutdownSignal,
    ) -> Result<Served> {
        let client = {
            let app = app.clone();
            move |req, _conn| {
                let app = app.clone();
                async move { crate::http::handle(&app, req).await }
            }
        };
        let (icann_conns, tls_conns, relay_conns, relayed_conns) = (
            ConnStats::new(),
            ConnStats::new(),
            ConnStats::new(),
            ConnStats::new(),
        );
        // Each client listener learns its clients as its `*_client_identity` says.
        let identity = |id: &ClientIdentity| ServerLimits {
            proxy_protocol: match id {
                ClientIdentity::Direct => None,
                ClientIdentity::ProxyProtocol(p) => Some(Arc::new(p.clone())),
            },
            ..limits.clone()
        };
        let drive = &app.config.drive;
        // The bound port (the config may say 0): the dashboard's verdict names it.
        let tls_port = self.pubky_tls.local_addr()?.port();
        let icann = spawn_with(
            ex,
            self.icann,
            PlainTcp,
            &identity(&drive.icann_client_identity),
            signal,
            client.clone(),
            &icann_conns,
        );
        let tls_limits = identity(&drive.pubky_client_identity);
        let relayed = self.relayed.map(|l| {
            // Only the link (on loopback) connects here, and it passes on the relay's PROXY
            // line: the client it names is who the limits count.
            let limits = ServerLimits {
                proxy_protocol: Some(Arc::new(loopback())),
                ..limits.clone()
            };
            spawn_with(
                ex,
                l,
                tls.clone(),
                &limits,
                signal,
                client.clone(),
                &relayed_conns,
            )
        });
        let pubky_tls = spawn_with(
            ex,
            self.pubky_tls,
            tls,
            &tls_limits,
            signal,
            client,
            &tls_conns,
        );
        let relay = self.relay.map(|l| {
            let app = app.clone();
            let handler = move |req, _conn| {
                let app = app.clone();
                async move { crate::http::relay::handle_root(&app, req).await }
            };
            spawn_with(ex, l, PlainTcp, limits, signal, handler, &relay_conns)
        });
        let admin = self.admin.map(|l| {
            let app = app.clone();
            spawn(ex, l, limits, signal, move |req, conn| {
                let app = app.clone();
                async move { crate::http::operator::admin(&app, req, conn).await }
            })
        });
        let client_conns = Arc::new([icann_conns, tls_conns, relay_conns, relayed_conns]);
        let metrics = self.metrics.map(|l| {
            let app = app.clone();
            spawn(ex, l, limits, signal, move |req, _conn| {
                let (app, conns) = (app.clone(), client_conns.clone());
                async move { crate::http::operator::metrics(&app, &conns[..], req).await }
            })
        });
        let dashboard = self.dashboard.map(|l| {
            let app = app.clone();
            let dash = crate::http::dashboard::Dashboard::new(ex, tls_port);
            spawn(ex, l, limits, signal, move |req, conn| {
                let (app, dash) = (app.clone(), dash.clone());
                async move { crate::http::dashboard::handle(&app, &dash, req, conn).await }
            })
        });
        Ok(Served {
            icann,
            pubky_tls,
            relayed,
            relay,
            admin,
            metrics,
            dashboard,
        })
    }
}

fn spawn<H, F>(
    ex: &Arc<Executor<'static>>,
    listener: TcpListener,
    limits: &ServerLimits,
    signal: &ShutdownSignal,
    handler: H,
) -> Task<io::Result<()>>
where
    H: Fn(hyper::Request<hyper::body::Incoming>, crate::http::ConnInfo) -> F
        + Send
        + Sync
        + 'static,
    F: std::future::Future<Output = hyper::Response<crate::http::Body>> + Send + 'static,
{
    spawn_with(
        ex,
        listener,
        PlainTcp,
        limits,
        signal,
        handler,
        &ConnStats::new(),
    )
}

fn spawn_with<A, H, F>(
    ex: &Arc<Executor<'static>>,
    listener: TcpListener,
    acceptor: A,
    limits: &ServerLimits,
    signal: &ShutdownSignal,
    handler: H,
    stats: &ConnStats,
) -> Task<io::Result<()>>
where
    A: crate::http::Acceptor + Send + 'static,
    H: Fn(hyper::Request<hyper::body::Incoming>, crate::http::ConnInfo) -> F
        + Send
        + Sync
        + 'static,
    F: std::future::Future<Output = hyper::Response<crate::http::Body>> + Send + 'static,
{
    let ex2 = ex.clone();
    let (limits, signal, stats) = (limits.clone(), signal.clone(), stats.clone());
    ex.spawn(async move { serve(&ex2, listener, acceptor, limits, handler, signal, stats).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_any_ipv6_address_takes_ipv4_clients_too() {
        smol::block_on(async {
            let l = bind("[::]:0".parse().unwrap()).await.unwrap();
            let port = l.local_addr().unwrap().port();
            for client in ["127.0.0.1", "::1"] {
                let ip: std::net::IpAddr = client.parse().unwrap();
                let _c = smol::net::TcpStream::connect((ip, port)).await.unwrap();
                let (_, peer) = l.accept().await.unwrap();
                // IPv4 clients arrive as IPv4-mapped addresses.
                let seen = match peer.ip() {
                    std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), Into::into),
                    v4 => v4,
                };
                assert_eq!(seen, ip);
            }
        });
    }
}

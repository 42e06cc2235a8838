//! Start-up and teardown in one place, as a runbook: data directory → identity → store (and
//! spooled signup tokens) → listeners ([`listeners`]) → workers ([`workers`]); on shutdown
//! the listeners drain first, then the workers stop and the store takes its final flush.
//! `cli` and the tests both start the server through [`start`].

pub mod listeners;
pub mod workers;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use anyhow::{Context, Result};
use smol::Executor;

use self::listeners::{Addresses, Listeners, Served};
use self::workers::{Probes, Workers};
use crate::announce::household::{Household, Listeners as HouseholdPorts};
use crate::announce::relay::Relay;
use crate::announce::{DhtClient, DhtSettings, PublicAddress};
use crate::config::Config;
use crate::http::tls::PubkyTls;
use crate::http::{App, ServerLimits};
use crate::identity::Identity;
use crate::pubkey::PublicKey;
use crate::runtime::shutdown::Shutdown;
use crate::store::{Store, StoreConfig};
use crate::tls::server_config;

/// A running homeserver: where it listens, what tests and commands may watch, and the
/// tasks [`Running::stop`] ends in order.
pub struct Running {
    pub public_key: PublicKey,
    pub data_dir: PathBuf,
    /// Where each listener ended up.
    pub addrs: Addresses,
    /// The address the record announces; setting it republishes.
    pub public_address: Arc<PublicAddress>,
    /// The DHT client, when `pkdns.dht` is on.
    pub dht: Option<DhtClient>,
    /// What the DHT workers report.
    pub probes: Probes,
    /// UPnP port mapping and mDNS announcement.
    pub household: Option<Household>,
    /// The relay rung, from either side.
    pub tunnels: Tunnels,
    shutdown: Shutdown,
    app: Arc<App>,
    listeners: Served,
    workers: Workers,
}

/// Creates the data directory if needed and keeps it private (0700): it holds the secret
/// key and every user's data, so a directory that group or others can enter is closed.
pub fn prepare_data_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    let meta = fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", dir.display());
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set permissions on {}", dir.display()))?;
    }
    Ok(())
}

pub fn store_config(config: &Config) -> StoreConfig {
    StoreConfig {
        cache_capacity_bytes: config.storage.cache_capacity_bytes,
        inline_max: config.storage.inline_max_bytes,
        durability: config.storage.durability,
        default_quota_bytes: config.storage.default_quota_bytes(),
    }
}

/// Starts the homeserver on `ex`, as a runbook: data directory → identity → store (and
/// spooled signup tokens) → listeners bound → discovery (DHT client, relay, public address)
/// → listeners served → DHT workers → household. Listeners are bound before this returns,
/// so the addresses in [`Running`] are live. [`Running::stop`] undoes it in reverse.
pub async fn start(
    ex: &Arc<Executor<'static>>,
    config: Config,
    data_dir: PathBuf,
) -> Result<Running> {
    prepare_data_dir(&data_dir)?;
    crate::backup::restore::ensure_not_restoring(&data_dir)?;
    if let Some(f) = crate::standby::state::Follow::load(&data_dir).filter(|f| !f.copied) {
        anyhow::bail!(
            "the first copy from the primary {} was interrupted: run `pubky-edge standby \
             pair CODE` again to finish it",
            f.primary
        );
    }
    let identity = Identity::load_or_create(&data_dir)?;
    let public_key = identity.public_key();
    let store = open_store(&config, &data_dir).await?;
    let listeners = Listeners::bind(&config).await?;
    let addrs = listeners.addresses()?;
    let found = discovery(&config)?;
    let shutdown = Shutdown::new(config.limits.shutdown_drain);
    let limits = server_limits(&config);
    let relay = found.relay.clone();
    let owner =
        crate::account::owner::Owner::load(&config.admin, &data_dir).map_err(anyhow::Error::msg)?;
    let app = Arc::new(App::new(
        store,
        config,
        public_key,
        data_dir.clone(),
        relay,
        owner,
    ));
    let tls = PubkyTls::new(server_config(identity.signing_key())?);
    let listeners = listeners.serve(ex, &app, tls, &limits, &shutdown.signal())?;
    let (workers, probes) = Workers::start(ex, &app, &identity, &addrs, &found, &shutdown);
    let household = Household::start(
        ex,
        &app.config,
        &public_key,
        HouseholdPorts {
            pubky_tls: addrs.pubky_tls,
            http: addrs.icann,
            relay: addrs.relay,
            dashboard: addrs.dashboard,
        },
        &found.address,
        &data_dir,
        shutdown.signal(),
    );
    let tunnels = Tunnels::start(
        ex,
        &app.config,
        &identity,
        &addrs,
        &found,
        &data_dir,
        &shutdown,
    )
    .await?;
    tracing::info!(
        public_key = %public_key,
        http = %addrs.icann,
        pubky_tls = %addrs.pubky_tls,
        admin = ?addrs.admin,
        metrics = ?addrs.metrics,
        dashboard = ?addrs.dashboard,
        relay = ?addrs.relay,
        dht = found.dht.is_some(),
        data = %data_dir.display(),
        "pubky-edge is serving"
    );
    Ok(Running {
        public_key,
        data_dir,
        addrs,
        public_address: found.address,
        dht: found.dht,
        probes,
        household: Some(household),
        tunnels,
        shutdown,
        app,
        listeners,
        workers,
    })
}

/// The relay rung: this box's link to its relay (`tunnel.via`) and, when this box is a
/// relay, the listeners for the boxes it serves.
pub struct Tunnels {
    link: Option<smol::Task<()>>,
    relay: Option<crate::tunnel::relay::Relay>,
    /// The link's report, while there is a link.
    pub link_state: Arc<std::sync::Mutex<crate::tunnel::LinkState>>,
    /// Where boxes connect, when this box is a relay.
    pub relay_listen: Option<std::net::SocketAddr>,
}

impl Tunnels {
    async fn start(
        ex: &Arc<Executor<'static>>,
        config: &Config,
        identity: &Identity,
        addrs: &Addresses,
        found: &Discovery,
        data_dir: &Path,
        shutdown: &Shutdown,
    ) -> Result<Tunnels> {
        let t = &config.tunnel;
        let link_state = Arc::new(std::sync::Mutex::new(crate::tunnel::LinkState::default()));
        let link = match (&t.via, addrs.relayed) {
            (Some(target), Some(ingress)) => {
                let link = crate::tunnel::link::Link {
                    target: target.clone(),
                    signing: identity.signing_key().clone(),
                    ingress,
                    address: found.address.clone(),
                    data_dir: data_dir.to_path_buf(),
                    ex: ex.clone(),
                    state: link_state.clone(),
                    use_relay: t.use_relay,
                    check_interval: t.check_interval,
                    direct_port: config.pkdns.announced_tls_port(addrs.pubky_tls.port()),
                };
                let signal = shutdown.signal();
                Some(ex.spawn(link.run(signal)))
            }
            _ => None,
        };
        let relay = match t.listen_socket {
            Some(listen) => Some(
                crate::tunnel::relay::Relay::start(
                    ex,
                    t,
                    listen,
                    server_config(identity.signing_key())?,
                    found.address.clone(),
                    data_dir.to_path_buf(),
                    shutdown.signal(),
                )
                .await?,
            ),
            None => None,
        };
        Ok(Tunnels {
            link,
            relay_listen: relay.as_ref().map(|r| r.listen),
            relay,
            link_state,
        })
    }

    /// The relay side's report, when this box is a relay.
    pub fn relay_report(&self) -> Option<crate::tunnel::RelayState> {
        self.relay.as_ref().map(|r| r.report())
    }

    async fn stop(self) {
        if let Some(t) = self.link {
            t.await;
        }
        if let Some(r) = self.relay {
            r.stop().await;
        }
    }
}

/// Opens the store and imports the signup tokens spooled while the server was down.
async fn open_store(config: &Config, data_dir: &Path) -> Result<Store> {
    // The first start of a release in a newer store format migrates the store first: tens
    // of seconds per million files on a small board (README, "Store formats").
    let store =
        crate::runtime::systemd::while_starting(|| Store::open(data_dir, store_config(config)))
            .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()))?;
    let imported = crate::account::spool::import(&store, data_dir, crate::clock::now_secs()).await;
    if imported > 0 {
        tracing::info!(imported, "signup tokens imported");
    }
    Ok(store)
}

/// A DHT client with the configured bootstrap nodes, when `pkdns.dht` is on.
pub fn dht_client(config: &Config) -> Result<Option<DhtClient>> {
    let pk = &config.pkdns;
    if !pk.dht {
        return Ok(None);
    }
    let settings = DhtSettings {
        bootstrap: pk.dht_bootstrap_nodes.clone(),
        request_timeout: pk.dht_request_timeout,
        port: None,
    };
    Ok(Some(
        DhtClient::start(&settings).context("cannot start the DHT client")?,
    ))
}

/// The DHT client (when on), the pkarr relay (when on) and the address to announce, held
/// back while the router is about to be asked for it.
fn discovery(config: &Config) -> Result<Discovery> {
    let pk = &config.pkdns;
    let dht = dht_client(config)?;
    let relay = config
        .pkarr_relay
        .enabled
        .then(|| Arc::new(Relay::new(dht.clone(), config.pkarr_relay.cache_entries)));
    let public_address = PublicAddress::new(
        pk.public_ip
            .or_else(|| auto_public_ip(config.drive.pubky_listen_socket.ip())),
    );
    // With `tunnel.use_relay = "always"`, the box's own address reaches nobody: nothing is
    // announced until the relay has answered with its endpoint.
    let always_relayed =
        config.tunnel.via.is_some() && config.tunnel.use_relay == crate::config::RelayUse::Always;
    if crate::announce::household::router_decides_address(config) || always_relayed {
        public_address.hold();
    }
    Ok(Discovery {
        dht,
        relay,
        address: public_address,
    })
}

/// How the server is found: the DHT client, the relay, and the address to announce.
pub struct Discovery {
    pub dht: Option<DhtClient>,
    pub relay: Option<Arc<Relay>>,
    pub address: Arc<PublicAddress>,
}

fn server_limits(config: &Config) -> ServerLimits {
    let l = &config.limits;
    ServerLimits {
        max_connections: l.max_connections,
        max_header_bytes: l.max_header_bytes,
        header_read_timeout: l.header_read_timeout,
        keep_alive: true,
        max_requests_per_connection: l.max_requests_per_connection,
        write_stall_timeout: l.write_stall_timeout,
        max_connections_per_ip: l.max_connections_per_ip,
        trusted_proxies: Arc::new(config.drive.trusted_proxies.clone()),
        proxy_protocol: None,
    }
}

/// The address to announce when none is configured: the listener's own when it is a
/// specific address, else the source address of the default route (found with a UDP
/// `connect`, which sends nothing).
pub fn auto_public_ip(listen: IpAddr) -> Option<IpAddr> {
    if !listen.is_unspecified() {
        return Some(listen);
    }
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    probe.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    Some(probe.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

impl Running {
    /// The runbook in reverse: the household (the router mapping goes first), the DHT
    /// workers, the listeners (in-flight requests finish, up to the drain deadline), then
    /// the store's final flush.
    pub async fn stop(mut self) -> Result<()> {
        // Event streams never finish on their own; end them so the drain does not wait.
        self.app.streams.close_all();
        self.app.store.wake_subscribers();
        self.shutdown.trigger();
        if let Some(h) = self.household.take() {
            h.stop().await;
        }
        self.tunnels.stop().await;
        self.workers.stop().await;
        for (name, task) in self.listeners.into_stop_order() {
            if let Err(e) = task.await {
                tracing::warn!(listener = name, "listener ended with an error: {e}");
            }
        }
        self.app
            .store
            .close()
            .await
            .map_err(|e| anyhow::anyhow!("closing the store: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.app.store
    }
}

//! Start-up and teardown in one place, as a runbook: data directory → identity → store (and
//! spooled signup tokens) → listeners ([`listeners`]) → workers ([`workers`]); on shutdown
//! the listeners drain first, then the workers stop and the store takes its final flush.
//! `cli` and the tests both start the server through [`start`].

pub mod listeners;
pub mod workers;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Mutex;

use anyhow::{Context, Result};
use event_listener::Event;
use smol::Executor;

use self::listeners::{Listeners, Served};
use self::workers::Workers;
use crate::announce::relay::Relay;
use crate::announce::{DhtClient, DhtSettings, PublicAddress, PublishStatus};
use crate::config::Config;
use crate::http::tls::{server_config, PubkyTls};
use crate::http::{App, ServerLimits};
use crate::identity::Identity;
use crate::pubkey::PublicKey;
use crate::runtime::shutdown::Shutdown;
use crate::store::{Store, StoreConfig};

/// A running homeserver: where it listens, what tests and commands may watch, and the
/// tasks [`Running::stop`] ends in order.
pub struct Running {
    pub icann_addr: SocketAddr,
    pub pubky_addr: SocketAddr,
    /// The dedicated pkarr relay listener, when configured.
    pub relay_addr: Option<SocketAddr>,
    /// The admin API, when enabled.
    pub admin_addr: Option<SocketAddr>,
    /// `GET /metrics`, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub public_key: PublicKey,
    pub data_dir: PathBuf,
    /// The address the record announces; setting it republishes.
    pub public_address: Arc<PublicAddress>,
    /// The DHT client, when `pkdns.dht` is on.
    pub dht: Option<DhtClient>,
    /// Outcome of the last publish of the homeserver record.
    pub publish_status: Arc<Mutex<PublishStatus>>,
    /// Notified after every publish attempt.
    pub publish_attempted: Arc<Event>,
    /// Notified after every pass of the users' republisher.
    pub users_republished: Arc<Event>,
    /// What the users' republisher's last pass did.
    pub users_report: Arc<Mutex<Option<crate::announce::users::PassReport>>>,
    /// UPnP port mapping and mDNS announcement.
    pub household: Option<crate::announce::household::Household>,
    shutdown: Shutdown,
    app: Arc<App>,
    listeners: Served,
    workers: Workers,
}

/// Creates the data directory (0700) if needed.
pub fn prepare_data_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set permissions on {}", dir.display()))?;
    }
    let meta = fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", dir.display());
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
/// spooled signup tokens) → listeners bound → DHT client → shared state → listeners served
/// → workers. Listeners are bound before this returns, so the addresses in [`Running`] are
/// live. [`Running::stop`] undoes it in reverse.
pub async fn start(
    ex: &Arc<Executor<'static>>,
    config: Config,
    data_dir: PathBuf,
) -> Result<Running> {
    prepare_data_dir(&data_dir)?;
    let identity = Identity::load_or_create(&data_dir)?;
    let public_key = identity.public_key();
    tracing::debug!(%public_key, "identity ready");
    let store = Store::open(&data_dir, store_config(&config))
        .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()))?;
    let imported = crate::account::spool::import(&store, &data_dir, crate::clock::now_secs()).await;
    if imported > 0 {
        tracing::info!(imported, "signup tokens imported");
    }

    let listeners = Listeners::bind(&config).await?;
    let addrs = listeners.addresses()?;
    let tls = PubkyTls::new(server_config(identity.signing_key())?);
    let limits = server_limits(&config);

    let pk = &config.pkdns;
    let dht = if pk.dht {
        let settings = DhtSettings {
            bootstrap: pk.dht_bootstrap_nodes.clone(),
            request_timeout: pk.dht_request_timeout,
            port: None,
        };
        Some(DhtClient::start(&settings).context("cannot start the DHT client")?)
    } else {
        None
    };
    let relay = config
        .pkarr_relay
        .enabled
        .then(|| Arc::new(Relay::new(dht.clone(), config.pkarr_relay.cache_entries)));
    let public_address = PublicAddress::new(
        pk.public_ip
            .or_else(|| auto_public_ip(config.drive.pubky_listen_socket.ip())),
    );
    if crate::announce::household::router_decides_address(&config) {
        public_address.hold();
    }

    let shutdown = Shutdown::new(config.limits.shutdown_drain);
    let app = Arc::new(App {
        store,
        streams: crate::limits::streams::Streams::new(config.events.max_streams),
        limiter: crate::limits::rate::Limiter::new(config.drive.rate_limits.clone()),
        config,
        homeserver: public_key,
        data_dir: data_dir.clone(),
        relay,
        metrics: Arc::new(crate::metrics::Metrics::new()),
        replay: Default::default(),
        throttle: Default::default(),
    });
    let listeners = listeners.serve(ex, &app, tls, &limits, &shutdown.signal())?;
    let workers = Workers::start(
        ex,
        &app,
        &identity,
        &addrs,
        &dht,
        &public_address,
        &shutdown,
    );
    let household = crate::announce::household::Household::start(
        ex,
        &app.config,
        &public_key,
        crate::announce::household::Listeners {
            pubky_tls: addrs.pubky_tls,
            http: addrs.icann,
            relay: addrs.relay,
        },
        &public_address,
        &data_dir,
        shutdown.signal(),
    );
    tracing::info!(
        public_key = %public_key,
        http = %addrs.icann,
        pubky_tls = %addrs.pubky_tls,
        admin = ?addrs.admin,
        metrics = ?addrs.metrics,
        relay = ?addrs.relay,
        dht = dht.is_some(),
        data = %data_dir.display(),
        "pubky-edge is serving"
    );
    Ok(Running {
        icann_addr: addrs.icann,
        pubky_addr: addrs.pubky_tls,
        relay_addr: addrs.relay,
        admin_addr: addrs.admin,
        metrics_addr: addrs.metrics,
        public_key,
        data_dir,
        public_address,
        dht,
        publish_status: workers.publish_status.clone(),
        publish_attempted: workers.publish_attempted.clone(),
        users_republished: workers.users_republished.clone(),
        users_report: workers.users_report.clone(),
        household: Some(household),
        shutdown,
        app,
        listeners,
        workers,
    })
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

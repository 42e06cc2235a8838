//! Start-up and teardown in one place, in order: data directory → identity → store (and
//! spooled signup tokens) → listeners → workers; on shutdown the listeners drain first, then
//! the store takes its final flush. `main` and the tests both start the server through here.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use smol::{Executor, Task};

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Mutex;

use event_listener::Event;

use crate::announce::packet::RecordSpec;
use crate::announce::relay::Relay;
use crate::announce::{
    DhtClient, DhtSettings, PublicAddress, PublishStatus, Publisher, UsersRepublisher,
};
use crate::config::Config;
use crate::http::tls::{server_config, PubkyTls};
use crate::http::{serve, App, ConnStats, PlainTcp, ServerLimits};
use crate::identity::Identity;
use crate::pubkey::PublicKey;
use crate::runtime::shutdown::Shutdown;
use crate::store::{Store, StoreConfig};

/// A running homeserver.
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
    tasks: Vec<Task<std::io::Result<()>>>,
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

/// Starts the homeserver on `ex`. Listeners are bound before this returns, so the
/// addresses in [`Running`] are live (port 0 in the config picks a free port).
pub async fn start(
    ex: &Arc<Executor<'static>>,
    config: Config,
    data_dir: PathBuf,
) -> Result<Running> {
    prepare_data_dir(&data_dir)?;
    let identity = Identity::load_or_create(&data_dir)?;
    let public_key = identity.public_key();
    let store = Store::open(&data_dir, store_config(&config))
        .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()))?;
    let imported = crate::account::spool::import(&store, &data_dir, crate::clock::now_secs()).await;
    if imported > 0 {
        tracing::info!(imported, "signup tokens imported");
    }

    let icann = bind(config.drive.icann_listen_socket).await?;
    let icann_addr = icann.local_addr()?;
    let pubky = bind(config.drive.pubky_listen_socket).await?;
    let pubky_addr = pubky.local_addr()?;
    let relay_listener = match config.pkarr_relay.listen_socket {
        Some(a) if config.pkarr_relay.enabled => Some(bind(a).await?),
        _ => None,
    };
    let relay_addr = match &relay_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let tls = server_config(identity.signing_key())?;
    let limits = ServerLimits {
        max_connections: config.limits.max_connections,
        max_header_bytes: config.limits.max_header_bytes,
        header_read_timeout: config.limits.header_read_timeout,
        keep_alive: true,
        max_requests_per_connection: config.limits.max_requests_per_connection,
        write_stall_timeout: config.limits.write_stall_timeout,
    };

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
    let spec = RecordSpec {
        public_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        pubky_tls_port: nonzero_or(pk.public_pubky_tls_port, pubky_addr.port()),
        icann_http_port: nonzero_or(pk.public_icann_http_port, icann_addr.port()),
        icann_domain: pk.icann_domain.clone(),
    };
    let publish_interval = pk.republish_interval;
    let retry_min = pk.publish_retry_min;
    let users_interval = pk.user_keys_republish_interval;
    let users_first = pk.user_keys_republish_first;

    let drain = config.limits.shutdown_drain;
    let limiter = crate::limits::rate::Limiter::new(config.drive.rate_limits.clone());
    let app = Arc::new(App {
        store,
        streams: crate::limits::streams::Streams::new(config.events.max_streams),
        config,
        homeserver: public_key,
        data_dir: data_dir.clone(),
        relay,
        metrics: Arc::new(crate::metrics::Metrics::new()),
        replay: Default::default(),
        limiter,
        throttle: Default::default(),
    });
    let shutdown = Shutdown::new(drain);
    let mut tasks = Vec::new();
    let handler_app = app.clone();
    let handler = move |req, _conn| {
        let app = handler_app.clone();
        async move { crate::http::handle(&app, req).await }
    };
    let stats = ConnStats::new();
    let operator =
        crate::http::operator::start(ex, &app, &limits, &shutdown.signal(), stats.clone()).await?;
    tasks.extend(operator.tasks);
    let (ex2, signal) = (ex.clone(), shutdown.signal());
    let (h, l, st) = (handler.clone(), limits.clone(), stats.clone());
    tasks.push(ex.spawn(async move { serve(&ex2, icann, PlainTcp, l, h, signal, st).await }));
    let (ex2, signal) = (ex.clone(), shutdown.signal());
    let acceptor = PubkyTls::new(tls);
    let (l, st) = (limits.clone(), stats.clone());
    tasks.push(ex.spawn(async move { serve(&ex2, pubky, acceptor, l, handler, signal, st).await }));
    if let Some(listener) = relay_listener {
        let relay_app = app.clone();
        let relay_handler = move |req, _conn| {
            let app = relay_app.clone();
            async move { crate::http::relay::handle_root(&app, req).await }
        };
        let (ex2, signal) = (ex.clone(), shutdown.signal());
        tasks.push(ex.spawn(async move {
            serve(
                &ex2,
                listener,
                PlainTcp,
                limits,
                relay_handler,
                signal,
                stats,
            )
            .await
        }));
    }

    // This run's publishes only (the file keeps the last outcome across runs for `info`).
    let publish_status = Arc::new(Mutex::new(PublishStatus::default()));
    let publish_attempted = Arc::new(Event::new());
    let users_republished = Arc::new(Event::new());
    let users_report = Arc::new(Mutex::new(None));
    if dht.is_some() || app.relay.is_some() {
        let publisher = Publisher {
            seed: identity.signing_key().to_bytes(),
            spec,
            address: public_address.clone(),
            dht: dht.clone(),
            relay: app.relay.clone(),
            data_dir: data_dir.clone(),
            interval: publish_interval,
            retry_min,
            status: publish_status.clone(),
            attempted: publish_attempted.clone(),
            metrics: app.metrics.clone(),
        };
        let signal = shutdown.signal();
        tasks.push(ex.spawn(async move {
            publisher.run(signal).await;
            Ok(())
        }));
    }
    if let Some(dht) = &dht {
        if !users_interval.is_zero() {
            let users = UsersRepublisher {
                store: app.store.clone(),
                dht: dht.clone(),
                homeserver: public_key,
                first_delay: users_first,
                interval: users_interval,
                passed: users_republished.clone(),
                last: users_report.clone(),
            };
            let signal = shutdown.signal();
            tasks.push(ex.spawn(async move {
                users.run(signal).await;
                Ok(())
            }));
        }
    }
    let household = crate::announce::household::Household::start(
        ex,
        &app.config,
        &public_key,
        crate::announce::household::Listeners {
            pubky_tls: pubky_addr,
            http: icann_addr,
            relay: relay_addr,
        },
        &public_address,
        &data_dir,
        shutdown.signal(),
    );
    tracing::info!(
        public_key = %public_key,
        http = %icann_addr,
        pubky_tls = %pubky_addr,
        admin = ?operator.admin_addr,
        metrics = ?operator.metrics_addr,
        relay = ?relay_addr,
        dht = dht.is_some(),
        data = %data_dir.display(),
        "pubky-edge is serving"
    );
    Ok(Running {
        icann_addr,
        pubky_addr,
        relay_addr,
        admin_addr: operator.admin_addr,
        metrics_addr: operator.metrics_addr,
        public_key,
        data_dir,
        public_address,
        dht,
        publish_status,
        publish_attempted,
        users_republished,
        users_report,
        household: Some(household),
        shutdown,
        app,
        tasks,
    })
}

async fn bind(addr: SocketAddr) -> Result<smol::net::TcpListener> {
    smol::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

fn nonzero_or(configured: u16, bound: u16) -> u16 {
    if configured == 0 {
        bound
    } else {
        configured
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
    /// Stops accepting, lets in-flight requests finish (up to the drain deadline), then
    /// flushes and closes the store.
    pub async fn stop(mut self) -> Result<()> {
        // Event streams never finish on their own; end them so the drain does not wait.
        self.app.streams.close_all();
        self.app.store.wake_subscribers();
        self.shutdown.trigger();
        if let Some(h) = self.household.take() {
            h.stop().await;
        }
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::warn!("listener ended with an error: {e}");
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

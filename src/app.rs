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

use crate::config::{Config, DurabilityMode};
use crate::http::{serve, App, ConnStats, PlainTcp, ServerLimits};
use crate::identity::Identity;
use crate::pubkey::PublicKey;
use crate::shutdown::Shutdown;
use crate::store::{Durability, Store, StoreConfig};

/// A running homeserver.
pub struct Running {
    pub icann_addr: SocketAddr,
    /// The admin API, when enabled.
    pub admin_addr: Option<SocketAddr>,
    /// `GET /metrics`, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub public_key: PublicKey,
    pub data_dir: PathBuf,
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
        cache_capacity_bytes: config.storage.cache_capacity_mb << 20,
        inline_max: config.storage.inline_max_bytes,
        durability: match config.storage.durability {
            DurabilityMode::Strict => Durability::Strict,
            DurabilityMode::Relaxed => Durability::Relaxed,
        },
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
    let imported = crate::signup_tokens::import(&store, &data_dir, crate::clock::now_secs()).await;
    if imported > 0 {
        tracing::info!(imported, "signup tokens imported");
    }

    let icann = smol::net::TcpListener::bind(config.drive.icann_listen_socket)
        .await
        .with_context(|| format!("cannot listen on {}", config.drive.icann_listen_socket))?;
    let icann_addr = icann.local_addr()?;
    let limits = ServerLimits {
        max_connections: config.limits.max_connections,
        max_header_bytes: config.limits.max_header_bytes,
        header_read_timeout: config.limits.header_read_timeout(),
        keep_alive: true,
        max_requests_per_connection: config.limits.max_requests_per_connection,
        write_stall_timeout: config.limits.write_stall_timeout(),
    };
    let drain = config.limits.shutdown_drain();
    let limiter = crate::ratelimit::Limiter::from_config(&config.drive.rate_limits)
        .map_err(anyhow::Error::msg)?;
    let app = Arc::new(App {
        store,
        streams: crate::http::event_stream::Streams::new(config.events.max_streams),
        config,
        homeserver: public_key,
        data_dir: data_dir.clone(),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        replay: Default::default(),
        limiter,
        throttle: Default::default(),
    });
    let shutdown = Shutdown::new(drain);
    let handler_app = app.clone();
    let handler = move |req, _conn| {
        let app = handler_app.clone();
        async move { crate::http::handle(&app, req).await }
    };
    let stats = ConnStats::new();
    let operator =
        crate::http::operator::start(ex, &app, &limits, &shutdown.signal(), stats.clone()).await?;
    let ex2 = ex.clone();
    let signal = shutdown.signal();
    let task =
        ex.spawn(async move { serve(&ex2, icann, PlainTcp, limits, handler, signal, stats).await });
    let mut tasks = vec![task];
    tasks.extend(operator.tasks);
    tracing::info!(
        public_key = %public_key,
        http = %icann_addr,
        admin = ?operator.admin_addr,
        metrics = ?operator.metrics_addr,
        data = %data_dir.display(),
        "pubky-edge is serving"
    );
    Ok(Running {
        icann_addr,
        admin_addr: operator.admin_addr,
        metrics_addr: operator.metrics_addr,
        public_key,
        data_dir,
        shutdown,
        app,
        tasks,
    })
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to the drain deadline), then
    /// flushes and closes the store.
    pub async fn stop(self) -> Result<()> {
        // Event streams never finish on their own; end them so the drain does not wait.
        self.app.streams.close_all();
        self.app.store.wake_subscribers();
        self.shutdown.trigger();
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

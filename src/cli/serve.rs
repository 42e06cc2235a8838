//! `pubky-edge run`: the server on a thread pool until SIGTERM/SIGINT, with systemd's
//! readiness and watchdog around it.

use std::path::PathBuf;

use crate::app;
use crate::config::Config;

/// What runs once the listeners are up.
pub type Started<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

/// Runs the homeserver until SIGTERM/SIGINT; `started` runs once the listeners are up.
pub fn run(
    config: Config,
    data_dir: PathBuf,
    started: impl for<'a> FnOnce(&'a app::Running) -> Started<'a>,
) -> anyhow::Result<()> {
    let pool = crate::runtime::Pool::new(config.worker_threads())?;
    let ex = pool.executor().clone();
    pool.block_on(async {
        let signals = crate::runtime::shutdown::on_signals()?;
        let running = app::start(&ex, config, data_dir).await?;
        if let Err(e) = started(&running).await {
            let _ = running.stop().await;
            return Err(e);
        }
        // Listeners are bound: tell systemd (Type=notify) and keep its watchdog fed.
        crate::runtime::systemd::notify("READY=1");
        let _watchdog = crate::runtime::systemd::watchdog_interval()
            .map(|every| ex.spawn(crate::runtime::systemd::watchdog(every)));
        signals.await;
        tracing::info!("shutting down");
        crate::runtime::systemd::notify("STOPPING=1");
        running.stop().await
    })
}

//! `pubky-edge run`: the server on a thread pool until SIGTERM/SIGINT (or an installed
//! update asks for a restart), with systemd's readiness and watchdog around it. A new
//! version on its first start reports healthy before it is ready: it answers a request on
//! its own listener within `update.health_deadline_ms` and commits its slot, or it exits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::app;
use crate::config::Config;
use crate::update::launch;
use crate::update::slots::{self, Slots, Trial};

/// What runs once the listeners are up.
pub type Started<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

/// Runs the homeserver until SIGTERM/SIGINT; `started` runs once the listeners are up.
pub fn run(
    config: Config,
    data_dir: PathBuf,
    started: impl for<'a> FnOnce(&'a app::Running) -> Started<'a>,
) -> anyhow::Result<()> {
    let trial = Slots::at(&data_dir).is_trial();
    let healthy = Arc::new(AtomicBool::new(false));
    if let Some(t) = &trial {
        watch_deadline(t, config.update.health_deadline, healthy.clone());
    }
    crate::runtime::memory::log_at_start(config.limits.memory_budget_bytes);
    let pool = crate::runtime::Pool::new(config.worker_threads())?;
    let ex = pool.executor().clone();
    pool.block_on(async {
        let signals = crate::runtime::shutdown::on_signals()?;
        let running = app::start(&ex, config, data_dir).await?;
        if let Err(e) = started(&running).await {
            let _ = running.stop().await;
            return Err(e);
        }
        if let Some(t) = trial {
            if let Err(e) = report_healthy(&running, &t).await {
                let _ = running.stop().await;
                return Err(e.context(format!("version {} is not healthy", t.version)));
            }
            healthy.store(true, Ordering::SeqCst);
        }
        if std::env::var_os(slots::SLOT_ENV).is_some() {
            if let Err(e) = Slots::at(&running.data_dir).started_ok() {
                tracing::warn!("the slot's start count was not cleared: {e:#}");
            }
        }
        // Listeners are bound: tell systemd (Type=notify) and keep its watchdog fed.
        crate::runtime::systemd::notify("READY=1");
        let _watchdog = crate::runtime::systemd::watchdog_interval()
            .map(|every| ex.spawn(crate::runtime::systemd::watchdog(every)));
        smol::future::or(signals, launch::RESTART.wait()).await;
        if launch::RESTART.is_raised() {
            tracing::info!("restarting into the installed update");
        }
        tracing::info!("shutting down");
        crate::runtime::systemd::notify("STOPPING=1");
        running.stop().await
    })
}

/// A trial that is not healthy by the deadline exits, whatever it is stuck in; the launcher
/// rolls it back at the next start.
fn watch_deadline(t: &Trial, deadline: Duration, healthy: Arc<AtomicBool>) {
    let version = t.version.clone();
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        if !healthy.load(Ordering::SeqCst) {
            tracing::error!(
                version,
                ?deadline,
                "not healthy by the deadline; exiting to be rolled back"
            );
            eprintln!("pubky-edge: version {version} was not healthy within {deadline:?}; it will be rolled back");
            std::process::exit(i32::from(launch::EXIT_UNHEALTHY));
        }
    });
}

/// The trial's self-check: the store answers a read, and the HTTP listener answers a request
/// from outside the process's own tasks; then its slot becomes `current`.
async fn report_healthy(running: &app::Running, t: &Trial) -> anyhow::Result<()> {
    running
        .store()
        .users()
        .map_err(|e| anyhow::anyhow!("the store does not answer: {e}"))?;
    let mut addr = running.addrs.icann;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let status = smol::unblock(move || -> anyhow::Result<u16> {
        let call = crate::runtime::http1::Call {
            method: "GET",
            path: "/",
            headers: &[],
            body: b"",
        };
        let reply =
            crate::runtime::http1::call(addr, &addr.to_string(), &call, Duration::from_secs(10))?;
        Ok(reply.status)
    })
    .await
    .with_context(|| format!("its own listener {addr} does not answer"))?;
    if status >= 500 {
        bail!("its own listener answers {status}");
    }
    Slots::at(&running.data_dir).commit(t)?;
    tracing::info!(
        version = t.version,
        slot = t.slot,
        "the update is healthy and kept"
    );
    Ok(())
}

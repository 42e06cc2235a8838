//! The server's own look at the release channel: once a little while after start (a random
//! part of a twenty-fourth of the interval, so boxes that start together do not ask
//! together), then every `update.check_interval_ms` give or take a tenth. Each outcome goes
//! to `update.json`. With `update.automatic`, a newer release is installed (unless the
//! household holds updates) once the window is open, and the server restarts into it. The
//! dashboard's "update now" ([`UPDATE_NOW`]) makes it look at once and install what it
//! finds, window and hold notwithstanding. An interval of zero: it looks only when asked.

use std::path::PathBuf;
use std::time::Duration;

use super::check::{check_for_box, release_homeserver, Found};
use super::launch::{RESTART, UPDATE_NOW};
use super::slots::Slots;
use super::state::UpdateState;
use crate::announce::dht::DhtClient;
use crate::config::Update;
use crate::pubkey::PublicKey;
use crate::runtime::shutdown::ShutdownSignal;

pub struct Checker {
    pub dht: DhtClient,
    pub release_key: PublicKey,
    pub settings: Update,
    pub data_dir: PathBuf,
}

/// A random duration in `[0, max]`.
fn random_up_to(max: Duration) -> Duration {
    let mut b = [0u8; 8];
    // Invariant: the OS random source is available on every supported platform.
    getrandom::fill(&mut b).expect("OS randomness");
    let fraction = u64::from_le_bytes(b) as f64 / u64::MAX as f64;
    max.mul_f64(fraction)
}

impl Checker {
    pub async fn run(self, shutdown: ShutdownSignal) {
        let (interval, channel) = (self.settings.check_interval, &self.settings.channel);
        // A year: in practice never, when it only looks when asked.
        let every = |d: Duration| {
            if interval.is_zero() {
                Duration::from_secs(365 * 86_400)
            } else {
                d
            }
        };
        let mut wait = every(random_up_to(interval / 24));
        loop {
            let asked = async {
                UPDATE_NOW.wait().await;
                false
            };
            if smol::future::or(shutdown.sleep(wait), asked).await {
                return;
            }
            let forced = UPDATE_NOW.take();
            let tenth = interval / 10;
            wait = every(interval - tenth + random_up_to(tenth * 2));
            let hs = release_homeserver(&self.dht, self.release_key).await;
            let outcome = match &hs {
                Ok(hs) => check_for_box(hs, self.release_key, channel, &self.data_dir).await,
                Err(e) => Err(anyhow::anyhow!("{e:#}")),
            };
            match &outcome {
                Ok(found) => tracing::info!(%channel, ?found, "release channel checked"),
                Err(e) => {
                    tracing::warn!(%channel, "the release channel could not be read: {e:#}")
                }
            }
            UpdateState::record(&self.data_dir, channel, &outcome);
            let (Ok(Found::Available(m)), Ok(hs)) = (outcome, hs) else {
                continue;
            };
            let slots = Slots::at(&self.data_dir);
            if !forced && (!self.settings.automatic || slots.hold().is_some()) {
                continue;
            }
            let now = crate::clock::now_secs();
            if !forced && !self.settings.in_window(now) {
                // Look again when the window opens, a random few minutes in.
                let opens = self.settings.until_window(now);
                wait = wait.min(opens + random_up_to(Duration::from_secs(300)));
                tracing::info!(
                    version = m.version,
                    ?opens,
                    "an update waits for its window"
                );
                continue;
            }
            let (key, channel, data_dir) =
                (self.release_key, channel.clone(), self.data_dir.clone());
            let installed = smol::unblock(move || {
                super::apply::install(&hs, &key, &channel, &m, &data_dir, None)
            })
            .await;
            match installed {
                Ok(t) => {
                    tracing::info!(
                        version = t.version,
                        slot = t.slot,
                        "update installed; restarting into it"
                    );
                    RESTART.raise();
                    return;
                }
                Err(e) => {
                    tracing::warn!("the update could not be installed: {e:#}");
                    UpdateState::not_installed(&self.data_dir, &format!("{e:#}"));
                }
            }
        }
    }
}

//! The server's own look at the release channel: once a little while after start (a random
//! part of a twenty-fourth of the interval, so boxes that start together do not ask
//! together), then every `update.check_interval_ms` give or take a tenth. Each outcome goes
//! to `update.json`; nothing is downloaded or switched here.

use std::path::PathBuf;
use std::time::Duration;

use super::check::{check, release_homeserver, this_target, RUNNING};
use super::state::UpdateState;
use crate::announce::dht::DhtClient;
use crate::pubkey::PublicKey;
use crate::runtime::shutdown::ShutdownSignal;

pub struct Checker {
    pub dht: DhtClient,
    pub release_key: PublicKey,
    pub channel: String,
    pub interval: Duration,
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
        let mut wait = random_up_to(self.interval / 24);
        loop {
            if shutdown.sleep(wait).await {
                return;
            }
            let target = this_target();
            let outcome = match release_homeserver(&self.dht, self.release_key).await {
                Ok(hs) => check(&hs, self.release_key, &self.channel, &target, RUNNING).await,
                Err(e) => Err(e),
            };
            match &outcome {
                Ok(found) => {
                    tracing::info!(channel = %self.channel, ?found, "release channel checked")
                }
                Err(e) => {
                    tracing::warn!(channel = %self.channel, "the release channel could not be read: {e:#}")
                }
            }
            UpdateState::record(&self.data_dir, &self.channel, &outcome);
            let tenth = self.interval / 10;
            wait = self.interval - tenth + random_up_to(tenth * 2);
        }
    }
}

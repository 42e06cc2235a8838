//! Keeps the households' identities resolvable while their phones are off: on a schedule,
//! for each account on this device, fetch the user's latest signed packet from the DHT and
//! put the very same bytes again — only if its `_pubky` record points to this homeserver.
//! A packet is never re-signed or forged (we do not hold users' keys).

use std::sync::Arc;
use std::time::Duration;

use event_listener::Event;

use super::dht::DhtClient;
use super::packet::homeserver_of;
use crate::pubkey::PublicKey;
use crate::runtime::shutdown::ShutdownSignal;
use crate::store::Store;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub users: usize,
    pub republished: usize,
    /// No packet found on the DHT.
    pub missing: usize,
    /// The packet names another homeserver (the user moved): left alone.
    pub elsewhere: usize,
    pub failed: usize,
}

pub struct UsersRepublisher {
    pub store: Store,
    pub dht: DhtClient,
    pub homeserver: PublicKey,
    pub first_delay: Duration,
    pub interval: Duration,
    /// Notified after every pass (tests wait on it).
    pub passed: Arc<Event>,
    /// What the last pass did.
    pub last: Arc<std::sync::Mutex<Option<PassReport>>>,
}

impl UsersRepublisher {
    pub async fn run(self, shutdown: ShutdownSignal) {
        let mut wait = self.first_delay;
        loop {
            let stop = shutdown.sleep(wait).await;
            if stop {
                return;
            }
            let report = self.pass().await;
            tracing::info!(
                users = report.users,
                republished = report.republished,
                missing = report.missing,
                elsewhere = report.elsewhere,
                failed = report.failed,
                "users' records republished"
            );
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
            self.passed.notify(usize::MAX);
            wait = self.interval;
        }
    }

    pub async fn pass(&self) -> PassReport {
        let mut r = PassReport::default();
        let users = match self.store.user_keys() {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!("cannot list users for republishing: {e}");
                return r;
            }
        };
        r.users = users.len();
        for user in users {
            match self.dht.get(&user).await {
                None => r.missing += 1,
                Some(p) if homeserver_of(&p) != Some(self.homeserver) => r.elsewhere += 1,
                Some(p) => match self.dht.put(&p).await {
                    Ok(_) => r.republished += 1,
                    Err(e) => {
                        tracing::debug!(%user, error = %e, "republishing a user's record failed");
                        r.failed += 1;
                    }
                },
            }
        }
        r
    }
}

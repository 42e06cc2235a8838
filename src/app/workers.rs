//! The background workers of a running server, each a named task: the publisher that keeps
//! the homeserver's record on the DHT (or the relay), the republisher of the users'
//! records, and the look at the release channel. Their progress is shared with tests and commands through the `Arc`s here.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use event_listener::Event;
use smol::{Executor, Task};

use super::listeners::Addresses;
use super::Discovery;
use crate::announce::packet::RecordSpec;
use crate::announce::users::PassReport;
use crate::announce::{PublishStatus, Publisher, UsersRepublisher};
use crate::http::App;
use crate::identity::Identity;
use crate::runtime::shutdown::Shutdown;
use crate::standby::fence::Guard;
use crate::standby::follow::Follower;
use crate::standby::link::Link;
use crate::standby::state::{Follow, FollowStatus};
use crate::standby::Mode;
use crate::update::worker::Checker;

/// The standby's follower, or the primary's watch over its record (see [`Workers`]).
fn standby_worker(
    ex: &Arc<Executor<'static>>,
    app: &Arc<App>,
    dht: &Option<crate::announce::DhtClient>,
    guard: Option<Arc<Guard>>,
    shutdown: &Shutdown,
) -> Option<Task<()>> {
    let signal = shutdown.signal();
    match app.role.get() {
        Mode::Standby => {
            let f = Follow::load(&app.data_dir)?;
            let key = f.primary_key().ok()?;
            let follower = Follower {
                store: app.store.clone(),
                link: Arc::new(Link::new(key, f.at, dht.clone(), &f.token)),
                data_dir: app.data_dir.clone(),
                status: Arc::new(Mutex::new(
                    FollowStatus::load(&app.data_dir).unwrap_or_default(),
                )),
                metrics: app.metrics.clone(),
                retry_min: app.config.standby.retry_min,
                auto_promote_after: app.config.standby.auto_promote_after.filter(|_| f.takeover),
            };
            tracing::info!(primary = %key, "following the primary as its standby");
            Some(ex.spawn(async move { follower.run(signal).await }))
        }
        Mode::Primary => {
            let guard = guard?;
            let every = app.config.standby.check_interval;
            Some(ex.spawn(async move { guard.run(every, signal).await }))
        }
        Mode::Fenced => None,
    }
}

pub struct Workers {
    /// Keeps the homeserver record published, when there is a DHT or a relay.
    publisher: Option<Task<()>>,
    /// Re-puts the users' records, when there is a DHT and an interval.
    users: Option<Task<()>>,
    /// Looks at the release channel, when there is a DHT, a release key and an interval.
    updates: Option<Task<()>>,
    /// On a standby: follows the primary's log. On a primary whose standby may take over:
    /// watches the homeserver's own record.
    standby: Option<Task<()>>,
}

/// What the workers report as they go, for tests and commands to watch.
#[derive(Clone, Default)]
pub struct Probes {
    /// Outcome of this run's last publish of the homeserver record (the file keeps the
    /// last outcome across runs for `info`).
    pub publish_status: Arc<Mutex<PublishStatus>>,
    /// Notified after every publish attempt.
    pub publish_attempted: Arc<Event>,
    /// Notified after every pass of the users' republisher.
    pub users_republished: Arc<Event>,
    /// What the users' republisher's last pass did.
    pub users_report: Arc<Mutex<Option<PassReport>>>,
}

impl Workers {
    pub fn start(
        ex: &Arc<Executor<'static>>,
        app: &Arc<App>,
        identity: &Identity,
        addrs: &Addresses,
        found: &Discovery,
        shutdown: &Shutdown,
    ) -> (Workers, Probes) {
        let (dht, address) = (&found.dht, &found.address);
        let probes = Probes::default();
        let pk = &app.config.pkdns;
        let mut w = Workers {
            publisher: None,
            users: None,
            updates: None,
            standby: None,
        };
        let guard = dht
            .as_ref()
            .filter(|_| app.role.get() == Mode::Primary)
            .map(|dht| {
                Arc::new(Guard::new(
                    app.homeserver,
                    dht.clone(),
                    app.pairing.clone(),
                    app.store.clone(),
                    app.role.clone(),
                    app.data_dir.clone(),
                ))
            });
        // A box that was taken over publishes nothing (`crate::standby::fence`).
        if (dht.is_some() || app.relay.is_some()) && app.role.get() != Mode::Fenced {
            let publisher = Publisher {
                seed: identity.signing_key().to_bytes(),
                spec: RecordSpec {
                    public_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    public_ipv6: None,
                    pubky_tls_port: pk.announced_tls_port(addrs.pubky_tls.port()),
                    icann_http_port: pk.announced_http_port(addrs.icann.port()),
                    icann_domain: pk.icann_domain.clone(),
                },
                address: address.clone(),
                dht: dht.clone(),
                relay: app.relay.clone(),
                data_dir: app.data_dir.clone(),
                interval: pk.republish_interval,
                retry_min: pk.publish_retry_min,
                status: probes.publish_status.clone(),
                attempted: probes.publish_attempted.clone(),
                metrics: app.metrics.clone(),
                gate: guard
                    .clone()
                    .map(|g| g as Arc<dyn crate::announce::publisher::Gate>),
            };
            let signal = shutdown.signal();
            w.publisher = Some(ex.spawn(async move { publisher.run(signal).await }));
        }
        if let (Some(dht), false) = (dht, pk.user_keys_republish_interval.is_zero()) {
            let users = UsersRepublisher {
                store: app.store.clone(),
                dht: dht.clone(),
                homeserver: app.homeserver,
                first_delay: pk.user_keys_republish_first,
                interval: pk.user_keys_republish_interval,
                passed: probes.users_republished.clone(),
                last: probes.users_report.clone(),
            };
            let signal = shutdown.signal();
            w.users = Some(ex.spawn(async move { users.run(signal).await }));
        }
        let u = &app.config.update;
        if let (Some(dht), Some(release_key)) = (dht, u.release_key) {
            let checker = Checker {
                dht: dht.clone(),
                release_key,
                settings: u.clone(),
                data_dir: app.data_dir.clone(),
            };
            let signal = shutdown.signal();
            w.updates = Some(ex.spawn(async move { checker.run(signal).await }));
        }
        w.standby = standby_worker(ex, app, dht, guard, shutdown);
        (w, probes)
    }

    /// Waits for both workers to end (they end at the shutdown signal).
    pub async fn stop(self) {
        for t in [self.publisher, self.users, self.updates, self.standby]
            .into_iter()
            .flatten()
        {
            t.await;
        }
    }
}

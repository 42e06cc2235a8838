//! The [`Follower`]: on a standby, applies the primary's log while the server runs.
//! Pairing and the first copy are in `copy`, the requests to the primary in `link`, what
//! the standby keeps in `state`.
//!
//! The position is the store's own last event: replicated events keep the primary's ids,
//! and each batch is durable before the next is asked for, so a standby killed at any
//! moment asks again from what it holds, and nothing is applied twice or skipped.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use super::copy::fetch_missing_blobs;
use super::link::Link;
use super::role::DIR;
use super::state::{FollowStatus, STATUS_FILE};
use crate::store::{ReplicaBody, Replicated, Store};

/// How often the tables (accounts, sessions, tokens) are compared with the primary's.
const TABLES_EVERY: Duration = Duration::from_secs(2);
/// How long the primary may hold an events request open when there is nothing new: no
/// longer than the tables may wait (a new session must reach the standby soon).
const WAIT_MS: u64 = TABLES_EVERY.as_millis() as u64;

/// Applies the primary's log while the server runs.
pub struct Follower {
    pub store: Store,
    pub link: Arc<Link>,
    pub data_dir: PathBuf,
    pub status: Arc<Mutex<FollowStatus>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub retry_min: Duration,
    /// Promote this box when the primary has not been reached for this long (takeover
    /// allowed at pairing only).
    pub auto_promote_after: Option<Duration>,
}

impl Follower {
    pub async fn run(self, shutdown: crate::runtime::shutdown::ShutdownSignal) {
        use smol::future::FutureExt;
        let mut failures = 0u32;
        let mut tables_at: Option<std::time::Instant> = None;
        let mut tag = String::new();
        // Blobs an interrupted copy or batch left behind, looked for once per start.
        let mut blobs_checked = false;
        loop {
            let step = async {
                if !blobs_checked {
                    fetch_missing_blobs(&self.store, &self.link).await?;
                    blobs_checked = true;
                }
                if tables_at.is_none_or(|t| t.elapsed() >= TABLES_EVERY) {
                    self.sync_tables(&mut tag).await?;
                    tables_at = Some(std::time::Instant::now());
                }
                self.step().await
            };
            let outcome = step.or(async {
                shutdown.wait().await;
                Err(anyhow!("shutdown"))
            });
            let r = outcome.await;
            if shutdown.is_triggered() {
                return;
            }
            let wait = match r {
                Ok(()) => {
                    failures = 0;
                    continue;
                }
                Err(e) => {
                    if self.promote_now() {
                        return;
                    }
                    failures += 1;
                    tracing::warn!(error = %format!("{e:#}"), "following the primary failed; will retry");
                    self.note(|s| s.last_error = Some(format!("{e:#}")));
                    crate::announce::worker::backoff(
                        failures,
                        self.retry_min,
                        Duration::from_secs(30),
                    )
                }
            };
            let stop = shutdown.sleep(wait).await;
            if stop {
                return;
            }
        }
    }

    /// After a failure: whether the primary has been out of reach long enough that this
    /// box promotes itself (then it asks for a restart, into the homeserver).
    fn promote_now(&self) -> bool {
        let Some(after) = self.auto_promote_after else {
            return false;
        };
        let silent = self.link.silent_for();
        if silent < after {
            return false;
        }
        tracing::warn!(
            unreachable_secs = silent.as_secs(),
            "the primary has been out of reach for longer than standby.auto_promote_after_ms"
        );
        match super::promote::promote(&self.data_dir) {
            Ok(key) => {
                tracing::warn!(homeserver = %key, "promoted: restarting as the homeserver");
                crate::update::launch::RESTART.raise();
                true
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "automatic promotion failed");
                false
            }
        }
    }

    fn note(&self, f: impl FnOnce(&mut FollowStatus)) {
        let snapshot = {
            let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut st);
            st.clone()
        };
        let now = crate::clock::now_secs();
        self.metrics
            .set_standby_lag(snapshot.lag_events(), snapshot.lag_seconds(now));
        crate::announce::worker::save_json(&self.data_dir.join(DIR), STATUS_FILE, &snapshot);
    }

    async fn sync_tables(&self, tag: &mut String) -> Result<()> {
        let r = self
            .link
            .get("tables", &[("if-none-match", tag.as_str())])
            .await?;
        match r.status {
            304 => return Ok(()),
            200 => {}
            s => bail!("the primary answered {s} for the tables"),
        }
        let new_tag = r.header("etag").unwrap_or_default().to_string();
        let bytes = smol::unblock(move || r.read_all()).await?;
        let store = self.store.clone();
        let changed = smol::unblock(move || store.replace_tables(&bytes[..])).await?;
        if changed > 0 {
            tracing::debug!(changed, "tables copied from the primary");
        }
        *tag = new_tag;
        Ok(())
    }

    /// One batch: asked for, its blobs fetched, applied durably.
    async fn step(&self) -> Result<()> {
        let after = self.store.event_head();
        let batch = self.link.events(after, WAIT_MS).await?;
        let now = crate::clock::now_secs();
        let mut todo = Vec::with_capacity(batch.events.len());
        // Blobs this batch fetches: an earlier event of the batch places each one.
        let mut fetched = std::collections::HashSet::new();
        for e in batch.events {
            let file = match e.file {
                None => None,
                Some((meta, Some(inline))) => Some((meta, ReplicaBody::Inline(inline))),
                Some((meta, None)) => {
                    if fetched.contains(&meta.hash) || self.store.has_blob(&meta.hash) {
                        Some((meta, ReplicaBody::Blob(None)))
                    } else {
                        match self.link.blob(&meta.hash, self.store.tmp_dir()).await? {
                            Some(tmp) => {
                                fetched.insert(meta.hash);
                                Some((meta, ReplicaBody::Blob(Some(tmp))))
                            }
                            // Gone since the batch was read: a later event changes the path.
                            None => None,
                        }
                    }
                }
            };
            todo.push(Replicated {
                id: e.id,
                event: e.event,
                file,
            });
        }
        self.store.apply_replicated(todo).await?;
        let local = self.store.event_head();
        self.note(|s| {
            s.primary_head = batch.head.max(local);
            s.local_head = local;
            s.last_contact = now;
            s.last_error = None;
            if local >= batch.head {
                s.caught_up_at = now;
            }
        });
        Ok(())
    }
}

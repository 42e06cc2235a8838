//! The standby's side: `<data>/standby/follow.json` (which primary, the replication token,
//! the sealed homeserver key), its own age key (`standby/key.txt`, to open the sealed key
//! at promotion), pairing and the first copy ([`pair`], the server stopped), and the
//! [`Follower`] that applies the primary's log while the server runs.
//!
//! The position is the store's own last event: replicated events keep the primary's ids,
//! and each batch is durable before the next is asked for, so a standby killed at any
//! moment asks again from what it holds, and nothing is applied twice or skipped.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::wire::{Batch, PairReply, PairRequest, MAX_BATCH, PREFIX};
use crate::announce::dht::DhtClient;
use crate::client::Homeserver;
use crate::pubkey::PublicKey;
use crate::store::{ReplicaBody, Replicated, Store};

const FILE: &str = "follow.json";
const KEY_FILE: &str = "key.txt";
const STATUS_FILE: &str = "follow-status.json";
/// How often the tables (accounts, sessions, tokens) are compared with the primary's.
const TABLES_EVERY: Duration = Duration::from_secs(2);
/// How long the primary may hold an events request open when there is nothing new: no
/// longer than the tables may wait (a new session must reach the standby soon).
const WAIT_MS: u64 = TABLES_EVERY.as_millis() as u64;

/// Which primary this box follows, written at pairing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Follow {
    pub primary: String,
    /// The primary's PubkyTLS address, when given at pairing (else found on the DHT).
    pub at: Option<SocketAddr>,
    pub token: String,
    pub takeover: bool,
    /// The homeserver key sealed to `key.txt` (base64 age), when takeover is allowed.
    pub sealed_key: Option<String>,
    /// The first full copy is complete.
    pub copied: bool,
    /// This box became the homeserver (`standby promote`).
    pub promoted: bool,
    pub paired_at: u64,
}

impl Follow {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(super::DIR).join(FILE)
    }

    pub fn load(data_dir: &Path) -> Option<Follow> {
        serde_json::from_slice(&std::fs::read(Self::path(data_dir)).ok()?).ok()
    }

    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = Self::path(data_dir);
        std::fs::create_dir_all(path.parent().context("standby directory")?)?;
        // Invariant: strings, numbers and an address always serialize.
        let text = serde_json::to_vec_pretty(self).expect("follow state serializes");
        crate::backup::write_private(&path, &text)
    }

    pub fn primary_key(&self) -> Result<PublicKey> {
        PublicKey::parse_z32(&self.primary).map_err(|_| anyhow!("follow.json: bad primary key"))
    }
}

/// This box's own age key (made at pairing): the sealed homeserver key opens with it.
pub fn own_key(data_dir: &Path) -> Result<age::x25519::Identity> {
    use std::str::FromStr;
    let path = data_dir.join(super::DIR).join(KEY_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    age::x25519::Identity::from_str(text.trim()).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn make_own_key(data_dir: &Path) -> Result<age::x25519::Identity> {
    use age::secrecy::ExposeSecret;
    if let Ok(k) = own_key(data_dir) {
        return Ok(k);
    }
    let id = age::x25519::Identity::generate();
    let path = data_dir.join(super::DIR).join(KEY_FILE);
    std::fs::create_dir_all(path.parent().context("standby directory")?)?;
    crate::backup::write_private(&path, id.to_string().expose_secret().as_bytes())?;
    Ok(id)
}

/// Reaching the primary: at its fixed address, or where its record points.
pub struct Link {
    key: PublicKey,
    at: Option<SocketAddr>,
    dht: Option<DhtClient>,
    token: String,
    found: Mutex<Option<Homeserver>>,
    /// When the primary last answered anything (an automatic promotion counts from it).
    answered: Mutex<Instant>,
}

impl Link {
    pub fn new(
        key: PublicKey,
        at: Option<SocketAddr>,
        dht: Option<DhtClient>,
        token: &str,
    ) -> Link {
        Link {
            key,
            at,
            dht,
            token: token.to_string(),
            found: Mutex::new(None),
            answered: Mutex::new(Instant::now()),
        }
    }

    /// How long since the primary last answered.
    pub fn silent_for(&self) -> Duration {
        self.answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    async fn primary(&self) -> Result<Homeserver> {
        if let Some(at) = self.at {
            return Ok(Homeserver::at(self.key, at));
        }
        if let Some(h) = self.found.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(h);
        }
        let dht = self
            .dht
            .as_ref()
            .context("the primary's address is not known: pair with --at, or turn the DHT on")?;
        let h = Homeserver::locate(dht, self.key).await?;
        *self.found.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.clone());
        Ok(h)
    }

    /// One GET under `/standby/v1/`; the reply to read. A failure forgets the address.
    async fn get(
        &self,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<crate::runtime::http1::Reply> {
        let h = self.primary().await?;
        let auth = format!("Bearer {}", self.token);
        let path = format!("{PREFIX}{path}");
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = smol::unblock(move || {
            let hs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            h.call_small("GET", &path, &hs, b"")
        })
        .await;
        match r {
            Ok(r) => {
                *self.answered.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                if r.status == 401 {
                    bail!("the primary refused the replication token (unpaired?)");
                }
                Ok(r)
            }
            Err(e) => {
                *self.found.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Err(e)
            }
        }
    }

    /// The next batch of the log after `after`, waiting up to `wait_ms` for one.
    pub async fn events(&self, after: u64, wait_ms: u64) -> Result<Batch> {
        let r = self
            .get(
                &format!("events?after={after}&limit={MAX_BATCH}&wait_ms={wait_ms}"),
                &[],
            )
            .await?;
        if r.status != 200 {
            bail!("the primary answered {} to a batch of events", r.status);
        }
        let bytes = smol::unblock(move || r.read_all()).await?;
        postcard::from_bytes(&bytes).map_err(|e| anyhow!("a malformed batch: {e}"))
    }

    /// Fetches blob `hash` into `tmp_dir`, checked against its hash; `None` when the
    /// primary no longer holds it.
    pub async fn blob(&self, hash: &[u8; 32], tmp_dir: &Path) -> Result<Option<PathBuf>> {
        let hex = crate::store::to_hex(hash);
        let r = self.get(&format!("blob/{hex}"), &[]).await?;
        match r.status {
            200 => {}
            404 => return Ok(None),
            s => bail!("the primary answered {s} for blob {hex}"),
        }
        let tmp = tmp_dir.join(format!("standby-{hex}"));
        let want = *hash;
        smol::unblock(move || {
            let mut r = r;
            let mut f = std::fs::File::create(&tmp)?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n])?;
            }
            f.sync_all()?;
            if *hasher.finalize().as_bytes() != want {
                let _ = std::fs::remove_file(&tmp);
                bail!("blob {} arrived damaged", crate::store::to_hex(&want));
            }
            Ok(Some(tmp))
        })
        .await
    }
}

/// What the follower last saw, for `standby status`, the dashboard and the metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FollowStatus {
    /// The primary's last event at the last contact.
    pub primary_head: u64,
    /// This box's last event.
    pub local_head: u64,
    /// When this box last held everything the primary had (seconds; 0: not yet).
    pub caught_up_at: u64,
    pub last_contact: u64,
    pub last_error: Option<String>,
    /// Events applied since the server started.
    pub applied: u64,
}

impl FollowStatus {
    pub fn load(data_dir: &Path) -> Option<FollowStatus> {
        crate::announce::worker::load_json(&data_dir.join(super::DIR), STATUS_FILE)
    }

    pub fn lag_events(&self) -> u64 {
        self.primary_head.saturating_sub(self.local_head)
    }

    /// Seconds since this box last held everything the primary had (0 when it does now).
    pub fn lag_seconds(&self, now: u64) -> u64 {
        if self.lag_events() == 0 {
            0
        } else {
            now.saturating_sub(self.caught_up_at)
        }
    }
}

/// Pairs this box (server stopped) with the primary that made `code`, then makes the
/// first full copy. With `set_aside`, data already here (and a homeserver key) moves to
/// `<data>/set-aside/<time>/` first; without it, a box that holds data refuses.
pub async fn pair(
    data_dir: &Path,
    store_cfg: crate::store::StoreConfig,
    dht: Option<DhtClient>,
    code: &str,
    at: Option<SocketAddr>,
    set_aside: bool,
) -> Result<Follow> {
    let (key, secret) = code.trim().split_once(':').context(
        "a pairing code is `<homeserver key>:<secret>` (from the primary's `admin standby code`)",
    )?;
    let key = PublicKey::parse_z32(key)
        .map_err(|_| anyhow!("the pairing code's key is not a public key"))?;
    if let Some(f) = Follow::load(data_dir).filter(|f| !f.promoted) {
        if f.primary == key.to_string() && !f.copied {
            // An interrupted first copy: start it over with the token already granted.
            return copy(data_dir, store_cfg, dht, f).await;
        }
        bail!(
            "this box already follows {} (unpair it on the primary, remove {} and pair again)",
            f.primary,
            Follow::path(data_dir).display()
        );
    }
    let holds_data = {
        let store = Store::open(data_dir, store_cfg.clone())?;
        let busy = store.event_head() > 0 || !store.users()?.is_empty();
        store.close().await?;
        busy
    };
    let own = crate::identity::Identity::load_existing(data_dir).ok();
    let is_homeserver = own.as_ref().is_some_and(|i| i.public_key() == key);
    if holds_data || is_homeserver {
        if !set_aside {
            bail!(
                "this box holds data{}: pair with --set-aside to move it to {}/set-aside/ first",
                if is_homeserver {
                    " and the homeserver's key"
                } else {
                    ""
                },
                data_dir.display()
            );
        }
        set_aside_data(data_dir)?;
    }
    let own_key = make_own_key(data_dir)?;
    let link = Link::new(key, at, dht.clone(), "");
    let h = link.primary().await?;
    let req = serde_json::to_vec(&PairRequest {
        code: secret.to_string(),
        recipient: own_key.to_public().to_string(),
    })?;
    let reply = smol::unblock(move || {
        h.call_small(
            "POST",
            &format!("{PREFIX}pair"),
            &[("content-type", "application/json")],
            &req,
        )
    })
    .await?;
    let status = reply.status;
    let body = smol::unblock(move || reply.read_all()).await?;
    if status != 200 {
        bail!(
            "the primary refused the pairing: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let reply: PairReply = serde_json::from_slice(&body).context("the primary's pairing reply")?;
    let follow = Follow {
        primary: key.to_string(),
        at,
        token: reply.token,
        takeover: reply.takeover,
        sealed_key: reply.sealed_key,
        copied: false,
        promoted: false,
        paired_at: crate::clock::now_secs(),
    };
    follow.save(data_dir)?;
    copy(data_dir, store_cfg, dht, follow).await
}

/// Moves the store, the blobs, the event archive, the homeserver key and the standby
/// files to `<data>/set-aside/<time>/`.
fn set_aside_data(data_dir: &Path) -> Result<PathBuf> {
    let dest = data_dir
        .join("set-aside")
        .join(crate::clock::rfc3339(crate::clock::now_secs()).replace(':', "-"));
    std::fs::create_dir_all(&dest)?;
    for name in [
        "db",
        "blobs",
        "events",
        crate::identity::SECRET_FILE,
        super::DIR,
        "announce.json",
    ] {
        let from = data_dir.join(name);
        if from.exists() {
            std::fs::rename(&from, dest.join(name))
                .with_context(|| format!("moving {} aside", from.display()))?;
        }
    }
    crate::backup::sync_parent(&dest.join("x"))?;
    crate::backup::sync_parent(&data_dir.join("x"))?;
    tracing::info!(to = %dest.display(), "the data that was here was set aside");
    Ok(dest)
}

/// The first full copy: the primary's store as one dump, then every blob it references.
/// A copy interrupted before it ends is started over (its partial store is ours).
async fn copy(
    data_dir: &Path,
    store_cfg: crate::store::StoreConfig,
    dht: Option<DhtClient>,
    mut follow: Follow,
) -> Result<Follow> {
    for name in ["db", "blobs", "events"] {
        let p = data_dir.join(name);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("clearing {}", p.display()))?;
        }
    }
    let link = Link::new(follow.primary_key()?, follow.at, dht, &follow.token);
    let store = Store::open(data_dir, store_cfg)?;
    let result = async {
        let r = link.get("snapshot", &[]).await?;
        if r.status != 200 {
            bail!("the primary answered {} to the first copy", r.status);
        }
        let dump = store.tmp_dir().join("standby-first-copy.dump");
        let d = dump.clone();
        smol::unblock(move || -> Result<()> {
            let mut r = r;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&d)?);
            std::io::copy(&mut r, &mut f)?;
            f.flush()?;
            Ok(())
        })
        .await?;
        let s = store.clone();
        let d = dump.clone();
        let records = smol::unblock(move || s.load_dump(&d)).await?;
        let _ = std::fs::remove_file(&dump);
        let fetched = fetch_missing_blobs(&store, &link).await?;
        tracing::info!(
            records,
            blobs = fetched,
            "the first copy of the primary is in place"
        );
        Ok(())
    }
    .await;
    store.close().await?;
    drop(store);
    result?;
    follow.copied = true;
    follow.save(data_dir)?;
    let now = crate::clock::now_secs();
    let status = FollowStatus {
        caught_up_at: now,
        last_contact: now,
        ..FollowStatus::default()
    };
    crate::announce::worker::save_json(&data_dir.join(super::DIR), STATUS_FILE, &status);
    Ok(follow)
}

/// Fetches every blob the store references and lacks; returns how many arrived.
async fn fetch_missing_blobs(store: &Store, link: &Link) -> Result<usize> {
    let s = store.clone();
    let missing = smol::unblock(move || s.missing_blobs()).await?;
    let mut n = 0;
    for hash in missing {
        if let Some(tmp) = link.blob(&hash, store.tmp_dir()).await? {
            let s = store.clone();
            smol::unblock(move || s.place_blob(&tmp, &hash)).await?;
            n += 1;
        }
    }
    Ok(n)
}

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
            let stop = async {
                smol::Timer::after(wait).await;
                false
            }
            .or(async {
                shutdown.wait().await;
                true
            })
            .await;
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
        match super::fence::promote(&self.data_dir) {
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
        crate::announce::worker::save_json(&self.data_dir.join(super::DIR), STATUS_FILE, &snapshot);
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
        let n = todo.len() as u64;
        self.store.apply_replicated(todo).await?;
        let local = self.store.event_head();
        self.note(|s| {
            s.primary_head = batch.head.max(local);
            s.local_head = local;
            s.last_contact = now;
            s.last_error = None;
            s.applied += n;
            if local >= batch.head {
                s.caught_up_at = now;
            }
        });
        Ok(())
    }
}

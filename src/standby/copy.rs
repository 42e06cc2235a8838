//! Pairing from the standby's side and the first full copy (the server stopped): the
//! code is spent at the primary, `follow.json` is written, then the primary's whole store
//! arrives as one dump and every blob it references after it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::link::Link;
use super::role::DIR;
use super::state::{make_own_key, Follow, FollowStatus, STATUS_FILE};
use super::wire::{PairReply, PairRequest, PREFIX};
use crate::announce::dht::DhtClient;
use crate::pubkey::PublicKey;
use crate::store::Store;

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
        DIR,
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
    crate::announce::worker::save_json(&data_dir.join(DIR), STATUS_FILE, &status);
    Ok(follow)
}

/// Fetches every blob the store references and lacks; returns how many arrived.
pub(super) async fn fetch_missing_blobs(store: &Store, link: &Link) -> Result<usize> {
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

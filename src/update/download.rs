//! Fetching a release's binary, judged before it is kept: streamed from the release key's
//! storage (`/pub/pubky-edge/releases/<channel>/<target>/<version>`) into a part file in
//! `<data>/update/`, hashed while it arrives and never read past the manifest's size; it
//! becomes `pubky-edge-<version>` (mode 0755, synced) only when its size and BLAKE3 are the
//! manifest's. Anything else leaves nothing behind. The switch to it is not made here.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::manifest::Manifest;
use crate::backup::point::copy_hashed;
use crate::backup::sync_parent;
use crate::client::Homeserver;
use crate::pubkey::PublicKey;

/// Where downloaded releases wait, under the data directory.
pub const DIR: &str = "update";

/// Where a release's binary lives under the release key.
pub fn binary_path(channel: &str, target: &str, version: &str) -> String {
    format!("/pub/pubky-edge/releases/{channel}/{target}/{version}")
}

/// Downloads `m`'s binary from `hs` (the release key's homeserver) into
/// `<data_dir>/update/pubky-edge-<version>`, and returns that path.
pub fn download(
    hs: &Homeserver,
    release_key: &PublicKey,
    channel: &str,
    m: &Manifest,
    data_dir: &Path,
) -> Result<PathBuf> {
    let dir = data_dir.join(DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let done = dir.join(format!("pubky-edge-{}", m.version));
    let part = dir.join(format!("pubky-edge-{}.part", m.version));
    let got = fetch_into(hs, release_key, channel, m, &part);
    if let Err(e) = got {
        let _ = fs::remove_file(&part);
        return Err(e);
    }
    fs::rename(&part, &done).with_context(|| format!("keeping {}", done.display()))?;
    sync_parent(&done).with_context(|| format!("syncing {}", dir.display()))?;
    Ok(done)
}

fn fetch_into(
    hs: &Homeserver,
    release_key: &PublicKey,
    channel: &str,
    m: &Manifest,
    part: &Path,
) -> Result<()> {
    let path = binary_path(channel, &m.target, &m.version);
    let Some(reply) = hs.get_from(release_key, &path)? else {
        bail!("the release's binary is missing at pubky://{release_key}{path}");
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .with_context(|| format!("creating {}", part.display()))?;
    // One byte past the manifest's size is enough to tell a longer file.
    let (size, hash) = copy_hashed(&mut reply.take(m.size + 1), &mut out)
        .with_context(|| format!("fetching the release's binary into {}", part.display()))?;
    m.check_hashed(size, &hash).map_err(|e| anyhow!("{e}"))?;
    out.sync_all()
        .with_context(|| format!("syncing {}", part.display()))?;
    fs::set_permissions(part, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

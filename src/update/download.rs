//! Fetching a release's binary, judged before it is kept: streamed from the release key's
//! storage (`/pub/pubky-edge/releases/<channel>/<target>/<version>`) into a part file in
//! `<data>/update/`, hashed while it arrives and never read past the manifest's size; it
//! becomes `pubky-edge-<version>` (mode 0755, synced) only when its size and BLAKE3 are the
//! manifest's. Anything else leaves nothing behind. The switch to it is not made here.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::manifest::Manifest;
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
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
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
    let key = release_key.to_string();
    let reply = hs.call_small("GET", &path, &[("pubky-host", &key)], b"")?;
    match reply.status {
        200 => {}
        404 => bail!("the release's binary is missing at pubky://{key}{path}"),
        s => bail!("GET {path} on homeserver {} answered {s}", hs.key()),
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .with_context(|| format!("creating {}", part.display()))?;
    // One byte past the manifest's size is enough to tell a longer file.
    let mut body = reply.take(m.size + 1);
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body
            .read(&mut buf)
            .context("reading the release's binary")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("writing {}", part.display()))?;
        size += n as u64;
    }
    m.check_hashed(size, hasher.finalize().to_hex().as_str())
        .map_err(|e| anyhow!("{e}"))?;
    out.sync_all()
        .with_context(|| format!("syncing {}", part.display()))?;
    fs::set_permissions(part, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

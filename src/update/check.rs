//! Looking for a release, as any Pubky client reads a user's files: the release key's
//! homeserver is found through the DHT (its `_pubky` record), the signed manifest for this
//! box's target is read over PubkyTLS from `/pub/pubky-edge/releases/<channel>/<target>.json`
//! under the release key, opened with that key, and the rules of `manifest` are applied to
//! the running version. Nothing is kept unless all of that holds.

use std::io::Read;

use anyhow::{bail, Context, Result};

use super::manifest::{self, Manifest, ReleaseError};
use crate::announce::dht::DhtClient;
use crate::client::Homeserver;
use crate::pubkey::PublicKey;

/// The version this binary is.
pub const RUNNING: &str = env!("CARGO_PKG_VERSION");

/// Where a channel's manifest for `target` lives under the release key.
pub fn manifest_path(channel: &str, target: &str) -> String {
    format!("/pub/pubky-edge/releases/{channel}/{target}.json")
}

/// The target triple this binary was built for, as release manifests name it.
pub fn this_target() -> String {
    let arch = if cfg!(target_arch = "aarch64") {
        "aarch64"
    } else if cfg!(target_arch = "x86_64") {
        "x86_64"
    } else if cfg!(all(target_arch = "arm", target_feature = "v7")) {
        "armv7"
    } else if cfg!(target_arch = "arm") {
        "arm"
    } else {
        std::env::consts::ARCH
    };
    let env = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    let abi = if cfg!(target_abi = "eabihf") {
        "eabihf"
    } else {
        ""
    };
    format!("{arch}-unknown-linux-{env}{abi}")
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A newer release this box may upgrade to.
    Available(Manifest),
    /// The channel's release is the running version (or older).
    UpToDate(Manifest),
    /// The channel has no release for this target.
    NoRelease,
    /// A manifest was found and refused (wrong key, altered, another target, too old to
    /// upgrade directly...).
    Refused(ReleaseError),
}

/// Reads and judges the channel's manifest for `target`.
pub async fn check(
    dht: &DhtClient,
    release_key: PublicKey,
    channel: &str,
    target: &str,
    running: &str,
) -> Result<Found> {
    let hs = Homeserver::of_user(dht, release_key)
        .await
        .context("finding the release key's homeserver")?;
    let path = manifest_path(channel, target);
    let key = release_key.to_string();
    let signed = smol::unblock(move || fetch_small(&hs, &key, &path)).await?;
    let Some(signed) = signed else {
        return Ok(Found::NoRelease);
    };
    let m = match manifest::open(&signed, &release_key) {
        Ok(m) => m,
        Err(e) => return Ok(Found::Refused(e)),
    };
    Ok(match m.applies_to(target, running) {
        Ok(()) => Found::Available(m),
        Err(ReleaseError::NotNewer { .. }) => Found::UpToDate(m),
        Err(e) => Found::Refused(e),
    })
}

/// GETs `path` under `user` on `hs`: the body (at most a manifest's size), or `None` when
/// there is no such file.
fn fetch_small(hs: &Homeserver, user: &str, path: &str) -> Result<Option<Vec<u8>>> {
    let reply = hs.call_small("GET", path, &[("pubky-host", user)], b"")?;
    match reply.status {
        200 => {}
        404 => return Ok(None),
        s => bail!("GET {path} on homeserver {} answered {s}", hs.key()),
    }
    let mut body = Vec::new();
    let limit = manifest::MAX_SIGNED_BYTES as u64 + 1;
    reply.take(limit).read_to_end(&mut body)?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_binary_names_its_own_target() {
        let t = this_target();
        assert!(
            t.starts_with(std::env::consts::ARCH) || t.starts_with("armv7"),
            "{t}"
        );
        assert!(t.contains("-unknown-linux-"), "{t}");
        assert_eq!(
            manifest_path("stable", &t),
            format!("/pub/pubky-edge/releases/stable/{t}.json")
        );
    }
}

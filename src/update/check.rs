//! Looking for a release, as any Pubky client reads a user's files: the release key's
//! homeserver is found through the DHT (its `_pubky` record), the signed manifest for this
//! box's target is read over PubkyTLS from `/pub/pubky-edge/releases/<channel>/<target>.json`
//! under the release key, opened with that key, and the rules of `manifest` are applied to
//! the running version. Nothing is kept unless all of that holds.

use anyhow::{Context, Result};

use super::manifest::{self, Manifest, ReleaseError};
use crate::announce::dht::DhtClient;
use crate::client::Homeserver;
use crate::pubkey::PublicKey;

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
    /// A newer release that was installed on this box before and rolled back: not tried
    /// again.
    FailedHere(Manifest),
}

/// The release key's homeserver, found through its `_pubky` record like any user's.
pub async fn release_homeserver(dht: &DhtClient, release_key: PublicKey) -> Result<Homeserver> {
    Homeserver::of_user(dht, release_key)
        .await
        .context("finding the release key's homeserver")
}

/// [`check`] for this box: its target, the version it runs (its slot's release), and the
/// releases that failed on it.
pub async fn check_for_box(
    hs: &Homeserver,
    release_key: PublicKey,
    channel: &str,
    data_dir: &std::path::Path,
) -> Result<Found> {
    let slots = super::slots::Slots::at(data_dir);
    let found = check(hs, release_key, channel, &this_target(), &slots.running()).await?;
    Ok(match found {
        Found::Available(m) if slots.failed(&m.version) => Found::FailedHere(m),
        other => other,
    })
}

/// Reads and judges the channel's manifest for `target` on `hs`, the release key's
/// homeserver.
pub async fn check(
    hs: &Homeserver,
    release_key: PublicKey,
    channel: &str,
    target: &str,
    running: &str,
) -> Result<Found> {
    let (hs, path) = (hs.clone(), manifest_path(channel, target));
    let signed = smol::unblock(move || -> Result<Option<Vec<u8>>> {
        let Some(reply) = hs.get_from(&release_key, &path)? else {
            return Ok(None);
        };
        Ok(Some(manifest::read_signed(reply)?))
    })
    .await?;
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

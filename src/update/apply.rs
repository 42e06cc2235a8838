//! Installing a release that a check found: its binary is downloaded (verified as it
//! arrives), checked once more as it is copied into the slot that is not running, and
//! named the trial for the next start (`slots`). A release that changes the store's format
//! to a newer one installs only with a backup point made just before (`pubky-edge update
//! now` makes it): the store refuses to go back across a format change, so a rollback may
//! need that point restored. A release in an older format than this version's is refused.

use std::path::Path;

use anyhow::{bail, Result};

use super::download::download;
use super::manifest::Manifest;
use super::slots::{Slots, Trial};
use crate::client::Homeserver;
use crate::pubkey::PublicKey;

/// Whether installing `m` needs a backup point first (it writes a newer store format).
pub fn needs_backup_point(m: &Manifest) -> bool {
    m.store_format > crate::store::FORMAT
}

/// Installs `m` as the trial, its binary fetched from `hs` (the release key's homeserver);
/// `backup_point` is the set holding the point made just before, which a release in a
/// newer store format needs.
pub fn install(
    hs: &Homeserver,
    release_key: &PublicKey,
    channel: &str,
    m: &Manifest,
    data_dir: &Path,
    backup_point: Option<&Path>,
) -> Result<Trial> {
    let slots = Slots::at(data_dir);
    admissible(&slots, m, backup_point)?;
    let staged = download(hs, release_key, channel, m, data_dir)?;
    let trial = slots.install(m, &staged, &slots.running(), backup_point);
    // The slot holds its own copy; the download is not needed either way.
    let _ = std::fs::remove_file(&staged);
    trial
}

/// [`install`] from a binary at hand (a file brought on a USB disk, say), checked against
/// `m` as it is copied.
pub fn install_file(
    m: &Manifest,
    binary: &Path,
    data_dir: &Path,
    backup_point: Option<&Path>,
) -> Result<Trial> {
    let slots = Slots::at(data_dir);
    admissible(&slots, m, backup_point)?;
    slots.install(m, binary, &slots.running(), backup_point)
}

/// The rules a release meets before a byte of it is fetched or copied.
fn admissible(slots: &Slots, m: &Manifest, backup_point: Option<&Path>) -> Result<()> {
    let (now, next) = (crate::store::FORMAT, m.store_format);
    if next < now {
        bail!(
            "{} writes store format {next}, older than this box's {now}: it could not read the store",
            m.version
        );
    }
    if needs_backup_point(m) && backup_point.is_none() {
        bail!(
            "{} changes the store's format ({now} → {next}), which a rollback cannot undo: it \
             installs only through `pubky-edge update now` or `update install`, which first \
             make a backup point to restore",
            m.version
        );
    }
    if slots.failed(&m.version) {
        bail!(
            "{} failed on this box before; it is not tried again",
            m.version
        );
    }
    Ok(())
}

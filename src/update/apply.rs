//! Installing a release that a check found: its binary is downloaded (verified as it
//! arrives), checked once more as it is copied into the slot that is not running, and
//! named the trial for the next start (`slots`). A release that changes the store's format
//! is not installed by itself: the store refuses to go back across a format change, so the
//! household first makes a backup point it could restore.

use std::path::Path;

use anyhow::{bail, Result};

use super::download::download;
use super::manifest::Manifest;
use super::slots::{Slots, Trial};
use crate::client::Homeserver;
use crate::pubkey::PublicKey;

pub fn install(
    hs: &Homeserver,
    release_key: &PublicKey,
    channel: &str,
    m: &Manifest,
    data_dir: &Path,
) -> Result<Trial> {
    let slots = Slots::at(data_dir);
    if m.store_format != crate::store::FORMAT {
        bail!(
            "{} changes the store's format ({} → {}), which cannot be undone by a rollback; \
             it is not installed by itself: make a backup point first (`pubky-edge backup create`)",
            m.version,
            crate::store::FORMAT,
            m.store_format
        );
    }
    if slots.failed(&m.version) {
        bail!(
            "{} failed on this box before; it is not tried again",
            m.version
        );
    }
    let staged = download(hs, release_key, channel, m, data_dir)?;
    let trial = slots.install(m, &staged, &slots.running());
    // The slot holds its own copy; the download is not needed either way.
    let _ = std::fs::remove_file(&staged);
    trial
}

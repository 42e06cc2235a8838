//! Taking over: [`promote`] turns a standby into the homeserver (the server stopped, or
//! from the follower just before it asks for a restart): the sealed homeserver key is
//! opened with the standby's own age key and becomes `<data>/secret` (the standby's own key
//! moves to `standby/own-secret`), and the next start publishes the homeserver's record with
//! this box's address.

use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::role::DIR;
use super::state::{own_key, Follow};
use crate::pubkey::PublicKey;

/// Makes this standby the homeserver; returns the homeserver key. The server must be
/// stopped (the store's lock is taken to be sure).
pub fn promote(data_dir: &Path) -> Result<PublicKey> {
    let mut f =
        Follow::load(data_dir).context("this box is not a standby (no standby/follow.json)")?;
    if f.promoted {
        bail!(
            "this box was promoted already: it is the homeserver {}",
            f.primary
        );
    }
    if !f.copied {
        bail!(
            "the first copy from the primary never completed: there is nothing to take over with"
        );
    }
    let sealed = f.sealed_key.as_deref().context(
        "this standby was paired without takeover: make a code with takeover allowed on the \
         primary and pair again",
    )?;
    let sealed = B64.decode(sealed).context("follow.json: sealed key")?;
    let mut seed = Vec::new();
    std::io::Read::read_to_end(
        &mut crate::backup::crypt::decrypt_with(&own_key(data_dir)?, &sealed[..])?,
        &mut seed,
    )
    .context("opening the sealed homeserver key with this box's standby key")?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| anyhow::anyhow!("the sealed key is not 32 bytes"))?;
    let hs = crate::identity::Identity::from_seed(seed).public_key();
    if hs != f.primary_key()? {
        bail!("the sealed key is not the key of the homeserver this box follows");
    }
    let secret = data_dir.join(crate::identity::SECRET_FILE);
    let own = data_dir.join(DIR).join("own-secret");
    if secret.exists() && !own.exists() {
        std::fs::rename(&secret, &own).context("keeping this box's own key")?;
    }
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    crate::backup::write_private(&secret, hex.as_bytes())?;
    f.promoted = true;
    f.save(data_dir)?;
    tracing::info!(homeserver = %hs, "this box is now the homeserver");
    Ok(hs)
}

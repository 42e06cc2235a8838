//! `pubky-edge import --from-webdav`: a whole homeserver moves in (the rules are
//! [`crate::backup::import`]'s; this is the command).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::backup;
use crate::config::Config;
use crate::store::Store;

/// Runs `pubky-edge import --from-webdav URL --admin-password PW` (or
/// `--admin-password-file F`) with the server stopped.
pub fn import(config: &Config, data_dir: &Path, args: &[&str]) -> Result<()> {
    let (mut url, mut password) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().copied().ok_or(anyhow!("{name} needs a value"));
        match *a {
            "--from-webdav" => url = Some(value("--from-webdav")?.to_string()),
            "--admin-password" => password = Some(value("--admin-password")?.to_string()),
            "--admin-password-file" => {
                let f = value("--admin-password-file")?;
                let p = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
                password = Some(p.trim_end_matches(['\n', '\r']).to_string());
            }
            other => bail!("unknown import option {other}"),
        }
    }
    let (Some(url), Some(password)) = (url, password) else {
        bail!("usage: pubky-edge import --from-webdav URL --admin-password PASSWORD");
    };
    if !data_dir.join(crate::identity::SECRET_FILE).is_file() {
        bail!(
            "no secret in {}: copy the reference homeserver's `secret` file there first, so \
             this box takes over its identity and every user's record stays valid",
            data_dir.display()
        );
    }
    let id = crate::identity::Identity::load_existing(data_dir)?;
    crate::app::prepare_data_dir(data_dir)?;
    let store = Store::open(data_dir, crate::app::store_config(config)).map_err(|e| {
        if matches!(e, crate::store::StoreError::InUse(_)) {
            anyhow!(
                "the server is running on {}: stop it first",
                data_dir.display()
            )
        } else {
            anyhow!("cannot open the store in {}: {e}", data_dir.display())
        }
    })?;
    let src = backup::import::Source::new(&url, &password)?;
    println!("importing into homeserver {}", id.public_key());
    let done = backup::import::import(&store, &src, |what| println!("{what}"));
    smol::block_on(store.close()).map_err(|e| anyhow!("closing the store: {e}"))?;
    let done = done?;
    println!(
        "{} users ({} new), {} files copied ({} bytes), {} already here",
        done.users, done.new_users, done.files, done.bytes, done.skipped
    );
    if done.failed.is_empty() {
        return Ok(());
    }
    for f in &done.failed {
        println!("failed:  {f}");
    }
    bail!(
        "{} file(s) could not be imported; run the import again to retry them",
        done.failed.len()
    )
}

//! `backup restore SRC DATA_DIR`: rebuilds a data directory from a point. The whole point
//! and its blobs are verified first (nothing is written from a damaged backup); then the
//! secret, the config, the blobs and the store are written, the store is checked, and
//! only then is the [`super::RESTORING_MARKER`] removed. The source set is only read.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::point::{self, copy_hashed, STORE_PART};
use super::set::Set;
use super::verify::{self, Report};
use super::{crypt, write_private, RESTORING_MARKER};
use crate::store::{Store, StoreConfig};

pub struct Restored {
    pub point: String,
    pub server: String,
    pub files: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Where what was in the target before went (with `--force`).
    pub moved_aside: Option<std::path::PathBuf>,
}

/// The newest point, or the named one.
pub fn pick(set: &Set, point: Option<&str>) -> Result<String> {
    match point {
        Some(p) => Ok(p.to_string()),
        None => set
            .points()?
            .pop()
            .map(|p| p.name)
            .context("the backup set holds no point"),
    }
}

/// Moves everything in `dir` into `dir/replaced-<time>/`.
fn move_aside(dir: &Path) -> Result<std::path::PathBuf> {
    let aside = dir.join(format!(
        "replaced-{}",
        crate::clock::rfc3339(crate::clock::now_secs()).replace(':', "-")
    ));
    fs::create_dir(&aside).with_context(|| format!("creating {}", aside.display()))?;
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.path() != aside {
            fs::rename(e.path(), aside.join(e.file_name()))?;
        }
    }
    Ok(aside)
}

pub fn restore(
    src: &Path,
    data_dir: &Path,
    point: Option<&str>,
    passphrase: &str,
    force: bool,
    store_cfg: StoreConfig,
) -> Result<Restored> {
    let set = Set::open(src)?;
    let identity = crypt::open_key(&fs::read(src.join("key.age"))?, passphrase)?;
    let name = pick(&set, point)?;
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let occupied = fs::read_dir(data_dir)?.next().is_some();
    if occupied && !force {
        bail!(
            "{} is not empty; restore into an empty directory, or pass --force to move what \
             is there into a replaced-<time> folder inside it first",
            data_dir.display()
        );
    }
    if data_dir.canonicalize()?.starts_with(src.canonicalize()?) {
        bail!("the data directory must not be inside the backup set");
    }

    // 1. everything is read and checked before anything is written
    let mut report = Report::default();
    let checked = verify::check_point(&set, &name, &identity, &mut report);
    let Some(manifest) = checked.manifest else {
        bail!("{}", report.problems.join("\n"));
    };
    verify::check_blobs(
        &set,
        &manifest.blobs,
        &checked.users_of,
        &identity,
        &mut report,
    );
    if !report.problems.is_empty() {
        bail!(
            "the backup is damaged; nothing was restored:\n  {}",
            report.problems.join("\n  ")
        );
    }

    // 2. write, marked as unfinished until the store has been checked
    let moved_aside = if occupied {
        Some(move_aside(data_dir)?)
    } else {
        None
    };
    write_private(&data_dir.join(RESTORING_MARKER), name.as_bytes())?;
    let mut opened = point::open(&set, &name, &identity)?;
    let store = Store::open(data_dir, store_cfg.clone())
        .map_err(|e| anyhow::anyhow!("creating the store: {e}"))?;
    for part in &manifest.parts {
        match opened.tar.next_entry()? {
            Some((n, _)) if n == part.name => {}
            _ => bail!("point {name} changed while it was being restored"),
        }
        match part.name.as_str() {
            "secret" | "config.toml" => {
                let mut bytes = Vec::new();
                let (_, hash) = copy_hashed(&mut opened.tar, &mut bytes)?;
                if hash != part.blake3 {
                    bail!("point {name} changed while it was being restored");
                }
                let file = if part.name == "secret" {
                    crate::identity::SECRET_FILE
                } else {
                    "config.toml"
                };
                write_private(&data_dir.join(file), &bytes)?;
            }
            STORE_PART => {
                let records = store
                    .load_dump_from(&mut opened.tar)
                    .map_err(|e| anyhow::anyhow!("loading the store: {e}"))?;
                if records != manifest.records {
                    bail!(
                        "the store dump held {records} records, the manifest says {}",
                        manifest.records
                    );
                }
            }
            other => bail!("unknown part {other} in point {name}"),
        }
    }
    for b in &manifest.blobs {
        let hash = crate::store::hash_from_hex(&b.blake3)
            .context("malformed blob hash in the manifest")?;
        let target = crate::store::blob_path(store.blob_dir(), &hash);
        fs::create_dir_all(target.parent().context("blob path")?)?;
        let tmp = target.with_extension("restoring");
        let f = File::open(set.blob_path(&b.file))?;
        let mut r = crypt::decrypt_with(&identity, BufReader::new(f))?;
        let mut out = BufWriter::new(File::create(&tmp)?);
        let (_, got) = copy_hashed(&mut r, &mut out)?;
        if got != crate::store::to_hex(&hash) {
            bail!(
                "blob file blobs/{} changed while it was being restored",
                b.file
            );
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, &target)?;
        super::sync_parent(&target)?;
    }
    smol::block_on(store.close()).map_err(|e| anyhow::anyhow!("closing the store: {e}"))?;
    drop(store);

    // 3. opened as the server would open it, and checked
    let store = Store::open(data_dir, store_cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let check = store.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    smol::block_on(store.close()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !check.problems.is_empty() {
        bail!(
            "the restored store is not consistent ({} left in place):\n  {}",
            RESTORING_MARKER,
            check.problems.join("\n  ")
        );
    }
    fs::remove_file(data_dir.join(RESTORING_MARKER))?;
    super::sync_parent(&data_dir.join(RESTORING_MARKER))?;
    Ok(Restored {
        point: name,
        server: manifest.server,
        files: check.entries,
        blobs: manifest.blobs.len(),
        bytes: report.bytes,
        moved_aside,
    })
}

/// Refuses to start on a data directory whose restore did not finish.
pub fn ensure_not_restoring(data_dir: &Path) -> io::Result<()> {
    let marker = data_dir.join(RESTORING_MARKER);
    if marker.exists() {
        return Err(io::Error::other(format!(
            "a restore into {} did not finish ({} is there); run `pubky-edge backup restore` \
             again with --force",
            data_dir.display(),
            marker.display()
        )));
    }
    Ok(())
}

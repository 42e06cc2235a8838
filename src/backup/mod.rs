//! Backups: whole-box points in time, encrypted with age, incremental in their blobs.
//!
//! A backup set is a folder (on a USB disk, a NAS, anywhere):
//!
//! ```text
//! DEST/README.txt          what this is and how to restore it
//! DEST/box                 the public key of the homeserver the set belongs to
//! DEST/key.age             the backup key, encrypted with the household's passphrase
//! DEST/points/<time>.age   one point in time: a tar of manifest.json, secret,
//!                          config.toml (when there is one) and store.dump
//! DEST/points/<time>.blobs the blob files that point needs (names only, in the clear)
//! DEST/blobs/xx/<name>.age one large body each, stored once for every point
//! ```
//!
//! Every `.age` file is encrypted to the box's backup key ([`crypt`]); blob file names are
//! a keyed hash of the body's BLAKE3 (the key derived from the homeserver's secret key), so
//! the set does not reveal which known files it holds. Making a point needs no passphrase
//! (the box keeps the key's public half); reading one does. The store's part is a
//! [`crate::store::Snapshot`] dump, taken by the running server through its admin API or by
//! this process when the server is stopped (`cli::backup`).

pub mod crypt;
pub mod export;
pub mod import;
pub mod outcome;
pub mod point;
pub mod restore;
pub mod set;
pub mod tar;
pub mod verify;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The folder of the box's backup state inside the data directory.
pub const BOX_DIR: &str = "backup";
/// A restore in progress leaves this file in the data directory until it has finished;
/// the server refuses to start while it is there.
pub const RESTORING_MARKER: &str = "RESTORING";

/// The box's backup key: `key.age` (secret half, passphrase-protected) and the recipient.
pub struct BoxKey {
    pub key_age: Vec<u8>,
    pub recipient: age::x25519::Recipient,
}

fn box_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(BOX_DIR)
}

impl BoxKey {
    /// The key made by `backup init`, if any.
    pub fn load(data_dir: &Path) -> Result<Option<BoxKey>> {
        let dir = box_dir(data_dir);
        let key_age = match fs::read(dir.join("key.age")) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("reading the backup key"),
        };
        let recipient = fs::read_to_string(dir.join("recipient"))
            .context("the backup key's recipient file is missing")?;
        Ok(Some(BoxKey {
            key_age,
            recipient: crypt::parse_recipient(&recipient)?,
        }))
    }

    /// Makes a new key protected by `passphrase`; refuses to replace one (backups made
    /// with it would become unreadable with the new passphrase).
    pub fn init(data_dir: &Path, passphrase: &str) -> Result<BoxKey> {
        if Self::load(data_dir)?.is_some() {
            bail!(
                "this box already has a backup key ({}); its passphrase is the one to keep",
                box_dir(data_dir).join("key.age").display()
            );
        }
        let (key_age, recipient) = crypt::new_key(passphrase)?;
        let dir = box_dir(data_dir);
        fs::create_dir_all(&dir)?;
        write_private(&dir.join("key.age"), &key_age)?;
        write_private(&dir.join("recipient"), format!("{recipient}\n").as_bytes())?;
        Ok(BoxKey {
            key_age,
            recipient: crypt::parse_recipient(&recipient)?,
        })
    }
}

/// Writes a file readable by its owner only, durably: temp file (`.tmp-<name>`, which a
/// set clears after an interruption), fsync, rename, fsync dir.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = set::tmp_of(path);
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    sync_parent(path)
}

/// fsync of the directory holding `path` (the current one for a bare file name).
pub fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
}

/// The key that names blob files in a set: derived from the homeserver's secret key, so
/// a restored box keeps adding to the same set without copying its blobs again.
pub fn names_key(server_seed: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("pubky-edge 2026 backup blob file names", server_seed)
}

/// The set-relative file of a blob: `xx/<keyed hash hex>.age`.
pub fn blob_file(names_key: &[u8; 32], hash: &[u8; 32]) -> String {
    let name = blake3::keyed_hash(names_key, hash).to_hex();
    format!("{}/{}.age", &name[..2], name)
}

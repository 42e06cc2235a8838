//! `pubky-edge export --user <pubky> DIR`: one user's files as a plain directory tree,
//! `DIR/files/pub/…` and `DIR/files/priv/…`, plus `DIR/manifest.json` (every path with its
//! size, BLAKE3, content type and times), from a store snapshot: one consistent moment,
//! taken by the running server or from a stopped store. For the day the box itself is
//! dying; the manifest is also what `move` reads as a source.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::point::{copy_hashed, SnapshotInfo};
use crate::pubkey::PublicKey;
use crate::store::snapshot::{DumpReader, Frame};
use crate::store::EntryMeta;

pub const FORMAT: &str = "pubky-edge-export/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportedFile {
    /// The file's path on the homeserver (`/pub/…`), also its place under `files/`.
    pub path: String,
    pub size: u64,
    pub blake3: String,
    pub content_type: String,
    /// RFC 3339 with microseconds.
    pub created_at: String,
    pub modified_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportManifest {
    pub format: String,
    pub user: String,
    /// The homeserver the files were exported from.
    pub homeserver: String,
    pub exported: String,
    pub files: Vec<ExportedFile>,
}

/// The local file of a stored path; only the canonical, relative components a
/// `StoragePath` can hold are accepted.
fn local(dir: &Path, path: &str) -> Result<PathBuf> {
    let mut out = dir.join("files");
    for seg in path.trim_start_matches('/').split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains('\0') {
            bail!("the stored path {path:?} cannot be a local file name");
        }
        out.push(seg);
    }
    Ok(out)
}

fn micros_rfc3339(us: u64) -> String {
    let s = crate::clock::rfc3339(us / 1_000_000);
    format!("{}.{:06}Z", s.trim_end_matches('Z'), us % 1_000_000)
}

fn write_file(path: &Path, r: &mut impl std::io::Read) -> Result<(u64, String)> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d)?;
    }
    let mut out = BufWriter::new(File::create(path)?);
    let got = copy_hashed(r, &mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(got)
}

/// Writes `user`'s files from the snapshot into `dir` (which must be empty or absent).
pub fn export_user(
    snap: &SnapshotInfo,
    user: &PublicKey,
    homeserver: &PublicKey,
    dir: &Path,
) -> Result<ExportManifest> {
    if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty", dir.display());
    }
    fs::create_dir_all(dir)?;
    let prefix = user.as_bytes().to_vec();
    let mut inline_written: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut files = Vec::new();
    let mut found_user = false;
    let mut r = DumpReader::new(BufReader::with_capacity(
        1 << 20,
        File::open(&snap.dump).context("reading the snapshot")?,
    ))?;
    let mut tree = String::new();
    while let Some(f) = r.next_frame()? {
        let (k, v) = match f {
            Frame::Tree(t) => {
                tree = t;
                continue;
            }
            Frame::Record(k, v) => (k, v),
            Frame::End { .. } => break,
        };
        if tree == "users" && k == prefix {
            found_user = true;
        }
        if !k.starts_with(&prefix) || k.len() == prefix.len() {
            continue;
        }
        let path = String::from_utf8_lossy(&k[32..]).into_owned();
        match tree.as_str() {
            // Format 1 kept inline bodies in `content`, which comes before `entries` in
            // a dump; format 2 keeps them in the entry's value, after its metadata.
            "content" => {
                let got = write_file(&local(dir, &path)?, &mut &v[..])?;
                inline_written.insert(path, got);
            }
            "entries" => {
                let (meta, body) = crate::store::codec::decode_with_tail::<EntryMeta>("entry", &v)?;
                let hex = crate::store::to_hex(&meta.hash);
                let (size, blake3) = if meta.inline && (!body.is_empty() || meta.len == 0) {
                    write_file(&local(dir, &path)?, &mut &body[..])?
                } else if meta.inline {
                    inline_written
                        .remove(&path)
                        .with_context(|| format!("{path}: its body is missing from the store"))?
                } else {
                    let src = crate::store::blob_path(&snap.blob_dir, &meta.hash);
                    let mut f = File::open(&src)
                        .with_context(|| format!("{path}: blob {} is missing", src.display()))?;
                    write_file(&local(dir, &path)?, &mut f)?
                };
                if blake3 != hex || size != meta.len {
                    bail!(
                        "{path}: the stored body does not match its hash (run `pubky-edge check`)"
                    );
                }
                let file = File::options().write(true).open(local(dir, &path)?)?;
                file.set_modified(crate::clock::system_time(meta.modified_at))?;
                files.push(ExportedFile {
                    path,
                    size,
                    blake3,
                    content_type: meta.content_type,
                    created_at: micros_rfc3339(meta.created_at),
                    modified_at: micros_rfc3339(meta.modified_at),
                });
            }
            _ => {}
        }
    }
    if !found_user {
        let _ = fs::remove_dir_all(dir.join("files"));
        bail!("{user} has no account on this homeserver");
    }
    let manifest = ExportManifest {
        format: FORMAT.into(),
        user: user.to_string(),
        homeserver: homeserver.to_string(),
        exported: micros_rfc3339(snap.taken_us),
        files,
    };
    let mut out = File::create(dir.join("manifest.json"))?;
    out.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    out.sync_all()?;
    Ok(manifest)
}

//! One point in time: writing it into a set from a store snapshot, and opening it again.
//! The point file is `age(tar(manifest.json, secret, [config.toml], store.dump))`; the
//! manifest comes first and holds the BLAKE3 of every other part and of every blob.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::set::{tmp_of, Set};
use super::{blob_file, crypt, tar};
use crate::store::snapshot::{DumpReader, Frame};

pub const FORMAT: &str = "pubky-edge-backup/1";
pub const STORE_PART: &str = "store.dump";

/// Where a snapshot's files are, as the server (or this process) took it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub dump: PathBuf,
    pub blob_dir: PathBuf,
    pub event_seq: u64,
    pub taken_us: u64,
    pub records: u64,
    pub paused_ms: u64,
}

impl SnapshotInfo {
    pub fn of(s: &crate::store::Snapshot, blob_dir: &Path) -> SnapshotInfo {
        SnapshotInfo {
            dump: s.dump.clone(),
            blob_dir: blob_dir.into(),
            event_seq: s.event_seq,
            taken_us: s.taken_us,
            records: s.records,
            paused_ms: s.paused_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub size: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobRef {
    pub blake3: String,
    pub size: u64,
    /// Set-relative file under `blobs/`.
    pub file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: String,
    /// RFC 3339, when the snapshot was taken.
    pub created: String,
    pub taken_us: u64,
    pub server: String,
    pub event_seq: u64,
    pub records: u64,
    /// How long the server's writes waited for the snapshot.
    pub paused_ms: u64,
    pub parts: Vec<Part>,
    pub blobs: Vec<BlobRef>,
}

/// What making a point did.
#[derive(Debug)]
pub struct Made {
    pub name: String,
    pub point_bytes: u64,
    pub blobs: usize,
    pub new_blobs: usize,
    pub new_blob_bytes: u64,
    pub seconds: f64,
}

/// The inputs of a point besides the store.
pub struct Identity<'a> {
    pub server: String,
    pub seed: [u8; 32],
    /// The `secret` file as it is on disk.
    pub secret_file: &'a [u8],
    pub config: Option<&'a [u8]>,
}

/// Reads a dump once: its BLAKE3 and size, and the blobs its `blob_refs` tree names.
fn scan_dump(path: &Path) -> Result<(Part, Vec<[u8; 32]>)> {
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let tee = Tee {
        r: file,
        hasher: &mut hasher,
        n: &mut size,
    };
    let mut blobs = Vec::new();
    let mut r = DumpReader::new(tee)?;
    let mut in_refs = false;
    while let Some(f) = r.next_frame()? {
        match f {
            Frame::Tree(name) => in_refs = name == "blob_refs",
            Frame::Record(k, _) if in_refs => {
                if let Ok(h) = <[u8; 32]>::try_from(&k[..]) {
                    blobs.push(h);
                }
            }
            _ => {}
        }
    }
    drop(r);
    Ok((
        Part {
            name: STORE_PART.into(),
            size,
            blake3: hasher.finalize().to_hex().to_string(),
        },
        blobs,
    ))
}

/// A reader that hashes and counts what passes through.
pub struct Tee<'a, R> {
    pub r: R,
    pub hasher: &'a mut blake3::Hasher,
    pub n: &'a mut u64,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.hasher.update(&buf[..n]);
        *self.n += n as u64;
        Ok(n)
    }
}

fn part(name: &str, bytes: &[u8]) -> Part {
    Part {
        name: name.into(),
        size: bytes.len() as u64,
        blake3: blake3::hash(bytes).to_hex().to_string(),
    }
}

/// Encrypts one blob file into the set, checking that its bytes still hash to its name.
fn copy_blob(
    set: &Set,
    src: &Path,
    hash: &[u8; 32],
    rel: &str,
    recipient: &age::x25519::Recipient,
) -> Result<u64> {
    let target = set.blob_path(rel);
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = tmp_of(&target);
    let mut input = File::open(src).with_context(|| format!("reading blob {}", src.display()))?;
    let out = BufWriter::with_capacity(256 << 10, File::create(&tmp)?);
    let mut w = crypt::encrypt_to(recipient, out)?;
    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    io::copy(
        &mut Tee {
            r: &mut input,
            hasher: &mut hasher,
            n: &mut n,
        },
        &mut w,
    )?;
    if hasher.finalize().as_bytes() != hash {
        let _ = fs::remove_file(&tmp);
        bail!(
            "the store's blob {} does not match its hash (damaged on the box's disk; run \
             `pubky-edge check`)",
            src.display()
        );
    }
    let f = w.finish()?.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    fs::rename(&tmp, &target)?;
    Ok(n)
}

/// Writes a new point of `snap` into `set`: the blobs it lacks, then the point.
pub fn make(
    set: &Set,
    snap: &SnapshotInfo,
    id: &Identity<'_>,
    recipient: &age::x25519::Recipient,
) -> Result<Made> {
    let started = Instant::now();
    let names = super::names_key(&id.seed);
    let (store_part, hashes) = scan_dump(&snap.dump).context("reading the snapshot")?;
    let present = set.blob_files()?;
    let mut blobs = Vec::with_capacity(hashes.len());
    let mut touched = BTreeSet::new();
    let (mut new_blobs, mut new_blob_bytes) = (0, 0);
    for h in &hashes {
        let rel = blob_file(&names, h);
        let hx = crate::store::to_hex(h);
        let src = crate::store::blob_path(&snap.blob_dir, h);
        let size = if present.contains(&rel) {
            fs::metadata(&src).map(|m| m.len()).unwrap_or(0)
        } else {
            let n = copy_blob(set, &src, h, &rel, recipient)?;
            touched.insert(rel[..2].to_string());
            new_blobs += 1;
            new_blob_bytes += n;
            n
        };
        blobs.push(BlobRef {
            blake3: hx,
            size,
            file: rel,
        });
    }
    for d in touched {
        File::open(set.root.join("blobs").join(d))?.sync_all()?;
    }
    let mut parts = vec![part("secret", id.secret_file)];
    if let Some(c) = id.config {
        parts.push(part("config.toml", c));
    }
    parts.push(store_part);
    let secs = snap.taken_us / 1_000_000;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        created: crate::clock::rfc3339(secs),
        taken_us: snap.taken_us,
        server: id.server.clone(),
        event_seq: snap.event_seq,
        records: snap.records,
        paused_ms: snap.paused_ms,
        parts,
        blobs,
    };
    let name = set.new_point_name(secs);
    let path = set.point_path(&name);
    let tmp = tmp_of(&path);
    let out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let mut w = crypt::encrypt_to(recipient, out)?;
    let json = serde_json::to_vec_pretty(&manifest)?;
    tar::append(
        &mut w,
        "manifest.json",
        json.len() as u64,
        secs,
        &mut &json[..],
    )?;
    tar::append(
        &mut w,
        "secret",
        id.secret_file.len() as u64,
        secs,
        &mut &id.secret_file[..],
    )?;
    if let Some(c) = id.config {
        tar::append(&mut w, "config.toml", c.len() as u64, secs, &mut &c[..])?;
    }
    let mut dump = BufReader::with_capacity(1 << 20, File::open(&snap.dump)?);
    let dump_size = manifest.parts.last().map_or(0, |p| p.size);
    tar::append(&mut w, STORE_PART, dump_size, secs, &mut dump)?;
    tar::finish(&mut w)?;
    let f = w.finish()?.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    let point_bytes = f.metadata()?.len();
    let list: String = manifest
        .blobs
        .iter()
        .map(|b| format!("{}\n", b.file))
        .collect();
    set.write(&format!("points/{name}.blobs"), list.as_bytes())?;
    fs::rename(&tmp, &path)?;
    super::sync_parent(&path)?;
    Ok(Made {
        name,
        point_bytes,
        blobs: manifest.blobs.len(),
        new_blobs,
        new_blob_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// An open point: its manifest read, the tar positioned after it.
pub struct Opened {
    pub manifest: Manifest,
    pub tar: tar::Reader<age::stream::StreamReader<BufReader<File>>>,
}

/// Decrypts a point and reads its manifest.
pub fn open(set: &Set, name: &str, identity: &age::x25519::Identity) -> Result<Opened> {
    let path = set.point_path(name);
    let file = File::open(&path).with_context(|| format!("no point {name} in the set"))?;
    let plain = crypt::decrypt_with(identity, BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("point {name} cannot be decrypted with this key"))?;
    let mut tar = tar::Reader::new(plain);
    match tar.next_entry() {
        Ok(Some((n, size))) if n == "manifest.json" && size < 1 << 30 => {
            let mut json = Vec::with_capacity(size as usize);
            tar.read_to_end(&mut json)?;
            let manifest: Manifest =
                serde_json::from_slice(&json).context("the point's manifest is malformed")?;
            if manifest.format != FORMAT {
                bail!(
                    "point {name} has format {:?}, not {FORMAT}",
                    manifest.format
                );
            }
            Ok(Opened { manifest, tar })
        }
        Ok(_) => bail!("point {name} does not start with its manifest"),
        Err(e) => bail!("point {name} is damaged: {e}"),
    }
}

/// The blobs of a manifest by hash.
pub fn blob_index(m: &Manifest) -> BTreeMap<String, &BlobRef> {
    m.blobs.iter().map(|b| (b.blake3.clone(), b)).collect()
}

/// Writes `bytes` from a reader into `out`, hashing them; returns (size, BLAKE3 hex).
pub fn copy_hashed(
    r: &mut impl Read,
    out: &mut (impl Write + ?Sized),
) -> io::Result<(u64, String)> {
    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    io::copy(
        &mut Tee {
            r,
            hasher: &mut hasher,
            n: &mut n,
        },
        out,
    )?;
    Ok((n, hasher.finalize().to_hex().to_string()))
}

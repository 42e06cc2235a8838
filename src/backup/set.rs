//! A backup set on disk (the layout is in the module docs of [`super`]): opening or
//! starting one, its points, and pruning with blob garbage collection. Files appear under
//! their final names only when complete (temp name, fsync, rename), so an interrupted
//! backup leaves `.tmp-` files that the next run removes, never a half point.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const README: &str = "\
This folder is a pubky-edge backup set: encrypted copies of one homeserver (its identity,
settings, every user's files) at several points in time.

  points/<time>.age   one point in time (age-encrypted tar)
  blobs/              large files, stored once for all points (age-encrypted)
  key.age             the backup key, protected by the household's backup passphrase
  box                 the public key of the homeserver these backups belong to

Restore onto a new SD card or any machine with pubky-edge installed:

    pubky-edge backup restore <this folder> <data directory>

Without pubky-edge, with the standard age tool (https://age-encryption.org):

    age -d -i key.age points/<time>.age | tar -xv

Keep the passphrase somewhere safe: without it nobody, including you, can read these files.
";

/// What `backup list` shows of one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointInfo {
    pub name: String,
    pub bytes: u64,
    /// Blob files it needs; `None` when its `.blobs` list is missing.
    pub blobs: Option<usize>,
}

pub struct Set {
    pub root: PathBuf,
}

impl Set {
    /// Opens an existing set for reading.
    pub fn open(root: &Path) -> Result<Set> {
        if !root.join("key.age").is_file() || !root.join("points").is_dir() {
            bail!(
                "{} is not a pubky-edge backup set (no key.age and points/)",
                root.display()
            );
        }
        Ok(Set { root: root.into() })
    }

    /// Opens the set for `server`, starting it when `root` is empty or missing. A set of
    /// another box, or one made with another backup key, is refused.
    pub fn open_or_start(root: &Path, server: &str, key_age: &[u8]) -> Result<Set> {
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let set = Set { root: root.into() };
        match fs::read_to_string(root.join("box")) {
            Ok(owner) if owner.trim() == server => {}
            Ok(owner) => bail!(
                "{} holds the backups of another homeserver ({}); use another folder",
                root.display(),
                owner.trim()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if fs::read_dir(root)?.next().is_some() {
                    bail!(
                        "{} is not empty and is not a pubky-edge backup set",
                        root.display()
                    );
                }
                fs::create_dir_all(root.join("points"))?;
                fs::create_dir_all(root.join("blobs"))?;
                set.write("README.txt", README.as_bytes())?;
                set.write("key.age", key_age)?;
                set.write("box", format!("{server}\n").as_bytes())?;
            }
            Err(e) => return Err(e).context("reading the set's box file"),
        }
        if fs::read(root.join("key.age"))? != key_age {
            bail!(
                "{} was made with another backup key (key.age differs from this box's); \
                 use another folder",
                root.display()
            );
        }
        set.clear_temps()?;
        Ok(set)
    }

    /// Writes a set file durably under its final name.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        super::write_private(&self.root.join(rel), bytes)
    }

    /// Every blob file present, set-relative (`xx/name.age`).
    pub fn blob_files(&self) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for dir in fs::read_dir(self.root.join("blobs"))? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            let d = dir.file_name().to_string_lossy().into_owned();
            for f in fs::read_dir(dir.path())? {
                let f = f?.file_name().to_string_lossy().into_owned();
                if f.ends_with(".age") && !f.starts_with(".tmp-") {
                    out.insert(format!("{d}/{f}"));
                }
            }
        }
        Ok(out)
    }

    pub fn blob_path(&self, rel: &str) -> PathBuf {
        self.root.join("blobs").join(rel)
    }

    pub fn point_path(&self, name: &str) -> PathBuf {
        self.root.join("points").join(format!("{name}.age"))
    }

    /// The points, oldest first.
    pub fn points(&self) -> Result<Vec<PointInfo>> {
        let mut out = Vec::new();
        for f in fs::read_dir(self.root.join("points"))? {
            let f = f?;
            let file = f.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".age") else {
                continue;
            };
            if name.starts_with(".tmp-") {
                continue;
            }
            let blobs = self.point_blobs(name)?.map(|b| b.len());
            out.push(PointInfo {
                name: name.into(),
                bytes: f.metadata()?.len(),
                blobs,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The blob files a point needs, from its `.blobs` list.
    pub fn point_blobs(&self, name: &str) -> Result<Option<Vec<String>>> {
        match fs::read_to_string(self.root.join("points").join(format!("{name}.blobs"))) {
            Ok(s) => Ok(Some(s.lines().map(str::to_string).collect())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A name for a new point: its UTC time, unique in the set.
    pub fn new_point_name(&self, secs: u64) -> String {
        let base = crate::clock::rfc3339(secs).replace(':', "-");
        let mut name = base.clone();
        let mut n = 2;
        while self.point_path(&name).exists() {
            name = format!("{base}.{n}");
            n += 1;
        }
        name
    }

    /// Keeps the newest `keep` points and removes blob files no remaining point needs.
    /// Returns (points removed, blob files removed).
    pub fn prune(&self, keep: usize) -> Result<(usize, usize)> {
        if keep == 0 {
            bail!("--keep must be at least 1");
        }
        let points = self.points()?;
        let drop_n = points.len().saturating_sub(keep);
        for p in &points[..drop_n] {
            fs::remove_file(self.point_path(&p.name))?;
            let _ = fs::remove_file(self.root.join("points").join(format!("{}.blobs", p.name)));
        }
        let mut needed = BTreeSet::new();
        for p in &points[drop_n..] {
            match self.point_blobs(&p.name)? {
                Some(list) => needed.extend(list),
                None => {
                    tracing::warn!(point = %p.name, "no blob list: blob files are kept");
                    return Ok((drop_n, 0));
                }
            }
        }
        let mut removed = 0;
        for f in self.blob_files()? {
            if !needed.contains(&f) {
                fs::remove_file(self.blob_path(&f))?;
                removed += 1;
            }
        }
        super::sync_parent(&self.root.join("points").join("x"))?;
        Ok((drop_n, removed))
    }

    /// Removes what an interrupted run left (`.tmp-` files, point lists without a point).
    fn clear_temps(&self) -> Result<()> {
        let mut dirs = vec![self.root.clone(), self.root.join("points")];
        for d in fs::read_dir(self.root.join("blobs"))? {
            dirs.push(d?.path());
        }
        for d in dirs {
            for f in fs::read_dir(&d)? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") {
                    fs::remove_file(f.path())?;
                }
            }
        }
        for f in fs::read_dir(self.root.join("points"))? {
            let name = f?.file_name().to_string_lossy().into_owned();
            if let Some(p) = name.strip_suffix(".blobs") {
                if !self.point_path(p).exists() {
                    fs::remove_file(self.root.join("points").join(&name))?;
                }
            }
        }
        Ok(())
    }
}

/// The temp name a set file is written under before its rename.
pub fn tmp_of(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{name}"))
}

//! `backup verify`: decrypts every point and every blob file it needs and checks each
//! against the manifest's BLAKE3 hashes; the store dump is also parsed to the end and its
//! blob references compared with the manifest. Problems name what is damaged: the point,
//! the part, or the blob file with the users' files that need it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use anyhow::Result;

use super::crypt;
use super::point::{self, copy_hashed, Manifest, Tee, STORE_PART};
use super::set::Set;
use crate::store::snapshot::{DumpReader, Frame};
use crate::store::EntryMeta;

#[derive(Debug, Default)]
pub struct Report {
    pub points: usize,
    pub blobs: usize,
    /// Plaintext bytes checked.
    pub bytes: u64,
    pub problems: Vec<String>,
}

/// What one point holds, once checked.
pub struct Checked {
    pub manifest: Option<Manifest>,
    /// Blob hash → files of users that need it (`<user>/<path>`), from the dump.
    pub users_of: BTreeMap<String, Vec<String>>,
}

/// Checks one point's parts; its blobs are checked by [`check_blobs`].
pub fn check_point(
    set: &Set,
    name: &str,
    identity: &age::x25519::Identity,
    report: &mut Report,
) -> Checked {
    let mut out = Checked {
        manifest: None,
        users_of: BTreeMap::new(),
    };
    let mut opened = match point::open(set, name, identity) {
        Ok(o) => o,
        Err(e) => {
            report.problems.push(format!("point {name}: {e:#}"));
            return out;
        }
    };
    report.points += 1;
    let manifest = opened.manifest.clone();
    for expected in &manifest.parts {
        let entry = match opened.tar.next_entry() {
            Ok(Some((n, _))) if n == expected.name => n,
            Ok(other) => {
                report.problems.push(format!(
                    "point {name}: expected part {}, found {:?}",
                    expected.name,
                    other.map(|o| o.0)
                ));
                return out;
            }
            Err(e) => {
                report.problems.push(format!("point {name}: damaged ({e})"));
                return out;
            }
        };
        let got = if entry == STORE_PART {
            read_dump(&mut opened.tar, &mut out.users_of, &manifest)
        } else {
            copy_hashed(&mut opened.tar, &mut io::sink()).map_err(|e| e.to_string())
        };
        match got {
            Ok((size, hash)) if size == expected.size && hash == expected.blake3 => {
                report.bytes += size;
            }
            Ok(_) => report.problems.push(format!(
                "point {name}: part {entry} does not match its hash in the manifest"
            )),
            Err(e) => report
                .problems
                .push(format!("point {name}: part {entry} is damaged ({e})")),
        }
    }
    out.manifest = Some(manifest);
    out
}

/// Hashes the dump while parsing it: every frame must read, its blob references must be
/// the manifest's blobs, and each large file's blob is noted with the user's path.
fn read_dump(
    r: &mut impl Read,
    users_of: &mut BTreeMap<String, Vec<String>>,
    m: &Manifest,
) -> Result<(u64, String), String> {
    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    let mut refs = BTreeSet::new();
    {
        let tee = Tee {
            r: &mut *r,
            hasher: &mut hasher,
            n: &mut n,
        };
        let mut dump = DumpReader::new(tee).map_err(|e| e.to_string())?;
        let mut tree = String::new();
        while let Some(f) = dump.next_frame().map_err(|e| e.to_string())? {
            match f {
                Frame::Tree(t) => tree = t,
                Frame::Record(k, v) if tree == "entries" && k.len() > 32 => {
                    let meta: EntryMeta =
                        crate::store::codec::decode("entry", &v).map_err(|e| e.to_string())?;
                    if !meta.inline {
                        let mut user = [0u8; 32];
                        user.copy_from_slice(&k[..32]);
                        let who = crate::pubkey::PublicKey::from_bytes(user)
                            .map_or_else(|_| crate::store::to_hex(&user), |p| p.to_string());
                        users_of
                            .entry(crate::store::to_hex(&meta.hash))
                            .or_default()
                            .push(format!("{who}{}", String::from_utf8_lossy(&k[32..])));
                    }
                }
                Frame::Record(k, _) if tree == "blob_refs" => {
                    refs.insert(crate::store::to_hex(&k));
                }
                _ => {}
            }
        }
    }
    // the tar entry may hold bytes after the end frame only if it is damaged
    io::copy(
        &mut Tee {
            r,
            hasher: &mut hasher,
            n: &mut n,
        },
        &mut io::sink(),
    )
    .map_err(|e| e.to_string())?;
    let listed: BTreeSet<String> = m.blobs.iter().map(|b| b.blake3.clone()).collect();
    if refs != listed {
        return Err("its blob references differ from the manifest's blob list".into());
    }
    Ok((n, hasher.finalize().to_hex().to_string()))
}

/// Checks blob files: each is decrypted and hashed once. `users_of` names who needs it.
pub fn check_blobs<'a>(
    set: &Set,
    blobs: impl IntoIterator<Item = &'a point::BlobRef>,
    users_of: &BTreeMap<String, Vec<String>>,
    identity: &age::x25519::Identity,
    report: &mut Report,
) {
    let mut seen = BTreeSet::new();
    for b in blobs {
        if !seen.insert(b.file.clone()) {
            continue;
        }
        report.blobs += 1;
        let who = users_of
            .get(&b.blake3)
            .map(|u| format!(" (needed by {})", u.join(", ")))
            .unwrap_or_default();
        let path = set.blob_path(&b.file);
        let result = std::fs::File::open(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    "is missing".to_string()
                } else {
                    format!("cannot be read ({e})")
                }
            })
            .and_then(|f| {
                let mut r = crypt::decrypt_with(identity, io::BufReader::new(f))
                    .map_err(|e| format!("is damaged ({e})"))?;
                copy_hashed(&mut r, &mut io::sink()).map_err(|e| format!("is damaged ({e})"))
            });
        match result {
            Ok((size, hash)) if hash == b.blake3 => report.bytes += size,
            Ok(_) => report.problems.push(format!(
                "blob file blobs/{} does not match its hash{who}",
                b.file
            )),
            Err(e) => report
                .problems
                .push(format!("blob file blobs/{} {e}{who}", b.file)),
        }
    }
}

/// Checks the named point, or every point of the set.
pub fn verify(set: &Set, identity: &age::x25519::Identity, only: Option<&str>) -> Result<Report> {
    let mut report = Report::default();
    let names: Vec<String> = match only {
        Some(n) => vec![n.to_string()],
        None => set.points()?.into_iter().map(|p| p.name).collect(),
    };
    if names.is_empty() {
        report.problems.push("the set holds no point".into());
    }
    let mut all_blobs = Vec::new();
    let mut users_of = BTreeMap::new();
    for name in &names {
        let checked = check_point(set, name, identity, &mut report);
        if let Some(m) = checked.manifest {
            all_blobs.extend(m.blobs);
        }
        for (h, u) in checked.users_of {
            users_of.entry(h).or_insert(u);
        }
    }
    check_blobs(set, &all_blobs, &users_of, identity, &mut report);
    Ok(report)
}

//! `pubky-edge move`: a user moves their data from one homeserver to another, with their
//! own key, from any machine. It reads the user's recovery file (the official format),
//! finds both homeservers through the DHT, signs in on the old one and signs up on the new
//! one (grant sessions over PubkyTLS, each server checked by its key), copies every file
//! under `/pub/` and `/priv/` with the same path, bytes and content type (streamed through
//! a part file, one file at a time, so even a large video is never in memory), reads each back
//! from the new server and compares BLAKE3 hashes, and only then republishes the user's
//! `_pubky` record to point at the new homeserver (keeping the record's other entries), and
//! only after that, with `--delete-old`, deletes the files on the old one. Progress is kept
//! in a journal file, so an interrupted move resumes where it stopped. The secret key stays
//! in this process.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::announce::dht::{DhtClient, DhtSettings};
use crate::announce::packet;
use crate::backup::export::ExportManifest;
use crate::backup::point::copy_hashed;
use crate::config::Config;
use crate::pubkey::PublicKey;

mod client;
mod import;
use client::{Homeserver, Session};
pub use import::import;

pub const USAGE: &str = "\
USAGE:
    pubky-edge move --recovery-file FILE --to <homeserver> [--from <homeserver>]
                    [--from-export DIR] [--signup-token TOKEN] [--delete-old]
                    [--passphrase-file FILE]

  Moves your files (everything under /pub/ and /priv/) to another homeserver and points
  your Pubky record at it. The recovery file's passphrase is read from --passphrase-file,
  else PUBKY_EDGE_RECOVERY_PASSPHRASE, else asked on the terminal. --from defaults to the
  homeserver your record names now. --from-export reads the files from a folder made by
  `pubky-edge export` (when the old box cannot serve them any more). Interrupted, run the
  same command again: it resumes.
";

/// What a move has done so far, kept next to the recovery file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    from: String,
    to: String,
    /// Path → BLAKE3 of the bytes verified on the new homeserver.
    copied: BTreeMap<String, String>,
    republished: bool,
    deleted: Vec<String>,
}

impl Journal {
    fn path(recovery: &Path, user: &PublicKey) -> PathBuf {
        let name = format!(".pubky-move-{}.json", user);
        recovery.parent().unwrap_or(Path::new(".")).join(name)
    }

    fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Points the user's `_pubky` record at `to`, keeping the packet's other records.
async fn republish(dht: &DhtClient, user: &SigningKey, to: &PublicKey) -> Result<()> {
    use pkarr::dns::rdata::SVCB;
    let pk = PublicKey::from(user.verifying_key());
    let keypair = pkarr::Keypair::from_secret_key(&user.to_bytes());
    let mut builder = pkarr::SignedPacket::builder();
    let existing = dht.get(&pk).await;
    if let Some(p) = &existing {
        for rr in p.all_resource_records() {
            if !rr.name.to_string().starts_with("_pubky") {
                builder = builder.record(rr.clone());
            }
        }
    }
    let target = to.to_string();
    let svcb = SVCB::new(0, target.as_str().try_into().map_err(|e| anyhow!("{e:?}"))?);
    let name = "_pubky".try_into().map_err(|e| anyhow!("{e:?}"))?;
    let mut builder = builder.https(name, svcb, packet::TTL_SECS);
    if let Some(p) = &existing {
        // strictly newer than what the DHT holds, whatever this machine's clock says
        let now = crate::clock::now_micros().max(p.timestamp().as_u64() + 1);
        builder = builder.timestamp(pkarr::Timestamp::from(now));
    }
    let signed = builder
        .sign(&keypair)
        .map_err(|e| anyhow!("signing the record: {e}"))?;
    dht.put(&signed)
        .await
        .map_err(|e| anyhow!("publishing the record: {e}"))?;
    match dht.get(&pk).await.and_then(|p| packet::homeserver_of(&p)) {
        Some(hs) if hs == *to => Ok(()),
        other => bail!("the DHT still names {other:?} as your homeserver"),
    }
}

struct Opts {
    recovery: PathBuf,
    to: PublicKey,
    from: Option<PublicKey>,
    token: Option<String>,
    delete_old: bool,
    passphrase_file: Option<PathBuf>,
    /// A folder made by `pubky-edge export` to read the files from instead.
    from_export: Option<PathBuf>,
}

fn parse(args: &[&str]) -> Result<Opts> {
    let (mut recovery, mut to, mut from, mut token) = (None, None, None, None);
    let (mut delete_old, mut passphrase_file, mut from_export) = (false, None, None);
    let key = |s: &str| {
        PublicKey::parse_z32(s.trim_start_matches("pubky://"))
            .map_err(|e| anyhow!("{s}: not a homeserver key ({e})"))
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |n: &str| it.next().copied().ok_or(anyhow!("{n} needs a value"));
        match *a {
            "--recovery-file" => recovery = Some(PathBuf::from(value(a)?)),
            "--to" => to = Some(key(value(a)?)?),
            "--from" => from = Some(key(value(a)?)?),
            "--signup-token" => token = Some(value(a)?.to_string()),
            "--passphrase-file" => passphrase_file = Some(PathBuf::from(value(a)?)),
            "--from-export" => from_export = Some(PathBuf::from(value(a)?)),
            "--delete-old" => delete_old = true,
            "help" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown move option {other}\n\n{USAGE}"),
        }
    }
    Ok(Opts {
        recovery: recovery.context("--recovery-file is required")?,
        to: to.context("--to is required")?,
        from,
        token,
        delete_old,
        passphrase_file,
        from_export,
    })
}

/// Where the files come from: the old homeserver, or an export folder.
enum Source<'a> {
    Server(Session<'a>),
    Export(PathBuf, ExportManifest),
}

impl Source<'_> {
    fn files(&self) -> Result<Vec<String>> {
        match self {
            Source::Server(s) => {
                let mut files = s.list("/pub/")?;
                files.extend(s.list("/priv/")?);
                Ok(files)
            }
            Source::Export(_, m) => Ok(m.files.iter().map(|f| f.path.clone()).collect()),
        }
    }

    /// A file to upload, opened at its start, with its size, BLAKE3 and content type: the
    /// old server's copy downloaded into `part`, or the export's own file once checked.
    fn fetch(&self, path: &str, part: &Path) -> Result<(File, u64, String, String)> {
        let (file, size, hash, ct) = match self {
            Source::Server(s) => {
                let mut f = File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(part)
                    .with_context(|| format!("creating {}", part.display()))?;
                let (size, hash, ct) = s.download(path, &mut f)?;
                (f, size, hash, ct)
            }
            Source::Export(dir, m) => {
                // Invariant: `path` comes from this manifest's own list.
                let f = m
                    .files
                    .iter()
                    .find(|f| f.path == path)
                    .expect("listed file");
                let local = dir.join("files").join(path.trim_start_matches('/'));
                let mut file =
                    File::open(&local).with_context(|| format!("reading {}", local.display()))?;
                let (size, hash) = copy_hashed(&mut file, &mut std::io::sink())?;
                if hash != f.blake3 {
                    bail!("{} does not match the export's manifest", local.display());
                }
                (file, size, hash, f.content_type.clone())
            }
        };
        let mut file = file;
        file.seek(SeekFrom::Start(0))?;
        Ok((file, size, hash, ct))
    }
}

/// Runs `pubky-edge move …`.
pub fn run(config: &Config, args: &[&str]) -> Result<()> {
    let o = parse(args)?;
    if !config.pkdns.dht {
        bail!("move finds homeservers through the DHT, and pkdns.dht is off");
    }
    let file =
        std::fs::read(&o.recovery).with_context(|| format!("reading {}", o.recovery.display()))?;
    let passphrase = super::secret::input(
        o.passphrase_file.as_deref(),
        "PUBKY_EDGE_RECOVERY_PASSPHRASE",
        "recovery file passphrase: ",
    )?;
    let seed = crate::auth::recovery_file::decrypt(&file, &passphrase)?;
    let user = SigningKey::from_bytes(&seed);
    let pk = PublicKey::from(user.verifying_key());
    let dht = DhtClient::start(&DhtSettings {
        bootstrap: config.pkdns.dht_bootstrap_nodes.clone(),
        request_timeout: config.pkdns.dht_request_timeout,
        port: Some(0),
    })?;
    let journal_path = Journal::path(&o.recovery, &pk);
    let mut journal: Journal = match std::fs::read(&journal_path) {
        Ok(b) => serde_json::from_slice(&b).context("the move's journal is damaged")?,
        Err(_) => Journal::default(),
    };
    let export = match &o.from_export {
        Some(dir) => {
            let m: ExportManifest = serde_json::from_slice(
                &std::fs::read(dir.join("manifest.json"))
                    .with_context(|| format!("{} is not an export folder", dir.display()))?,
            )
            .context("the export's manifest is malformed")?;
            if m.user != pk.to_string() {
                bail!(
                    "{} holds the files of {}, not of {pk}",
                    dir.display(),
                    m.user
                );
            }
            if o.delete_old {
                bail!("--delete-old needs the old homeserver, not an export folder");
            }
            Some((dir.clone(), m))
        }
        None => None,
    };
    let from = match (o.from, &export, journal.from.as_str()) {
        (Some(f), _, _) => f,
        (None, Some((_, m)), _) => PublicKey::parse_z32(&m.homeserver)?,
        (None, None, j) if !j.is_empty() => PublicKey::parse_z32(j)?,
        (None, None, _) => smol::block_on(dht.get(&pk))
            .and_then(|p| packet::homeserver_of(&p))
            .context("your record names no homeserver: give --from")?,
    };
    if from == o.to {
        bail!("your data is already on {from}");
    }
    if !journal.to.is_empty()
        && (journal.to != o.to.to_string() || journal.from != from.to_string())
    {
        bail!(
            "{} belongs to a move from {} to {}; finish it or delete the file",
            journal_path.display(),
            journal.from,
            journal.to
        );
    }
    journal.from = from.to_string();
    journal.to = o.to.to_string();
    println!("moving {pk} from {from} to {}", o.to);

    let new = smol::block_on(Homeserver::locate(&dht, o.to))?;
    let old;
    let source = match export {
        Some((dir, m)) => Source::Export(dir, m),
        None => {
            old = smol::block_on(Homeserver::locate(&dht, from))?;
            Source::Server(old.sign_in(&user)?)
        }
    };
    let new_s = new.sign_up(&user, o.token.as_deref())?;
    let files = source.files()?;
    // One file at a time goes through this file, so no file is ever held in memory.
    let part = journal_path.with_extension("part");
    let (mut copied, mut bytes) = (0, 0u64);
    for path in &files {
        if journal.copied.contains_key(path) {
            continue;
        }
        let (mut file, size, hash, ct) = source.fetch(path, &part)?;
        new_s.upload(path, &mut file, size, &ct)?;
        let (back_size, back_hash, back_ct) = new_s.download(path, &mut std::io::sink())?;
        if (back_size, &back_hash, &back_ct) != (size, &hash, &ct) {
            bail!("{path}: the new homeserver does not return what was sent");
        }
        journal.copied.insert(path.clone(), hash);
        journal.save(&journal_path)?;
        copied += 1;
        bytes += size;
    }
    let _ = std::fs::remove_file(&part);
    println!(
        "{} files on the old homeserver: {copied} copied now ({bytes} bytes), {} earlier; all verified",
        files.len(),
        files.len() - copied
    );
    if !journal.republished {
        smol::block_on(republish(&dht, &user, &o.to))?;
        journal.republished = true;
        journal.save(&journal_path)?;
    }
    println!("your record now names {} as your homeserver", o.to);
    if let (true, Source::Server(old_s)) = (o.delete_old, &source) {
        for path in &files {
            if !journal.deleted.contains(path) {
                old_s.delete(path)?;
                journal.deleted.push(path.clone());
                journal.save(&journal_path)?;
            }
        }
        println!("deleted {} files from {from}", journal.deleted.len());
    }
    std::fs::remove_file(&journal_path)?;
    Ok(())
}

//! `pubky-edge backup …`: makes, lists, prunes, verifies and restores backup sets
//! ([`crate::backup`]). A backup of a running server asks it for a snapshot through the
//! admin API (`POST /backup/snapshot`) and keeps that connection open while it copies; a
//! stopped server's store is opened here and snapshotted directly. The work (encryption,
//! writing to the backup disk) is done in this process, never in the server's.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::backup::point::{self, SnapshotInfo};
use crate::backup::set::Set;
use crate::backup::{self, crypt, outcome::Outcome, restore, verify, BoxKey};
use crate::config::Config;
use crate::store::{Snapshot, Store};

pub const USAGE: &str = "\
BACKUP COMMANDS:
    backup init                       make this box's backup key, protected by a passphrase
    backup create DEST [--keep N]     add a point in time to the backup set in DEST (made
                                      while the server runs; only new large files are
                                      copied), then keep the newest N points
    backup list DEST                  the points in a set
    backup prune DEST --keep N        keep the newest N points, drop blobs no point needs
    backup verify DEST [--point P]    decrypt and check every hash (needs the passphrase)
    backup restore SRC DATA_DIR [--point P] [--force]
                                      rebuild a data directory from the newest point (or P);
                                      DATA_DIR must be empty unless --force, which moves what
                                      is there into DATA_DIR/replaced-<time>/
  The passphrase is read from --passphrase-file FILE, else PUBKY_EDGE_BACKUP_PASSPHRASE,
  else asked on the terminal. --scheduled (for the nightly timer) records a missing DEST
  as a failed backup and says which disk to plug in.
";

/// The label of the USB disk the nightly backup looks for.
pub const DISK_LABEL: &str = "PUBKY-BACKUP";

struct Opts<'a> {
    positional: Vec<&'a str>,
    keep: Option<usize>,
    point: Option<&'a str>,
    passphrase_file: Option<&'a str>,
    force: bool,
    scheduled: bool,
}

fn parse<'a>(args: &[&'a str]) -> Result<Opts<'a>> {
    let mut o = Opts {
        positional: Vec::new(),
        keep: None,
        point: None,
        passphrase_file: None,
        force: false,
        scheduled: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().copied().ok_or(anyhow!("{name} needs a value"));
        match *a {
            "--keep" => {
                let n: usize = value("--keep")?.parse().context("--keep needs a number")?;
                if n == 0 {
                    bail!("--keep must be at least 1");
                }
                o.keep = Some(n);
            }
            "--point" => o.point = Some(value("--point")?),
            "--passphrase-file" => o.passphrase_file = Some(value("--passphrase-file")?),
            "--force" => o.force = true,
            "--scheduled" => o.scheduled = true,
            s if s.starts_with('-') => bail!("unknown backup option {s} (see `backup help`)"),
            s => o.positional.push(s),
        }
    }
    Ok(o)
}

/// The backup passphrase (`twice` on the terminal for a new one).
fn passphrase(o: &Opts<'_>, twice: bool) -> Result<String> {
    let file = o.passphrase_file.map(Path::new);
    let label = "backup passphrase: ";
    let p = super::secret::input(file, "PUBKY_EDGE_BACKUP_PASSPHRASE", label)?;
    let asked = file.is_none()
        && std::env::var("PUBKY_EDGE_BACKUP_PASSPHRASE").map_or(true, |v| v.is_empty());
    if twice && asked && super::secret::prompt("again: ")? != p {
        bail!("the two passphrases differ");
    }
    Ok(p)
}

/// What keeps a snapshot alive while it is copied.
enum Hold {
    /// The server's: its admin connection.
    Server(crate::runtime::http1::Reply),
    /// Ours: the store opened here (the server is stopped).
    Local(Snapshot, Store),
}

/// Takes a snapshot through the running server, or directly when it is stopped.
fn snapshot(config: &Config, data_dir: &Path) -> Result<(SnapshotInfo, Hold)> {
    let (addr, password) = super::admin::target(config, data_dir)?;
    match super::admin::first_line(addr, &password, "POST", "/backup/snapshot") {
        Ok((200, line, conn)) => {
            let info: SnapshotInfo =
                serde_json::from_str(&line).context("the server's snapshot answer")?;
            let ours = data_dir.join("blobs").canonicalize().ok();
            if info.blob_dir.canonicalize().ok() != ours {
                bail!(
                    "the server at {addr} keeps its data in {}, not in {}",
                    info.blob_dir.parent().unwrap_or(&info.blob_dir).display(),
                    data_dir.display()
                );
            }
            return Ok((info, Hold::Server(conn)));
        }
        Ok((status, line, _)) => bail!("the admin API refused the snapshot ({status}): {line}"),
        Err(_) => {} // not running (or not reachable): try the store itself
    }
    if !data_dir.join("db").is_dir() {
        bail!("no store in {}", data_dir.display());
    }
    let store = Store::open(data_dir, crate::app::store_config(config)).map_err(|e| {
        if matches!(e, crate::store::StoreError::InUse(_)) {
            anyhow!(
                "the server is running but its admin API at {addr} cannot be reached; a \
                 backup of a running server goes through it"
            )
        } else {
            anyhow!("cannot open the store in {}: {e}", data_dir.display())
        }
    })?;
    let snap = store.snapshot().map_err(|e| anyhow!("snapshot: {e}"))?;
    let info = SnapshotInfo::of(&snap, store.blob_dir());
    Ok((info, Hold::Local(snap, store)))
}

/// Writes a new backup point of the box into the set at `dest` (started there if new):
/// the store's snapshot, the secret key and the config file.
pub fn make_point(
    config: &Config,
    config_file: Option<&Path>,
    data_dir: &Path,
    dest: &Path,
) -> Result<(point::Made, SnapshotInfo)> {
    let key = BoxKey::load(data_dir)?.context(
        "this box has no backup key yet: run `pubky-edge backup init` (it asks for the \
         passphrase that will protect the backups)",
    )?;
    let secret_file = std::fs::read(data_dir.join(crate::identity::SECRET_FILE))
        .context("reading the homeserver's secret key")?;
    let id = crate::identity::Identity::load_existing(data_dir)?;
    let server = id.public_key().to_string();
    let config_bytes = match config_file {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?),
        None => None,
    };
    let set = Set::open_or_start(dest, &server, &key.key_age)?;
    let (info, hold) = snapshot(config, data_dir)?;
    let made = point::make(
        &set,
        &info,
        &point::Identity {
            server,
            seed: id.signing_key().to_bytes(),
            secret_file: &secret_file,
            config: config_bytes.as_deref(),
        },
        &key.recipient,
    );
    release(hold)?;
    Ok((made?, info))
}

fn release(hold: Hold) -> Result<()> {
    match hold {
        Hold::Server(conn) => drop(conn),
        Hold::Local(snap, store) => {
            drop(snap);
            smol::block_on(store.close()).map_err(|e| anyhow!("closing the store: {e}"))?;
        }
    }
    Ok(())
}

fn create(
    config: &Config,
    config_file: Option<&Path>,
    data_dir: &Path,
    dest: &Path,
    o: &Opts<'_>,
) -> Result<String> {
    if o.scheduled && !dest.is_dir() {
        bail!(
            "{} is not there: plug in the backup disk (a USB disk whose filesystem is \
             labelled {DISK_LABEL})",
            dest.display()
        );
    }
    let (made, info) = make_point(config, config_file, data_dir, dest)?;
    println!(
        "point {} written: {} bytes, {} large files ({} new, {} bytes), writes paused {} ms, {:.1} s",
        made.name,
        made.point_bytes,
        made.blobs,
        made.new_blobs,
        made.new_blob_bytes,
        info.paused_ms,
        made.seconds
    );
    if let Some(keep) = o.keep {
        let (points, blobs) = Set::open(dest)?.prune(keep)?;
        println!("pruned {points} old point(s) and {blobs} blob file(s)");
    }
    Ok(made.name)
}

/// Runs `pubky-edge backup <args…>`.
pub fn run(
    config: &Config,
    config_file: Option<&Path>,
    data_dir: &Path,
    args: &[&str],
) -> Result<()> {
    let o = parse(args)?;
    let pos = o.positional.as_slice();
    match pos {
        [] | ["help"] => {
            print!("{USAGE}");
            Ok(())
        }
        ["init"] => {
            let key = BoxKey::init(data_dir, &passphrase(&o, true)?)?;
            println!(
                "backup key made; backups are encrypted to {}",
                key.recipient
            );
            println!("keep the passphrase safe: without it no backup can be read");
            Ok(())
        }
        ["create", _] if o.scheduled && BoxKey::load(data_dir)?.is_none() => {
            // Not set up is not a failed backup: `status` says so; nothing to record.
            println!("backups are not set up on this box (`pubky-edge backup init`)");
            Ok(())
        }
        ["create", dest] => {
            let dest = PathBuf::from(dest);
            let now = crate::clock::now_secs;
            match create(config, config_file, data_dir, &dest, &o) {
                Ok(point) => {
                    Outcome::record(data_dir, now(), &dest, Ok(&point))?;
                    Ok(())
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    if let Err(re) = Outcome::record(data_dir, now(), &dest, Err(&why)) {
                        eprintln!("pubky-edge: the outcome could not be recorded: {re:#}");
                    }
                    Err(e)
                }
            }
        }
        ["list", dest] => {
            let set = Set::open(Path::new(dest))?;
            for p in set.points()? {
                let blobs = p.blobs.map_or("?".into(), |b| b.to_string());
                println!("{}  {:>12} bytes  {blobs} large files", p.name, p.bytes);
            }
            Ok(())
        }
        ["prune", dest] => {
            let keep = o.keep.context("prune needs --keep N")?;
            let (points, blobs) = Set::open(Path::new(dest))?.prune(keep)?;
            println!("pruned {points} point(s) and {blobs} blob file(s)");
            Ok(())
        }
        ["verify", dest] => {
            let set = Set::open(Path::new(dest))?;
            let identity = crypt::open_key(
                &std::fs::read(set.root.join("key.age"))?,
                &passphrase(&o, false)?,
            )?;
            let report = verify::verify(&set, &identity, o.point)?;
            println!(
                "checked {} point(s) and {} blob file(s), {} bytes",
                report.points, report.blobs, report.bytes
            );
            if report.problems.is_empty() {
                println!("backup set is intact");
                return Ok(());
            }
            for p in &report.problems {
                println!("damaged:  {p}");
            }
            bail!("{} problem(s) found in {dest}", report.problems.len())
        }
        ["restore", src, target] => {
            let r = restore::restore(
                Path::new(src),
                Path::new(target),
                o.point,
                &passphrase(&o, false)?,
                o.force,
                crate::app::store_config(config),
            )?;
            if let Some(a) = &r.moved_aside {
                println!("what was in {target} is now in {}", a.display());
            }
            println!(
                "restored point {} of homeserver {} into {target}: {} files, {} large, {} bytes checked",
                r.point, r.server, r.files, r.blobs, r.bytes
            );
            Ok(())
        }
        other => bail!(
            "unknown backup command `{}` (see `backup help`)",
            other.join(" ")
        ),
    }
}

/// Runs `pubky-edge export --user <pubky> DIR`.
pub fn export(config: &Config, data_dir: &Path, args: &[&str]) -> Result<()> {
    let (user, dir) = match args {
        ["--user", user, dir] | [dir, "--user", user] => (*user, *dir),
        _ => bail!("usage: pubky-edge export --user <pubky> DIR"),
    };
    let user = crate::pubkey::PublicKey::parse_z32(user.trim_start_matches("pubky://"))
        .map_err(|e| anyhow!("--user: {e}"))?;
    let homeserver = crate::identity::Identity::load_existing(data_dir)?.public_key();
    let (info, hold) = snapshot(config, data_dir)?;
    let done = backup::export::export_user(&info, &user, &homeserver, Path::new(dir));
    release(hold)?;
    let m = done?;
    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
    println!(
        "exported {} files ({bytes} bytes) of {user} into {dir} (manifest.json lists them)",
        m.files.len()
    );
    Ok(())
}

/// The `status` lines about backups.
pub fn status_lines(data_dir: &Path, now_secs: u64) -> Vec<String> {
    let Some(o) = Outcome::load(data_dir) else {
        return vec![if backup::BoxKey::load(data_dir).ok().flatten().is_some() {
            "backup:        none made yet".into()
        } else {
            "backup:        not set up (`pubky-edge backup init`)".into()
        }];
    };
    let mut lines = vec![match (&o.last_success_point, o.last_success_secs) {
        (Some(p), Some(t)) => format!(
            "backup:        last good {} ({} h ago) in {}",
            p,
            now_secs.saturating_sub(t) / 3600,
            o.dest
        ),
        _ => "backup:        never succeeded".into(),
    }];
    if let Some(problem) = o.problem(now_secs) {
        lines.push(format!("backup problem: {problem}"));
    }
    lines
}

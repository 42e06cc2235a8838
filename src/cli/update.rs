//! `pubky-edge update …`: asks the release channel whether a newer version is out for this
//! box (verified with the release key), fetches and installs it, holds automatic updates,
//! and switches back by hand.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::announce::dht::{DhtClient, DhtSettings};
use crate::client::Homeserver;
use crate::config::Config;
use crate::update::check::{check_for_box, release_homeserver, this_target, Found};
use crate::update::download::download;
use crate::update::slots::{Hold, Slots};
use crate::update::state::UpdateState;

pub const USAGE: &str = "\
USAGE:
    pubky-edge update check
        look for a newer release in the channel (update.channel) for this box's target,
        signed with the release key (update.release_key); exits 1 when the channel's
        release is refused or cannot be read
    pubky-edge update download
        the same, then fetch the newer release's binary into <data>/update/, kept only
        when its size and BLAKE3 are the signed manifest's (it is not switched to)
    pubky-edge update now
        the same, then install it into the slot that is not running and restart the
        server into it (through the admin API); it must report healthy within
        update.health_deadline_ms, or the previous version comes back by itself
    pubky-edge update install MANIFEST BINARY
        the same for a release brought as files (a USB disk, a box without internet):
        the signed manifest and its binary, judged as one from the channel
    pubky-edge update hold [REASON...]
        no automatic update until `update resume` (`update now` still works)
    pubky-edge update resume
    pubky-edge update rollback
        back to the previous version (the other slot, or the installed binary) and
        restart; a waiting update is cancelled instead
";

pub fn run(
    config: &Config,
    config_file: Option<&Path>,
    data_dir: &Path,
    args: &[&str],
) -> Result<()> {
    let slots = Slots::at(data_dir);
    match args {
        [] | ["help"] => {
            print!("{USAGE}");
            Ok(())
        }
        ["check"] => check_now(config, data_dir, Then::Nothing),
        ["download"] => check_now(config, data_dir, Then::Download),
        ["now"] => check_now(config, data_dir, Then::Install(config_file)),
        ["install", manifest, binary] => {
            install_files(config, config_file, data_dir, manifest, binary)
        }
        ["hold", reason @ ..] => {
            let reason = match reason.join(" ") {
                r if r.is_empty() => "held by hand".to_string(),
                r => r,
            };
            let since_secs = crate::clock::now_secs();
            slots.set_hold(Some(&Hold { since_secs, reason }))?;
            println!("automatic updates are held until `pubky-edge update resume`");
            Ok(())
        }
        ["resume"] => {
            slots.set_hold(None)?;
            println!("automatic updates resume (update.automatic decides)");
            Ok(())
        }
        ["rollback"] => {
            let from = slots.running();
            let to = slots.roll_back_by_hand(crate::update::manifest::RUNNING)?;
            println!("switched back: {to}");
            if slots.hold().is_none() {
                let reason = format!("rolled back by hand from {from}");
                let since_secs = crate::clock::now_secs();
                slots.set_hold(Some(&Hold { since_secs, reason }))?;
                println!("automatic updates are held until `pubky-edge update resume`");
            }
            restart(config, data_dir);
            Ok(())
        }
        other => bail!(
            "unknown update command `{}` (see `update help`)",
            other.join(" ")
        ),
    }
}

enum Then<'a> {
    Nothing,
    Download,
    /// With the config file, which a backup point made first carries.
    Install(Option<&'a Path>),
}

/// Checks the channel (recording what it found), and fetches or installs an available
/// release.
fn check_now(config: &Config, data_dir: &Path, then: Then<'_>) -> Result<()> {
    let u = &config.update;
    let key = u.release_key.ok_or_else(|| {
        anyhow!("no release key: this build has none and update.release_key is not set")
    })?;
    if !config.pkdns.dht {
        bail!("releases are found through the DHT, and pkdns.dht = false");
    }
    let target = this_target();
    let running = Slots::at(data_dir).running();
    println!("running:  {running} ({target})");
    println!("channel:  {} (release key {key})", u.channel);
    let dht = DhtClient::start(&DhtSettings {
        bootstrap: config.pkdns.dht_bootstrap_nodes.clone(),
        request_timeout: config.pkdns.dht_request_timeout,
        port: Some(0),
    })?;
    let (hs, outcome) = smol::block_on(async {
        match release_homeserver(&dht, key).await {
            Ok(hs) => {
                let found = check_for_box(&hs, key, &u.channel, data_dir).await;
                (Some(hs), found)
            }
            Err(e) => (None, Err(e)),
        }
    });
    UpdateState::record(data_dir, &u.channel, &outcome);
    let found = outcome?;
    match &found {
        Found::Available(m) => {
            let notes = m.notes.lines().next().unwrap_or("");
            println!(
                "available: {} (released {}, {} bytes){}",
                m.version,
                crate::clock::rfc3339(m.released_at),
                m.size,
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(": {notes}")
                }
            );
        }
        Found::UpToDate(m) => println!("up to date: the channel's release is {}", m.version),
        Found::NoRelease => println!("no release for {target} in the channel"),
        Found::Refused(e) => bail!("the channel's release is refused: {e}"),
        Found::FailedHere(m) => println!(
            "{} failed on this box before and was rolled back; it is not tried again",
            m.version
        ),
    }
    let (Found::Available(m), Some(hs)) = (found, hs) else {
        return Ok(());
    };
    match then {
        Then::Nothing => Ok(()),
        Then::Download => fetch(&hs, &key, &u.channel, &m, data_dir),
        Then::Install(config_file) => {
            install_and_restart(config, config_file, data_dir, &m, |point| {
                crate::update::apply::install(&hs, &key, &u.channel, &m, data_dir, point)
            })
        }
    }
}

/// `update install MANIFEST BINARY`: a release brought as files, judged as one from the
/// channel (the release key's signature, the target, newer than what runs, the binary's
/// size and hash).
fn install_files(
    config: &Config,
    config_file: Option<&Path>,
    data_dir: &Path,
    manifest: &str,
    binary: &str,
) -> Result<()> {
    let key = config.update.release_key.ok_or_else(|| {
        anyhow!("no release key: this build has none and update.release_key is not set")
    })?;
    let file = std::fs::File::open(manifest).with_context(|| format!("opening {manifest}"))?;
    let signed = crate::update::manifest::read_signed(file)?;
    let refused = |e: crate::update::manifest::ReleaseError| anyhow!("{manifest} is refused: {e}");
    let m = crate::update::manifest::open(&signed, &key).map_err(refused)?;
    m.applies_to(&this_target(), &Slots::at(data_dir).running())
        .map_err(refused)?;
    println!(
        "release:  {} for {} ({} bytes), signed with the release key",
        m.version, m.target, m.size
    );
    install_and_restart(config, config_file, data_dir, &m, |point| {
        crate::update::apply::install_file(&m, Path::new(binary), data_dir, point)
    })
}

/// Makes the backup point a release in a newer store format needs, installs with `how`,
/// and asks the running server to restart into it.
fn install_and_restart(
    config: &Config,
    config_file: Option<&Path>,
    data_dir: &Path,
    m: &crate::update::manifest::Manifest,
    how: impl FnOnce(Option<&Path>) -> Result<crate::update::slots::Trial>,
) -> Result<()> {
    let point = if crate::update::apply::needs_backup_point(m) {
        let set = data_dir
            .join(crate::update::download::DIR)
            .join(format!("before-{}", m.version));
        let (made, _) =
            super::backup::make_point(config, config_file, data_dir, &set).map_err(|e| {
                anyhow!(
                    "{} changes the store's format; the backup point to make first failed: {e:#}",
                    m.version
                )
            })?;
        println!(
            "backup point {} written in {} (the store's format changes: {} → {})",
            made.name,
            set.display(),
            crate::store::FORMAT,
            m.store_format
        );
        Some(set)
    } else {
        None
    };
    let t = how(point.as_deref()).map_err(|e| anyhow!("the release is not installed: {e:#}"))?;
    println!(
        "installed: {} in slot {}; it is tried at the server's next start",
        t.version, t.slot
    );
    restart(config, data_dir);
    Ok(())
}

fn fetch(
    hs: &Homeserver,
    key: &crate::pubkey::PublicKey,
    channel: &str,
    m: &crate::update::manifest::Manifest,
    data_dir: &Path,
) -> Result<()> {
    let path = download(hs, key, channel, m, data_dir)
        .map_err(|e| anyhow!("the release's binary is refused: {e:#}"))?;
    println!(
        "downloaded: {} ({} bytes, BLAKE3 as signed)",
        path.display(),
        m.size
    );
    Ok(())
}

/// Asks the running server to restart through its admin API; a server that is not running
/// (or not reachable) takes the switch at its next start.
fn restart(config: &Config, data_dir: &Path) {
    let asked = super::admin::target(config, data_dir).and_then(|(addr, pw)| {
        let r = super::admin::request(addr, &pw, "POST", "/update/restart", None, None)?;
        let said = String::from_utf8_lossy(&r.body).trim().to_string();
        if r.status == 202 {
            Ok(said)
        } else {
            bail!("the admin API answered {}: {said}", r.status)
        }
    });
    match asked {
        Ok(said) => println!("{said}"),
        Err(e) => println!(
            "the server was not restarted ({e:#}): the switch happens at its next start \
             (`systemctl restart pubky-edge`)"
        ),
    }
}

/// The `update:` lines of `status`: what the channel has, what runs and how the last update
/// went, and a hold.
pub fn status_lines(config: &Config, data_dir: &Path) -> Vec<String> {
    let slots = Slots::at(data_dir);
    let said = match (&config.update.release_key, UpdateState::load(data_dir)) {
        (None, _) => "off: no release key (update.release_key)".to_string(),
        (Some(_), Some(st)) => st.describe(),
        (Some(_), None) => format!("not checked yet (channel {})", config.update.channel),
    };
    let mut lines = vec![format!("update:        {said}")];
    let running = match slots.serving_slot(crate::update::manifest::RUNNING) {
        Some(slot) => format!("{} (slot {slot})", slots.running_in(&slot)),
        None => format!(
            "{} (the installed binary)",
            crate::update::manifest::RUNNING
        ),
    };
    lines.push(format!("version:       {running}"));
    if let Some(t) = slots.trial() {
        lines.push(format!(
            "update:        {} is installed in slot {} and waits for the server's next start",
            t.version, t.slot
        ));
    }
    if let Some(last) = slots.history().last {
        lines.push(format!("last update:   {}", last.describe()));
    }
    let u = &config.update;
    let mode = match (slots.hold(), u.automatic) {
        (Some(h), _) => format!(
            "HELD since {} ({}): `pubky-edge update resume`",
            crate::clock::rfc3339(h.since_secs),
            h.reason
        ),
        (None, false) => "by hand only (update.automatic = false)".into(),
        (None, true) => match u.window_text() {
            Some(w) => format!("automatic, {w}"),
            None => "automatic, any time".into(),
        },
    };
    if u.release_key.is_some() {
        lines.push(format!("updates:       {mode}"));
    }
    lines
}

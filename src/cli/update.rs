//! `pubky-edge update check|download`: asks the release channel whether a newer version is
//! out for this box, verified with the release key, says what it found, and fetches it.

use std::path::Path;

use anyhow::{anyhow, bail, Result};

use crate::announce::dht::{DhtClient, DhtSettings};
use crate::config::Config;
use crate::update::check::{check, release_homeserver, this_target, Found, RUNNING};
use crate::update::download::download;
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
";

pub fn run(config: &Config, data_dir: &Path, args: &[&str]) -> Result<()> {
    match args {
        [] | ["help"] => {
            print!("{USAGE}");
            Ok(())
        }
        ["check"] => check_now(config, data_dir, false),
        ["download"] => check_now(config, data_dir, true),
        other => bail!(
            "unknown update command `{}` (see `update help`)",
            other.join(" ")
        ),
    }
}

/// Checks the channel (recording what it found), and with `fetch` downloads an available
/// release.
fn check_now(config: &Config, data_dir: &Path, fetch: bool) -> Result<()> {
    let u = &config.update;
    let key = u.release_key.ok_or_else(|| {
        anyhow!("no release key: this build has none and update.release_key is not set")
    })?;
    if !config.pkdns.dht {
        bail!("releases are found through the DHT, and pkdns.dht = false");
    }
    let target = this_target();
    println!("running:  {RUNNING} ({target})");
    println!("channel:  {} (release key {key})", u.channel);
    let dht = DhtClient::start(&DhtSettings {
        bootstrap: config.pkdns.dht_bootstrap_nodes.clone(),
        request_timeout: config.pkdns.dht_request_timeout,
        port: Some(0),
    })?;
    let (hs, outcome) = smol::block_on(async {
        match release_homeserver(&dht, key).await {
            Ok(hs) => {
                let found = check(&hs, key, &u.channel, &target, RUNNING).await;
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
    }
    if let (Found::Available(m), true, Some(hs)) = (found, fetch, hs) {
        let path = download(&hs, &key, &u.channel, &m, data_dir)
            .map_err(|e| anyhow!("the release's binary is refused: {e:#}"))?;
        println!(
            "downloaded: {} ({} bytes, BLAKE3 as signed)",
            path.display(),
            m.size
        );
    }
    Ok(())
}

/// The `update:` line of `status`.
pub fn status_line(config: &Config, data_dir: &Path) -> String {
    let said = match (&config.update.release_key, UpdateState::load(data_dir)) {
        (None, _) => "off: no release key (update.release_key)".to_string(),
        (Some(_), Some(st)) => st.describe(),
        (Some(_), None) => format!("not checked yet (channel {})", config.update.channel),
    };
    format!("update:        {said}")
}

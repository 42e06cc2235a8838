//! `pubky-edge update check`: asks the release channel whether a newer version is out for
//! this box, verified with the release key, and says what it found.

use anyhow::{anyhow, bail, Result};

use crate::announce::dht::{DhtClient, DhtSettings};
use crate::config::Config;
use crate::update::check::{check, this_target, Found, RUNNING};

pub const USAGE: &str = "\
USAGE:
    pubky-edge update check
        look for a newer release in the channel (update.channel) for this box's target,
        signed with the release key (update.release_key); exits 1 when the channel's
        release is refused or cannot be read
";

pub fn run(config: &Config, args: &[&str]) -> Result<()> {
    match args {
        [] | ["help"] => {
            print!("{USAGE}");
            Ok(())
        }
        ["check"] => check_now(config),
        other => bail!(
            "unknown update command `{}` (see `update help`)",
            other.join(" ")
        ),
    }
}

fn check_now(config: &Config) -> Result<()> {
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
    match smol::block_on(check(&dht, key, &u.channel, &target, RUNNING))? {
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
    Ok(())
}

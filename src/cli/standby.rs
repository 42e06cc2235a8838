//! `pubky-edge standby …` on the second box: pair with a primary (and take the first
//! copy), promote it to be the homeserver, and say where it stands. The rules are in
//! `crate::standby`.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::standby::{copy, promote};

pub const USAGE: &str = "\
STANDBY COMMANDS (on the second box; stop its server first for pair and promote):
    standby pair CODE [--at IP:PORT] [--set-aside]
                 follow the primary that made CODE (`admin standby code` there): pair,
                 then copy its whole store; --at is the primary's PubkyTLS address when
                 its record is not on the DHT; --set-aside moves data already here to
                 <data>/set-aside/ (a box that was a primary before). Run again to resume
                 an interrupted copy
    standby promote
                 make this box the homeserver (needs a pairing with takeover); the next
                 start publishes the homeserver's record with this box's address
    standby status
                 what this box is, how far behind its primary, or why it stopped taking
                 writes
";

pub fn run(config: &Config, data_dir: &Path, args: &[&str]) -> Result<()> {
    match args {
        [] | ["help"] => {
            print!("{USAGE}");
            Ok(())
        }
        ["pair", code, rest @ ..] => {
            let mut at: Option<SocketAddr> = None;
            let mut set_aside = false;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match *a {
                    "--at" => {
                        let v = it.next().context("--at needs IP:PORT")?;
                        at = Some(
                            v.parse()
                                .with_context(|| format!("--at {v}: not IP:PORT"))?,
                        );
                    }
                    "--set-aside" => set_aside = true,
                    other => bail!("standby pair: unknown option {other}"),
                }
            }
            crate::app::prepare_data_dir(data_dir)?;
            let dht = crate::app::dht_client(config)?;
            let store_cfg = crate::app::store_config(config);
            let f = smol::block_on(copy::pair(data_dir, store_cfg, dht, code, at, set_aside))?;
            println!("paired with {} and copied its store", f.primary);
            println!(
                "takeover:    {}",
                if f.takeover {
                    "allowed (`standby promote`)"
                } else {
                    "not allowed"
                }
            );
            println!("start the server: it follows the primary from here");
            Ok(())
        }
        ["promote"] => {
            // The store's lock says whether the server is running.
            let store = crate::store::Store::open(data_dir, crate::app::store_config(config))
                .map_err(|e| anyhow::anyhow!("{e} (stop the server before promoting)"))?;
            smol::block_on(store.close())?;
            drop(store);
            let key = promote::promote(data_dir)?;
            println!("this box is now the homeserver {key}");
            println!("start the server: it publishes the record with this box's address");
            Ok(())
        }
        ["status"] => {
            for line in status_lines(data_dir, crate::clock::now_secs()) {
                println!("{line}");
            }
            Ok(())
        }
        other => bail!(
            "unknown standby command `{}` (see `standby help`)",
            other.join(" ")
        ),
    }
}

/// What `info`, `status` and `standby status` say about the standby side of this box.
pub fn status_lines(data_dir: &Path, now: u64) -> Vec<String> {
    let r = crate::standby::report::Report::read(data_dir, now);
    r.lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let label = if i == 0 { r.label } else { "" };
            format!("{label:<13}{l}")
        })
        .collect()
}

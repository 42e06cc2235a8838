//! `pubky-edge testnet`: a local development network on loopback (a small Mainline DHT,
//! a pkarr relay and this homeserver) on the fixed ports the SDKs' `testnet()` presets use.
//! `--bind` puts the same network on another local address, one that a virtual machine
//! (the image's boot test) or a phone on a private network can reach.

use std::net::Ipv4Addr;

use super::Args;
use crate::app;
use crate::config::Config;

/// Fixed ports of the local network, the ones the SDKs' `testnet()` presets use.
const TESTNET_DHT_PORT: u16 = 6881;
const TESTNET_RELAY_PORT: u16 = 15411;

/// The address given with `--bind`, else loopback.
fn bind_address(args: &Args) -> anyhow::Result<Ipv4Addr> {
    match &args.command[1..] {
        [] => Ok(Ipv4Addr::LOCALHOST),
        [flag, addr] if flag == "--bind" => addr.parse().map_err(|_| {
            anyhow::anyhow!("--bind needs an IPv4 address of this machine, not {addr:?}")
        }),
        [flag] if flag == "--bind" => anyhow::bail!("--bind needs a value"),
        _ => anyhow::bail!("`testnet` takes only --bind IPV4 (see --help)"),
    }
}

/// Runs the local network until a signal.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let bind = bind_address(args)?;
    // A small Mainline network whose first node holds the well-known port.
    let (nodes, first) = crate::announce::dht::local_testnet_on(bind, TESTNET_DHT_PORT, 3)
        .map_err(|e| {
            anyhow::anyhow!("cannot start the local DHT on UDP {bind}:{TESTNET_DHT_PORT}: {e}")
        })?;
    let bootstrap: Vec<String> = first;
    let layer = layer(bind, &bootstrap);
    let user = match &args.config {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let mut layers = vec![("testnet", layer.as_str())];
    if let Some((name, text)) = &user {
        layers.push((name.as_str(), text.as_str()));
    }
    let loaded = Config::from_layers(&layers).map_err(anyhow::Error::msg)?;
    let config = loaded.config;
    let (data_dir, temporary) = match args
        .data_dir
        .clone()
        .or_else(|| Some(config.general.data_dir.clone()).filter(|d| !d.as_os_str().is_empty()))
    {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("pubky-edge-testnet-{}", std::process::id())),
            true,
        ),
    };
    crate::runtime::logging::init(&config.logging.filter());
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let bootstrap_text = bootstrap.join(", ");
    let result = super::serve::run(config, data_dir.clone(), move |running| {
        Box::pin(announce(running, bind, bootstrap_text))
    });
    drop(nodes);
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

/// The config layer of the local network: fixed ports on `bind`, the local DHT, the relay.
/// `localhost` names the HTTP listener only when it is on 127.0.0.1, where that name leads.
fn layer(bind: Ipv4Addr, bootstrap: &[String]) -> String {
    let domain = if bind == Ipv4Addr::LOCALHOST {
        "icann_domain = \"localhost\"\n"
    } else {
        ""
    };
    format!(
        "[drive]\nicann_listen_socket = \"{bind}:6286\"\npubky_listen_socket = \"{bind}:6287\"\n\
         [pkdns]\ndht = true\npublic_ip = \"{bind}\"\n{domain}\
         dht_request_timeout_ms = 500\npublish_retry_min_ms = 200\n\
         user_keys_republish_first_ms = 5000\nuser_keys_republish_interval_ms = 1800000\n\
         dht_bootstrap_nodes = [{}]\n\
         [pkarr_relay]\nenabled = true\nlisten_socket = \"{bind}:{TESTNET_RELAY_PORT}\"\n",
        bootstrap
            .iter()
            .map(|b| format!("{b:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Once serving: a signup token, the first publish (bounded wait), then the network printed.
async fn announce(
    running: &app::Running,
    bind: Ipv4Addr,
    bootstrap_text: String,
) -> anyhow::Result<()> {
    let token = crate::auth::secrets::new_signup_token();
    running
        .store()
        .create_signup_token(&token, crate::clock::now_secs())
        .await
        .map_err(|e| anyhow::anyhow!("cannot create a signup token: {e}"))?;
    // Wait (bounded) for the first publish so the printed network is usable at once.
    let attempted = running.probes.publish_attempted.listen();
    let published = running
        .probes
        .publish_status
        .lock()
        .map(|s| s.last_success_secs.is_some())
        .unwrap_or(false);
    if !published {
        smol::future::or(
            async {
                attempted.await;
            },
            async {
                smol::Timer::after(std::time::Duration::from_secs(10)).await;
            },
        )
        .await;
    }
    if bind == Ipv4Addr::LOCALHOST {
        println!("pubky-edge testnet: everything on loopback; Ctrl-C stops it");
    } else {
        println!("pubky-edge testnet: everything on {bind}; Ctrl-C stops it");
    }
    println!("  dht bootstrap:  {bootstrap_text}");
    println!("  homeserver:     {}", running.public_key);
    println!("  http (icann):   http://{}", running.addrs.icann);
    println!("  pubky tls:      {}", running.addrs.pubky_tls);
    if let Some(r) = running.addrs.relay {
        println!(
            "  pkarr relay:    http://{r}  (also http://{}/pkarr)",
            running.addrs.icann
        );
    }
    println!("  signup token:   {token}");
    println!("  data dir:       {}", running.data_dir.display());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Ok(())
}

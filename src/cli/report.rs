//! What `info` and `status` print: the last DHT publish, and the reachability report —
//! LAN addresses, the mDNS name, the router port mapping (the protocols tried, the one the
//! router answered, the mappings), the external address, whether
//! carrier-grade or double NAT was detected, the last DHT publish and whether the record on
//! the DHT points back at the current address. The command runs in its own process, so it
//! reads what the workers wrote into the data directory (`upnp.json`, `ipv6.json`,
//! `mdns.json`, `announce.json`) and, for the last line, what `announce::reachability` found on the DHT.

use std::path::Path;

use crate::announce::household::mdns_settings;
use crate::announce::mapping::{NatKind, Views};
use crate::announce::mdns::{lan_addresses, MdnsState};
use crate::announce::pinhole::PinholeState;
use crate::announce::reachability::{current_address, views, Resolution};
use crate::announce::tunnel_state::{LinkState, RelayState};
use crate::announce::upnp::UpnpState;
use crate::announce::verdict::overall;
use crate::announce::PublishStatus;
use crate::clock::rfc3339;
use crate::config::Config;

/// The reachability report, one line per fact; the publish line only when asked.
pub fn reachability(
    config: &Config,
    data_dir: &Path,
    resolution: &Resolution,
    with_publish: bool,
) -> Vec<String> {
    let mut out = vec![lan_line(config), mdns_line(data_dir)];
    let upnp = UpnpState::load(data_dir);
    out.extend(upnp_lines(upnp.as_ref()));
    let publish = PublishStatus::load(data_dir);
    out.extend(external_lines(config, upnp.as_ref(), publish.as_ref()));
    out.push(ipv6_line(
        PinholeState::load(data_dir).as_ref(),
        publish.as_ref(),
    ));
    if with_publish {
        out.push(publish_line(config, publish.as_ref()));
    }
    let link = LinkState::load(data_dir);
    out.extend(tunnel_lines(
        config,
        link.as_ref(),
        RelayState::load(data_dir).as_ref(),
    ));
    let current = match link
        .as_ref()
        .filter(|l| l.in_record)
        .and_then(|l| l.published.as_deref())
    {
        Some(relayed) if config.tunnel.via.is_some() => relayed
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| (a.ip(), a.port())),
        _ => current_address(upnp.as_ref(), publish.as_ref()),
    };
    out.push(record_line(resolution, current));
    let record = match resolution {
        Resolution::NotChecked(_) => None,
        r => Some(r),
    };
    let verdict = overall(
        config,
        upnp.as_ref(),
        publish.as_ref(),
        link.as_ref(),
        record,
        config.drive.pubky_listen_socket.port(),
    );
    out.push(format!(
        "verdict:       {}. {} {}",
        verdict.headline, verdict.reason, verdict.fix
    ));
    out
}

/// This box's relay link (`tunnel.via`), and the boxes it relays for (`tunnel.boxes`).
fn tunnel_lines(
    config: &Config,
    link: Option<&LinkState>,
    relay: Option<&RelayState>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(target) = &config.tunnel.via {
        out.push(match link {
            Some(l) if l.connected() => format!(
                "relay link:    connected to {target} since {}, announced as {} ({} links, {} clients forwarded)",
                rfc3339(l.since_secs),
                l.published.as_deref().unwrap_or("?"),
                l.links,
                l.forwarded
            ),
            Some(l) => format!(
                "relay link:    {} to {target} since {}{}",
                l.state.to_uppercase(),
                rfc3339(l.since_secs),
                l.last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            None => format!("relay link:    to {target}: unknown (the server has not run yet)"),
        });
        if let Some(l) = link {
            let named = if l.in_record {
                "the relay"
            } else {
                "this box's own address"
            };
            out.push(match l.direct_ok {
                Some(true) => format!(
                    "connect-back:  the relay reached this box at {} at {}; the record names {named}",
                    l.direct.as_deref().unwrap_or("?"),
                    rfc3339(l.checked_secs)
                ),
                Some(false) => format!(
                    "connect-back:  the relay could NOT reach this box at {}: {}; the record names {named}",
                    rfc3339(l.checked_secs),
                    l.direct.as_deref().unwrap_or("?")
                ),
                None if config.tunnel.use_relay == crate::config::RelayUse::Always => {
                    "connect-back:  not asked (tunnel.use_relay = \"always\"); the record names the relay".into()
                }
                None => format!("connect-back:  not done yet; the record names {named}"),
            });
        }
    }
    if config.tunnel.listen_socket.is_some() {
        let Some(r) = relay else {
            out.push("relaying:      unknown (the server has not run yet)".into());
            return out;
        };
        for b in &r.boxes {
            let state = match &b.from {
                Some(from) if b.connected => format!("linked from {from}"),
                _ => "NOT LINKED".into(),
            };
            out.push(format!(
                "relaying:      {} on port {}: {state} since {}; {} open, {} forwarded, {} bytes, {} turned away",
                b.key,
                b.port,
                rfc3339(b.since_secs),
                b.open,
                b.forwarded,
                b.bytes,
                b.refused
            ));
        }
    }
    out
}

fn lan_line(config: &Config) -> String {
    let lan: Vec<String> = lan_addresses(&mdns_settings(config))
        .into_iter()
        .map(|(n, ip)| format!("{ip} ({n})"))
        .collect();
    format!(
        "lan addresses: {}",
        if lan.is_empty() {
            "none".into()
        } else {
            lan.join(", ")
        }
    )
}

fn mdns_line(data_dir: &Path) -> String {
    match MdnsState::load(data_dir) {
        Some(m) if m.state == "announcing" => format!(
            "mdns:          {} on {} port {} ({})",
            m.instance,
            m.host,
            m.port,
            if m.addresses.is_empty() {
                "no addresses yet".into()
            } else {
                m.addresses.join(", ")
            }
        ),
        Some(m) => format!("mdns:          {}", m.state),
        None => "mdns:          unknown (the server has not run yet)".into(),
    }
}

fn upnp_lines(upnp: Option<&UpnpState>) -> Vec<String> {
    let Some(u) = upnp else {
        return vec!["router:        unknown (the server has not run yet)".into()];
    };
    let via = match (u.protocol, u.gateway.as_deref()) {
        (Some(_), Some(g)) => format!(" via {g}"),
        _ => String::new(),
    };
    let mut out = vec![format!(
        "router:        {}{via} (as of {})",
        u.state,
        rfc3339(u.updated_secs)
    )];
    for r in &u.ladder {
        out.push(format!(
            "tried:         {}, {} ms: {}",
            r.protocol.label(),
            r.took_ms,
            r.result
        ));
    }
    for m in &u.mappings {
        let lease = if m.lease_secs == 0 {
            "permanent".to_string()
        } else {
            format!("lease {} s", m.lease_secs)
        };
        out.push(format!(
            "mapping:       {} external port {} -> {} ({lease}, renewed {}, {} renewals)",
            m.name,
            m.external_port,
            m.internal,
            rfc3339(m.renewed_secs),
            m.renewals
        ));
    }
    if let Some(e) = &u.last_error {
        out.push(format!("router error:  {e}"));
    }
    out
}

/// The external address, the DHT's view of it, and what the two say about NAT.
fn external_lines(
    config: &Config,
    upnp: Option<&UpnpState>,
    publish: Option<&PublishStatus>,
) -> [String; 3] {
    let nat = upnp.and_then(|u| u.nat);
    let external = upnp.and_then(|u| u.external_ip.clone());
    let seen = publish.and_then(PublishStatus::dht_seen_addr);
    let views = views(upnp, publish);
    let dht = match (seen, publish.and_then(|p| p.dht_firewalled)) {
        (None, _) => "unknown (no DHT answer yet)".to_string(),
        (Some(ip), firewalled) => {
            let udp = match firewalled {
                Some(true) => ", its DHT port not reachable inbound",
                Some(false) => ", its DHT port reachable inbound",
                None => "",
            };
            let agreement = match views {
                Views::Agree(_) => " (agrees with the router)",
                Views::Differ { .. } => " (the router names another: see cgnat)",
                Views::DhtOnly(_) => "",
                Views::Unknown => " (not a public address: a DHT on this network)",
            };
            format!("nodes see {ip}{udp}{agreement}")
        }
    };
    let ip = match (&external, config.pkdns.public_ip) {
        (Some(ip), _) => format!("{ip} (from the router)"),
        (None, Some(ip)) => format!("{ip} (from pkdns.public_ip)"),
        (None, None) => "unknown".into(),
    };
    let cgnat = match (nat, views) {
        (_, Views::Differ { router, dht }) => format!("YES: the router says its internet address is {router}, but the DHT's nodes see {dht}: another NAT sits in front of the router (carrier-grade or double NAT); inbound connections cannot reach this device (see README, Households)"),
        (nat, _) => match nat {
        Some(NatKind::Public) => "no".into(),
        Some(NatKind::Cgnat) => "YES: the router's external address is carrier-grade NAT (100.64.0.0/10); inbound connections cannot reach this device (see README, Households)".to_string(),
        Some(NatKind::DoubleNat) => "YES: double NAT, the router's external address is private; inbound connections cannot reach this device (see README, Households)".to_string(),
        Some(NatKind::NoPublicAddress) => "YES (probably): the router reports no public external address (it is behind carrier-grade or another NAT, or its internet link is down); inbound connections cannot reach this device (see README, Households)".to_string(),
        None => "unknown (no router answer)".into(),
        },
    };
    [
        format!("external ip:   {ip}"),
        format!("dht view:      {dht}"),
        format!("cgnat:         {cgnat}"),
    ]
}

/// The IPv6 rung: the address, the pinhole, and whether the record carries it.
fn ipv6_line(pinhole: Option<&PinholeState>, publish: Option<&PublishStatus>) -> String {
    let Some(p) = pinhole else {
        return "ipv6:          unknown (the server has not run yet)".into();
    };
    let addr = p.address.as_deref().unwrap_or("?");
    let in_record = match publish {
        _ if p.in_record(publish) => "; the record announces it (AAAA)".to_string(),
        Some(pb) if pb.published_ip.is_some() && pb.pubky_tls_port != p.port => format!(
            "; NOT in the record: it names port {} (the IPv4 side's), and one port covers every address",
            pb.pubky_tls_port
        ),
        _ => "; not in the record yet".into(),
    };
    match p.state.as_str() {
        "pinhole_open" => format!(
            "ipv6:          [{addr}]:{} open at the router's firewall via {} (lease {} s, opened in {} ms, {} renewals){in_record}",
            p.port,
            p.gateway.as_deref().unwrap_or("?"),
            p.lease_secs,
            p.took_ms.map_or("?".into(), |t| t.to_string()),
            p.renewals
        ),
        "open" => format!(
            "ipv6:          [{addr}]:{} announced without asking the router (upnp.ipv6 = \"open\"){in_record}",
            p.port
        ),
        state if state.starts_with("off") => format!("ipv6:          {state}"),
        state => format!(
            "ipv6:          not announced ({state}){}",
            p.last_error
                .as_deref()
                .map_or(String::new(), |e| format!(": {e}"))
        ),
    }
}

fn publish_line(config: &Config, publish: Option<&PublishStatus>) -> String {
    match publish {
        _ if !config.pkdns.dht => "dht publish:   off (pkdns.dht = false)".into(),
        None => "dht publish:   not attempted yet".into(),
        Some(p) => match (&p.last_error, p.last_success_secs) {
            (None, Some(ok)) => format!(
                "dht publish:   ok at {} ({}:{}{}, stored on {} nodes)",
                rfc3339(ok),
                p.published_ip.as_deref().unwrap_or("?"),
                p.pubky_tls_port,
                p.published_ipv6
                    .as_deref()
                    .map_or(String::new(), |v6| format!(
                        " and [{v6}]:{}",
                        p.pubky_tls_port
                    )),
                p.stored_at_nodes
            ),
            (Some(e), _) => format!(
                "dht publish:   FAILED at {}: {e}",
                rfc3339(p.last_attempt_secs)
            ),
            (None, None) => "dht publish:   not attempted yet".into(),
        },
    }
}

/// Whether the record on the DHT points at the current address.
fn record_line(resolution: &Resolution, current: Option<(std::net::IpAddr, u16)>) -> String {
    match (resolution, current) {
        (Resolution::NotChecked(why), _) => format!("record:        not checked ({why})"),
        (Resolution::NotFound, _) => "record:        NOT FOUND on the DHT".into(),
        (Resolution::Found { ip, port }, cur) => {
            let shown = format!(
                "{}:{}",
                ip.map(|i| i.to_string()).unwrap_or("?".into()),
                port.map(|p| p.to_string()).unwrap_or("?".into())
            );
            match cur {
                Some((cip, cport)) if *ip == Some(cip) && *port == Some(cport) => {
                    format!("record:        resolves to {shown}, the current address")
                }
                Some((cip, cport)) => format!(
                    "record:        resolves to {shown}, STALE (current address {cip}:{cport})"
                ),
                None => format!(
                    "record:        resolves to {shown} (no current public address to compare)"
                ),
            }
        }
    }
}

/// Where the dashboard is and whether the box has been claimed.
pub fn dashboard_line(config: &Config, data_dir: &Path) -> String {
    if !config.dashboard.enabled {
        return "dashboard:   off (dashboard.enabled = false)".into();
    }
    let claimed = if crate::account::owner::hash_file(data_dir).exists() {
        "claimed"
    } else {
        "NOT CLAIMED yet: the first visitor sets the password"
    };
    format!(
        "dashboard:   http://{}/ ({claimed}; under systemd, the socket it passes wins)",
        config.dashboard.listen_socket
    )
}

/// The outcome of the last publish of the homeserver record, from `announce.json`.
pub fn print_publish_status(config: &Config, data_dir: &std::path::Path) {
    if !config.pkdns.dht {
        println!("dht publish: off (pkdns.dht = false)");
        return;
    }
    let Some(st) = PublishStatus::load(data_dir) else {
        println!("dht publish: not attempted yet");
        return;
    };
    let addr = format!(
        "{}:{}",
        st.published_ip.as_deref().unwrap_or("?"),
        st.pubky_tls_port
    );
    match (&st.last_error, st.last_success_secs) {
        (None, Some(ok)) => println!(
            "dht publish: ok at {} ({addr}, stored on {} nodes)",
            crate::clock::rfc3339(ok),
            st.stored_at_nodes
        ),
        (Some(e), ok) => {
            println!(
                "dht publish: FAILED at {} ({addr}): {e}",
                crate::clock::rfc3339(st.last_attempt_secs)
            );
            if let Some(ok) = ok {
                println!("             last success {}", crate::clock::rfc3339(ok));
            }
        }
        (None, None) => println!("dht publish: not attempted yet"),
    }
}

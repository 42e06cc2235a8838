//! The reachability report of `pubky-edge status` (and the household section of `info`):
//! LAN addresses, the mDNS name, the UPnP state and mappings, the external address, whether
//! carrier-grade or double NAT was detected, the last DHT publish and whether the record on
//! the DHT points back at the current address. It runs in its own process, so it reads what
//! the workers wrote into the data directory (`upnp.json`, `mdns.json`, `announce.json`) and,
//! for the last line, asks the DHT itself.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::household::mdns_settings;
use super::mapping::NatKind;
use super::mdns::{lan_addresses, MdnsState};
use super::upnp::UpnpState;
use super::{DhtClient, DhtSettings, PublishStatus};
use crate::clock::rfc3339;
use crate::config::Config;
use crate::pubkey::PublicKey;

/// What the DHT holds for the homeserver's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    NotChecked(String),
    NotFound,
    Found {
        ip: Option<IpAddr>,
        port: Option<u16>,
    },
}

/// Looks the homeserver's own record up on the DHT (bounded by `timeout`).
pub async fn resolve(config: &Config, key: &PublicKey, timeout: Duration) -> Resolution {
    if !config.pkdns.dht {
        return Resolution::NotChecked("pkdns.dht = false".into());
    }
    let settings = DhtSettings {
        bootstrap: config.pkdns.dht_bootstrap_nodes.clone(),
        request_timeout: config.pkdns.dht_request_timeout,
        port: Some(0),
    };
    let dht = match DhtClient::start(&settings) {
        Ok(d) => d,
        Err(e) => return Resolution::NotChecked(format!("cannot start a DHT client: {e}")),
    };
    let found = smol::future::or(async { Some(dht.get(key).await) }, async {
        smol::Timer::after(timeout).await;
        None
    })
    .await;
    match found {
        None => Resolution::NotChecked("the DHT lookup timed out".into()),
        Some(None) => Resolution::NotFound,
        Some(Some(p)) => {
            let (ip, port) = super::packet::direct_endpoint(&p);
            Resolution::Found { ip, port }
        }
    }
}

/// Where clients should reach the homeserver now: the router's external address and mapped
/// port when UPnP knows them, nothing when the router says it has no public address, else
/// what the publisher last announced.
pub fn current_address(
    upnp: Option<&UpnpState>,
    publish: Option<&PublishStatus>,
) -> Option<(IpAddr, u16)> {
    let from_upnp = upnp.and_then(|u| {
        let ip = u.external_ip.as_ref()?.parse().ok()?;
        let port = u
            .mappings
            .iter()
            .find(|m| m.name == "pubky_tls")?
            .external_port;
        (u.nat == Some(NatKind::Public)).then_some((ip, port))
    });
    let not_public = upnp.is_some_and(|u| u.nat.is_some_and(|n| n != NatKind::Public));
    from_upnp.or_else(|| {
        if not_public {
            return None;
        }
        let p = publish?;
        Some((p.published_ip.as_ref()?.parse().ok()?, p.pubky_tls_port))
    })
}

/// The report, one `label: value` line each; `with_publish` adds the last DHT publish (`info`
/// prints that line itself).
pub fn report(
    config: &Config,
    data_dir: &Path,
    resolution: &Resolution,
    with_publish: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let lan: Vec<String> = lan_addresses(&mdns_settings(config))
        .into_iter()
        .map(|(n, ip)| format!("{ip} ({n})"))
        .collect();
    out.push(format!(
        "lan addresses: {}",
        if lan.is_empty() {
            "none".into()
        } else {
            lan.join(", ")
        }
    ));
    let mdns = MdnsState::load(data_dir);
    out.push(match &mdns {
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
    });
    let upnp = UpnpState::load(data_dir);
    match &upnp {
        Some(u) => {
            let via = u
                .gateway
                .as_deref()
                .map(|g| format!(" via {g}"))
                .unwrap_or_default();
            out.push(format!(
                "upnp:          {}{via} (as of {})",
                u.state,
                rfc3339(u.updated_secs)
            ));
            for m in &u.mappings {
                let lease = if m.lease_secs == 0 {
                    "permanent".to_string()
                } else {
                    format!("lease {} s", m.lease_secs)
                };
                out.push(format!(
                    "upnp mapping:  {} external port {} -> {} ({lease}, renewed {}, {} renewals)",
                    m.name,
                    m.external_port,
                    m.internal,
                    rfc3339(m.renewed_secs),
                    m.renewals
                ));
            }
            if let Some(e) = &u.last_error {
                out.push(format!("upnp error:    {e}"));
            }
        }
        None => out.push("upnp:          unknown (the server has not run yet)".into()),
    }
    let nat = upnp.as_ref().and_then(|u| u.nat);
    let external = upnp.as_ref().and_then(|u| u.external_ip.clone());
    out.push(format!(
        "external ip:   {}",
        match (&external, config.pkdns.public_ip) {
            (Some(ip), _) => format!("{ip} (from the router)"),
            (None, Some(ip)) => format!("{ip} (from pkdns.public_ip)"),
            (None, None) => "unknown".into(),
        }
    ));
    out.push(format!(
        "cgnat:         {}",
        match nat {
            Some(NatKind::Public) => "no".into(),
            Some(NatKind::Cgnat) => "YES: the router's external address is carrier-grade NAT (100.64.0.0/10); inbound connections cannot reach this device (see README, Households)".to_string(),
            Some(NatKind::DoubleNat) => "YES: double NAT, the router's external address is private; inbound connections cannot reach this device (see README, Households)".to_string(),
            Some(NatKind::NoPublicAddress) => "YES (probably): the router reports no public external address (it is behind carrier-grade or another NAT, or its internet link is down); inbound connections cannot reach this device (see README, Households)".to_string(),
            None => "unknown (no router answer)".into(),
        }
    ));
    let publish = PublishStatus::load(data_dir);
    let publish_line = match &publish {
        _ if !config.pkdns.dht => "dht publish:   off (pkdns.dht = false)".into(),
        None => "dht publish:   not attempted yet".into(),
        Some(p) => match (&p.last_error, p.last_success_secs) {
            (None, Some(ok)) => format!(
                "dht publish:   ok at {} ({}:{}, stored on {} nodes)",
                rfc3339(ok),
                p.published_ip.as_deref().unwrap_or("?"),
                p.pubky_tls_port,
                p.stored_at_nodes
            ),
            (Some(e), _) => format!(
                "dht publish:   FAILED at {}: {e}",
                rfc3339(p.last_attempt_secs)
            ),
            (None, None) => "dht publish:   not attempted yet".into(),
        },
    };
    if with_publish {
        out.push(publish_line);
    }
    let current = current_address(upnp.as_ref(), publish.as_ref());
    out.push(match (resolution, current) {
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
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announce::upnp::MappingState;

    fn upnp(ip: &str, nat: NatKind, port: u16) -> UpnpState {
        UpnpState {
            external_ip: Some(ip.into()),
            nat: Some(nat),
            mappings: vec![MappingState {
                name: "pubky_tls".into(),
                external_port: port,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_current_address_prefers_the_router_and_never_a_non_public_one() {
        let published = PublishStatus {
            published_ip: Some("192.0.2.7".into()),
            pubky_tls_port: 6287,
            ..Default::default()
        };
        let public = upnp("84.1.2.3", NatKind::Public, 6290);
        assert_eq!(
            current_address(Some(&public), Some(&published)),
            Some(("84.1.2.3".parse().unwrap(), 6290))
        );
        let cgnat = upnp("100.64.1.1", NatKind::Cgnat, 6287);
        assert_eq!(current_address(Some(&cgnat), Some(&published)), None);
        assert_eq!(
            current_address(None, Some(&published)),
            Some(("192.0.2.7".parse().unwrap(), 6287))
        );
        assert_eq!(current_address(None, None), None);
    }
}

//! What `pubky-edge status` needs to judge reachability beyond the state files: the
//! homeserver's own record looked up on the DHT ([`resolve`]), and the address it should
//! point at ([`current_address`]). `cli::report` prints the report.

use std::net::IpAddr;
use std::time::Duration;

use super::mapping::{compare_views, NatKind, Views};
use super::upnp::UpnpState;
use super::{DhtClient, DhtSettings, PublishStatus};
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

/// The router's external address next to the DHT nodes' view of it, as the port mapper and
/// the publisher last wrote them.
pub fn views(upnp: Option<&UpnpState>, publish: Option<&PublishStatus>) -> Views {
    compare_views(
        upnp.and_then(UpnpState::external_addr),
        publish.and_then(PublishStatus::dht_seen_addr),
    )
}

/// Where clients should reach the homeserver now: the router's external address and mapped
/// port when UPnP knows them, nothing when the router says it has no public address, else
/// what the publisher last announced.
pub fn current_address(
    upnp: Option<&UpnpState>,
    publish: Option<&PublishStatus>,
) -> Option<(IpAddr, u16)> {
    let from_upnp = upnp.and_then(|u| {
        let ip = u.external_addr()?;
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

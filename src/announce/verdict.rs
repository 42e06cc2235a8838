//! Reachability in one verdict for the household (the dashboard's first card): from what
//! the workers wrote (`upnp.json`, `announce.json`) and, when it has been looked up, the
//! record on the DHT. Each verdict says why and what to try. `cli::report` prints the
//! same facts line by line for operators.

use super::mapping::{NatKind, Views};
use super::reachability::{current_address, views, Resolution};
use super::tunnel_state::LinkState;
use super::upnp::UpnpState;
use super::PublishStatus;
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Good,
    Warn,
    Bad,
    Unknown,
}

impl Level {
    pub fn css(self) -> &'static str {
        match self {
            Level::Good => "good",
            Level::Warn => "warn",
            Level::Bad => "bad",
            Level::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub level: Level,
    pub headline: String,
    pub reason: String,
    pub fix: String,
}

fn v(level: Level, headline: &str, reason: String, fix: &str) -> Verdict {
    Verdict {
        level,
        headline: headline.into(),
        reason,
        fix: fix.into(),
    }
}

/// The verdict for a box with a relay (`tunnel.via`), from the link's report: a
/// connect-back that reached the box at its own address proves it reachable; while the
/// record names the relay, the link decides. `None` when the relay has no say (no relay, or
/// with `use_relay = "when_unreachable"` before any check found the box unreachable): the
/// router's facts decide, as without a relay.
pub fn through_relay(
    config: &Config,
    link: Option<&LinkState>,
    record: Option<&Resolution>,
) -> Option<Verdict> {
    let target = config.tunnel.via.as_ref()?;
    if !config.pkdns.dht {
        // Nothing is announced, relay or not: the router-based verdict says so.
        return None;
    }
    let stale = |shown: &str| match record {
        Some(Resolution::Found { ip, port })
            if ip
                .zip(*port)
                .map(|(i, p)| std::net::SocketAddr::new(i, p).to_string())
                != Some(shown.to_string()) =>
        {
            Some(v(
                Level::Warn,
                "The address on the network is out of date",
                format!(
                    "The DHT still says {}:{}, but the box is now reached at {shown}.",
                    ip.map_or("?".into(), |i| i.to_string()),
                    port.map_or("?".into(), |p| p.to_string())
                ),
                "Nothing to do: the box republishes when its address changes.",
            ))
        }
        Some(Resolution::NotFound) => Some(v(
            Level::Warn,
            "The record is not on the network",
            "Looking the box's key up on the DHT found nothing, although it was published.".into(),
            "Wait for the next publish (the box retries by itself).",
        )),
        _ => None,
    };
    if let Some(l) = link.filter(|l| l.direct_ok == Some(true) && !l.in_record) {
        let checked = l.direct.clone().unwrap_or_default();
        let own = checked.split(' ').next().unwrap_or_default().to_string();
        return Some(stale(&own).unwrap_or_else(|| {
            v(
                Level::Good,
                "Reachable from the internet",
                format!(
                    "The relay at {} connected back to this box at {checked} and completed a \
                     PubkyTLS handshake with its key; the record names this box's own address, \
                     and the relay stands by.",
                    target.addr
                ),
                "Nothing to do.",
            )
        }));
    }
    let in_use = link.is_some_and(|l| l.in_record);
    if !in_use && config.tunnel.use_relay == crate::config::RelayUse::WhenUnreachable {
        return None;
    }
    let unreached = link
        .filter(|l| l.direct_ok == Some(false))
        .and_then(|l| l.direct.clone())
        .map(|why| format!(" The relay could not reach this box at its own address: {why}."))
        .unwrap_or_default();
    let Some(published) = link
        .filter(|l| l.connected())
        .and_then(|l| l.published.clone())
    else {
        let why = link
            .and_then(|l| l.last_error.clone())
            .unwrap_or_else(|| "it has not answered yet".into());
        return Some(v(
            Level::Bad,
            "Not reachable: the relay does not answer",
            format!(
                "This box is reached through the relay at {}, and the link to it is down: \
                 {why}.{unreached}",
                target.addr
            ),
            "Check that the relay box is running, that its tunnel.boxes lists this box's key, \
             and that tunnel.via names the relay's key and address. The box retries by itself.",
        ));
    };
    Some(stale(&published).unwrap_or_else(|| {
        v(
            Level::Good,
            "Reachable through the relay",
            format!(
                "Apps reach this box at {published}, the relay's address, which forwards \
                 through an encrypted link. The relay sees only encrypted traffic, and apps \
                 still check this box's own key.{unreached}"
            ),
            "Nothing to do.",
        )
    }))
}

/// The verdict; `tls_port` is the PubkyTLS listener's local port.
pub fn judge(
    config: &Config,
    upnp: Option<&UpnpState>,
    publish: Option<&PublishStatus>,
    record: Option<&Resolution>,
    tls_port: u16,
) -> Verdict {
    if !config.pkdns.dht {
        return v(
            Level::Warn,
            "Not announced on the internet",
            "The box does not publish its address on the Mainline DHT (pkdns.dht = false), so \
             apps outside this network cannot find it by its key."
                .into(),
            "Set pkdns.dht = true in the config and restart the box.",
        );
    }
    let nat = upnp.and_then(|u| u.nat);
    let cgnat_fix = "Ask your internet provider for a public IPv4 address (some call it \
                     \"disable CGNAT\"), or set the provider's router to bridge mode so that \
                     your own router gets the public address; or borrow reachability from a \
                     relay box with a public address (tunnel.via, see README).";
    if let Views::Differ { router, dht } = views(upnp, publish) {
        return v(
            Level::Bad,
            "Not reachable from the internet",
            format!(
                "Your router says its internet address is {router}, but the internet sees \
                 this box at {dht}: another NAT (the provider's carrier-grade NAT, or a second \
                 router) sits in front of yours and does not forward to it."
            ),
            cgnat_fix,
        );
    }
    match nat {
        Some(NatKind::Cgnat) => {
            return v(
                Level::Bad,
                "Not reachable from the internet",
                "Your router's internet address is in the carrier-grade NAT range \
                 (100.64.0.0/10): your provider shares one public address among many \
                 customers, so nobody outside can connect in."
                    .into(),
                cgnat_fix,
            )
        }
        Some(NatKind::DoubleNat) => {
            return v(
                Level::Bad,
                "Not reachable from the internet",
                "Your router's internet address is itself private: there is a second router \
                 (often the provider's box) in front of it, and it does not forward to this one."
                    .into(),
                "Put the provider's router in bridge mode, or forward the port on it to your \
                 router as well.",
            )
        }
        Some(NatKind::NoPublicAddress) => {
            return v(
                Level::Bad,
                "Not reachable from the internet",
                "The router reports no public internet address: it is behind another NAT, or \
                 its internet link is down."
                    .into(),
                cgnat_fix,
            )
        }
        _ => {}
    }
    let mapped = upnp.is_some_and(|u| u.mappings.iter().any(|m| m.name == "pubky_tls"));
    let by_hand = config.pkdns.public_ip.is_some();
    if config.upnp.enabled && !mapped && !by_hand {
        let (state, err) = upnp.map_or(("not started".to_string(), None), |u| {
            (u.state.replace('_', " "), u.last_error.clone())
        });
        if state == "searching" || state == "not started" {
            return v(
                Level::Unknown,
                "Checking the router…",
                "The box is still asking the router to open its port.".into(),
                "Wait a minute and reload this page.",
            );
        }
        let reason = match err {
            Some(e) => format!("The router did not open the port ({state}: {e})."),
            None => format!("The router did not open the port ({state})."),
        };
        return Verdict {
            level: Level::Bad,
            headline: "The router does not let apps in".into(),
            reason,
            fix: format!(
                "Turn on UPnP or NAT-PMP (also called PCP) in your router's settings; or forward \
                 TCP port {tls_port} to this box by hand and set pkdns.public_ip to your \
                 internet address."
            ),
        };
    }
    match publish {
        None => {
            return v(
                Level::Unknown,
                "Announcing…",
                "The box has not published its address on the DHT yet.".into(),
                "Wait a minute and reload this page.",
            )
        }
        Some(p) if p.last_error.is_some() => {
            return v(
                Level::Warn,
                "The announcement is failing",
                format!(
                    "The last attempt to publish the address on the DHT failed: {}.",
                    p.last_error.as_deref().unwrap_or("")
                ),
                "Check that the box has internet access; it retries by itself.",
            )
        }
        Some(_) => {}
    }
    let current = current_address(upnp, publish);
    match (record, current) {
        (Some(Resolution::NotFound), _) => v(
            Level::Warn,
            "The record is not on the network",
            "Looking the box's key up on the DHT found nothing, although it was published.".into(),
            "Wait for the next publish (the box retries by itself); if it stays, check the \
             internet access.",
        ),
        (Some(Resolution::Found { ip, port }), Some((cip, cport)))
            if *ip != Some(cip) || *port != Some(cport) =>
        {
            v(
                Level::Warn,
                "The address on the network is out of date",
                format!(
                    "The DHT still says {}:{}, but the box is now at {cip}:{cport}.",
                    ip.map_or("?".into(), |i| i.to_string()),
                    port.map_or("?".into(), |p| p.to_string())
                ),
                "Nothing to do: the box republishes when its address changes.",
            )
        }
        (Some(Resolution::Found { .. }), _) => v(
            Level::Good,
            "Reachable from the internet",
            match current {
                Some((ip, port)) => format!(
                    "The router forwards port {port}, and the record on the DHT points at \
                     {ip}:{port}."
                ),
                None => "The record on the DHT points at the published address.".into(),
            },
            "Nothing to do.",
        ),
        _ => v(
            Level::Good,
            "Announced",
            match current {
                Some((ip, port)) => format!("The box published {ip}:{port} on the DHT."),
                None => "The box published its address on the DHT.".into(),
            },
            "The check that the record is found on the network runs in the background.",
        ),
    }
}

/// The one verdict `status` and the dashboard show: the relay's, when it has a say, else
/// the router's facts; softened when IPv6 clients can reach the box (`with_ipv6`).
pub fn overall(
    config: &Config,
    upnp: Option<&UpnpState>,
    publish: Option<&PublishStatus>,
    link: Option<&LinkState>,
    record: Option<&Resolution>,
    tls_port: u16,
) -> Verdict {
    let verdict = through_relay(config, link, record)
        .unwrap_or_else(|| judge(config, upnp, publish, record, tls_port));
    with_ipv6(verdict, publish)
}

/// `verdict` with the IPv6 side taken into account: a box IPv4 clients cannot reach, whose
/// record announces an IPv6 address (announced only while the router's firewall lets it
/// through, see `pinhole`), is reachable by every client with IPv6.
pub fn with_ipv6(verdict: Verdict, publish: Option<&PublishStatus>) -> Verdict {
    let announced = publish.and_then(|p| Some((p.published_ipv6.as_deref()?, p.pubky_tls_port)));
    match announced {
        Some((v6, port)) if verdict.level == Level::Bad => v(
            Level::Warn,
            "Reachable over IPv6 only",
            format!(
                "Apps on networks with IPv6 reach the box at [{v6}]:{port}, which the \
                 router's firewall lets through; over IPv4 they cannot. {}",
                verdict.reason
            ),
            &verdict.fix,
        ),
        _ => verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announce::upnp::MappingState;

    #[test]
    fn an_announced_ipv6_address_softens_only_an_unreachable_verdict() {
        let cgnat = judge(
            &config(true),
            Some(&upnp(NatKind::Cgnat, true)),
            Some(&published()),
            None,
            6287,
        );
        assert_eq!(cgnat.level, Level::Bad);
        let v6 = PublishStatus {
            published_ipv6: Some("2001:db8:1::10".into()),
            ..published()
        };
        let soft = with_ipv6(cgnat.clone(), Some(&v6));
        assert_eq!(soft.level, Level::Warn);
        assert_eq!(soft.headline, "Reachable over IPv6 only");
        assert!(
            soft.reason.contains("[2001:db8:1::10]:6287"),
            "{}",
            soft.reason
        );
        assert!(soft.reason.ends_with(&cgnat.reason), "{}", soft.reason);
        assert_eq!(soft.fix, cgnat.fix);
        // Without an announced IPv6 address, or when IPv4 works, nothing changes.
        assert_eq!(with_ipv6(cgnat.clone(), Some(&published())), cgnat);
        let good = judge(
            &config(true),
            Some(&upnp(NatKind::Public, true)),
            Some(&v6),
            None,
            6287,
        );
        assert_eq!(with_ipv6(good.clone(), Some(&v6)), good);
    }

    fn config(dht: bool) -> Config {
        let toml = format!("[pkdns]\ndht = {dht}\n");
        Config::from_layers(&[("test", &toml)]).unwrap().config
    }

    fn upnp(nat: NatKind, mapped: bool) -> UpnpState {
        UpnpState {
            state: if mapped { "mapped" } else { "refused" }.into(),
            external_ip: Some("203.0.113.9".into()),
            nat: Some(nat),
            mappings: mapped
                .then(|| MappingState {
                    name: "pubky_tls".into(),
                    external_port: 6287,
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            last_error: (!mapped).then(|| "ConflictInMappingEntry".into()),
            ..Default::default()
        }
    }

    fn published() -> PublishStatus {
        PublishStatus {
            last_success_secs: Some(1),
            published_ip: Some("203.0.113.9".into()),
            pubky_tls_port: 6287,
            ..Default::default()
        }
    }

    #[test]
    fn each_case_has_its_verdict() {
        let c = config(true);
        let found = |ip: &str| Resolution::Found {
            ip: Some(ip.parse().unwrap()),
            port: Some(6287),
        };
        let good = upnp(NatKind::Public, true);
        let j =
            |u: &UpnpState, r: Option<&Resolution>| judge(&c, Some(u), Some(&published()), r, 6287);
        assert_eq!(j(&good, Some(&found("203.0.113.9"))).level, Level::Good);
        assert_eq!(
            j(&good, Some(&found("198.51.100.1"))).headline,
            "The address on the network is out of date"
        );
        assert_eq!(j(&good, Some(&Resolution::NotFound)).level, Level::Warn);
        assert_eq!(j(&good, None).headline, "Announced");
        let cg = j(&upnp(NatKind::Cgnat, true), None);
        assert_eq!(
            (cg.level, cg.reason.contains("100.64.0.0/10")),
            (Level::Bad, true)
        );
        assert!(j(&upnp(NatKind::DoubleNat, true), None)
            .fix
            .contains("bridge mode"));
        let refused = j(&upnp(NatKind::Public, false), None);
        assert_eq!(refused.level, Level::Bad);
        assert!(refused.reason.contains("ConflictInMappingEntry") && refused.fix.contains("6287"));
        let off = judge(&config(false), Some(&good), None, None, 6287);
        assert_eq!(
            (off.level, off.headline.as_str()),
            (Level::Warn, "Not announced on the internet")
        );
        let failing = PublishStatus {
            last_error: Some("no nodes".into()),
            ..published()
        };
        assert!(judge(&c, Some(&good), Some(&failing), None, 6287)
            .reason
            .contains("no nodes"));
        assert_eq!(
            judge(&c, Some(&good), None, None, 6287).level,
            Level::Unknown
        );
        // The DHT's nodes see another address than the router names: a NAT in front of it.
        let router_ip = upnp(NatKind::Public, true).external_ip.unwrap();
        let seen = |ip: &str| PublishStatus {
            dht_seen_ip: Some(ip.into()),
            ..published()
        };
        let behind = judge(&c, Some(&good), Some(&seen("84.1.2.3")), None, 6287);
        assert_eq!(behind.level, Level::Bad);
        assert!(
            behind.reason.contains("84.1.2.3") && behind.reason.contains(&router_ip),
            "{behind:?}"
        );
        let agreeing = judge(&c, Some(&good), Some(&seen(&router_ip)), None, 6287);
        assert_eq!(agreeing.headline, "Announced");
    }

    #[test]
    fn a_relay_decides_reachability_whatever_the_router_says() {
        assert_eq!(through_relay(&config(true), None, None), None);
        let toml = "[tunnel]\nvia = \"8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo@203.0.113.5:6289\"\nuse_relay = \"always\"\n";
        let c = Config::from_layers(&[("test", toml)]).unwrap().config;
        let down = LinkState {
            state: "waiting".into(),
            last_error: Some("cannot connect to 203.0.113.5:6289: refused".into()),
            ..Default::default()
        };
        let v = through_relay(&c, Some(&down), None).unwrap();
        assert_eq!(v.level, Level::Bad);
        assert!(
            v.reason.contains("203.0.113.5:6289") && v.reason.contains("refused"),
            "{v:?}"
        );
        assert!(v.fix.contains("tunnel.boxes"));
        assert_eq!(through_relay(&c, None, None).unwrap().level, Level::Bad);
        let up = LinkState {
            state: "connected".into(),
            published: Some("203.0.113.5:6290".into()),
            in_record: true,
            ..Default::default()
        };
        let at = |ip: &str, port: u16| Resolution::Found {
            ip: Some(ip.parse().unwrap()),
            port: Some(port),
        };
        let good = through_relay(&c, Some(&up), Some(&at("203.0.113.5", 6290))).unwrap();
        assert_eq!(
            (good.level, good.headline.as_str()),
            (Level::Good, "Reachable through the relay")
        );
        assert!(good.reason.contains("203.0.113.5:6290"));
        assert_eq!(
            through_relay(&c, Some(&up), None).unwrap().level,
            Level::Good
        );
        let stale = through_relay(&c, Some(&up), Some(&at("198.51.100.1", 6287))).unwrap();
        assert_eq!(stale.headline, "The address on the network is out of date");
        assert_eq!(
            through_relay(&c, Some(&up), Some(&Resolution::NotFound))
                .unwrap()
                .level,
            Level::Warn
        );
    }

    #[test]
    fn with_a_relay_on_standby_the_connect_back_decides() {
        let toml = "[tunnel]\nvia = \"8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo@203.0.113.5:6289\"\n";
        let c = Config::from_layers(&[("test", toml)]).unwrap().config;
        // Not checked yet, or the link is down before any check: the router's facts decide.
        assert_eq!(through_relay(&c, None, None), None);
        // Without the DHT nothing is announced, whatever the relay found.
        let no_dht = Config::from_layers(&[("test", toml), ("off", "[pkdns]\ndht = false\n")])
            .unwrap()
            .config;
        let reached = LinkState {
            state: "connected".into(),
            published: Some("203.0.113.5:6290".into()),
            direct_ok: Some(true),
            direct: Some("198.51.100.4:6287 (3 ms)".into()),
            ..Default::default()
        };
        let at = |ip: &str, port: u16| Resolution::Found {
            ip: Some(ip.parse().unwrap()),
            port: Some(port),
        };
        assert_eq!(through_relay(&no_dht, Some(&reached), None), None);
        let good = through_relay(&c, Some(&reached), Some(&at("198.51.100.4", 6287))).unwrap();
        assert_eq!(
            (good.level, good.headline.as_str()),
            (Level::Good, "Reachable from the internet")
        );
        assert!(
            good.reason
                .contains("connected back to this box at 198.51.100.4:6287"),
            "{good:?}"
        );
        let stale = through_relay(&c, Some(&reached), Some(&at("203.0.113.5", 6290))).unwrap();
        assert_eq!(stale.level, Level::Warn);
        let unreached = LinkState {
            direct_ok: Some(false),
            direct: Some("cannot connect to 198.51.100.4:6287: refused".into()),
            in_record: true,
            ..reached.clone()
        };
        let relayed = through_relay(&c, Some(&unreached), Some(&at("203.0.113.5", 6290))).unwrap();
        assert_eq!(relayed.headline, "Reachable through the relay");
        assert!(
            relayed
                .reason
                .contains("could not reach this box at its own address: cannot connect"),
            "{relayed:?}"
        );
        let down = LinkState {
            state: "waiting".into(),
            ..unreached
        };
        assert_eq!(
            through_relay(&c, Some(&down), None).unwrap().level,
            Level::Bad
        );
    }
}

//! The rules of a router port mapping, free of the network: what the router's external
//! address means for reachability, which external port to ask for next when one is taken or
//! a lease kind is refused, when a lease is due for renewal, and when a NAT-PMP or PCP
//! router's epoch says it lost its mappings. `upnp` asks the router and follows these
//! answers.

use std::net::IpAddr;
use std::time::Duration;

use igd_next::AddPortError;
use serde::{Deserialize, Serialize};

/// One listener to expose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    /// "pubky_tls" or "http"; the PubkyTLS one's external port goes into the record.
    pub name: String,
    pub internal_port: u16,
    /// External port asked for first.
    pub external_port: u16,
}

/// What kind of address the router sees outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatKind {
    /// A public address: inbound connections through the mapping can work.
    Public,
    /// 100.64.0.0/10: the ISP's carrier-grade NAT; the mapping does not reach the internet.
    Cgnat,
    /// A private or otherwise non-public address: another router sits in front (double NAT).
    DoubleNat,
    /// The router answers but names no usable external address (miniupnpd does this when
    /// its own WAN address is private or carrier-grade; also when its WAN link is down).
    NoPublicAddress,
}

/// Classifies the router's external address.
pub fn classify(ip: IpAddr) -> NatKind {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if a == 100 && (64..128).contains(&b) {
                NatKind::Cgnat
            } else if v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
            {
                NatKind::DoubleNat
            } else {
                NatKind::Public
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let unique_local = (first & 0xfe00) == 0xfc00;
            let link_local = (first & 0xffc0) == 0xfe80;
            if v6.is_loopback() || v6.is_unspecified() || unique_local || link_local {
                NatKind::DoubleNat
            } else {
                NatKind::Public
            }
        }
    }
}

pub use crate::config::MappingProtocol as Protocol;

/// Protocols the router answered but refused the mapping in, with the refusal: the ladder
/// passes over them until a search finds nothing (then every rung is asked again).
#[derive(Debug, Default)]
pub struct PassedOver(Vec<(Protocol, String)>);

impl PassedOver {
    pub fn push(&mut self, protocol: Protocol, refusal: String) {
        self.0.push((protocol, refusal));
    }

    /// Why `protocol` is passed over, if it is.
    pub fn refusal(&self, protocol: Protocol) -> Option<&str> {
        self.0
            .iter()
            .find(|(p, _)| *p == protocol)
            .map(|(_, r)| r.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Whether a rung of `ladder` after `protocol` is left to ask.
    pub fn ladder_goes_on(&self, ladder: &[Protocol], protocol: Protocol) -> bool {
        ladder
            .iter()
            .skip_while(|p| **p != protocol)
            .skip(1)
            .any(|p| self.refusal(*p).is_none())
    }
}

/// Whether a NAT-PMP or PCP server lost its mappings (RFC 6886 §3.6, RFC 6887 §8.5): its
/// epoch (seconds since it started) went back, or advanced by clearly less than the time
/// that passed here since `previous` was read (7/8 of it, less 2 s of slack, allowing for
/// a server clock that runs a little slow).
pub fn epoch_lost(previous: u32, elapsed: Duration, now: u32) -> bool {
    let expected = u64::from(previous) + elapsed.as_secs() * 7 / 8;
    now < previous || u64::from(now) + 2 < expected
}

/// What the router says about its external address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum External {
    Address(IpAddr),
    /// It answered, with an error or an empty address.
    NoneNamed,
    /// PCP before its first mapping: the address comes with a mapping's answer.
    Unknown,
}

/// The router's external address next to the one the DHT nodes saw (the most reliable sign
/// of a NAT the router does not know about: it names one address, the internet sees
/// another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Views {
    Agree(IpAddr),
    /// Another NAT sits between the router and the internet (carrier-grade or double NAT).
    Differ {
        router: IpAddr,
        dht: IpAddr,
    },
    /// Only the DHT's view: no router answered.
    DhtOnly(IpAddr),
    Unknown,
}

/// Compares the two; a DHT view that is not a public address (a DHT on the LAN or on
/// loopback sees the private side) says nothing about the internet and is left out.
pub fn compare_views(router: Option<IpAddr>, dht: Option<IpAddr>) -> Views {
    let dht = dht.filter(|ip| classify(*ip) == NatKind::Public);
    match (router, dht) {
        (Some(r), Some(d)) if r == d => Views::Agree(r),
        (Some(router), Some(dht)) => Views::Differ { router, dht },
        (None, Some(d)) => Views::DhtOnly(d),
        _ => Views::Unknown,
    }
}

/// The gateway's answer to a mapping request, reduced to what decides the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// UPnP: the port and lease asked for.
    Mapped,
    /// NAT-PMP and PCP: the router chose the external port and the lease.
    Granted {
        external_port: u16,
        lease_secs: u32,
    },
    /// Error 718: another host holds the external port.
    InUse,
    /// Error 725: the router only accepts permanent leases.
    OnlyPermanent,
    Refused(String),
}

impl From<Result<(), AddPortError>> for AddOutcome {
    fn from(r: Result<(), AddPortError>) -> AddOutcome {
        match r {
            Ok(()) => AddOutcome::Mapped,
            Err(AddPortError::PortInUse) => AddOutcome::InUse,
            Err(AddPortError::OnlyPermanentLeasesSupported) => AddOutcome::OnlyPermanent,
            Err(e) => AddOutcome::Refused(e.to_string()),
        }
    }
}

/// One AddPortMapping attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub external_port: u16,
    /// Seconds; 0 = permanent.
    pub lease_secs: u32,
    /// Alternative ports tried so far.
    pub alternatives: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Done(Attempt),
    Retry(Attempt),
    GiveUp(String),
}

/// Pure step of the mapping negotiation: what to do after `outcome` of `attempt`.
pub fn after_add(req: &PortRequest, attempt: Attempt, outcome: AddOutcome, max_alt: u16) -> Next {
    match outcome {
        AddOutcome::Mapped => Next::Done(attempt),
        AddOutcome::Granted {
            external_port,
            lease_secs,
        } => Next::Done(Attempt {
            external_port,
            lease_secs,
            ..attempt
        }),
        AddOutcome::OnlyPermanent if attempt.lease_secs != 0 => Next::Retry(Attempt {
            lease_secs: 0,
            ..attempt
        }),
        AddOutcome::OnlyPermanent => Next::GiveUp("the router refused a permanent lease".into()),
        AddOutcome::InUse if attempt.alternatives < max_alt => {
            let k = attempt.alternatives + 1;
            Next::Retry(Attempt {
                external_port: alternative_port(req.external_port, k),
                alternatives: k,
                ..attempt
            })
        }
        AddOutcome::InUse => Next::GiveUp(format!(
            "external port {} and {max_alt} alternatives are held by other hosts",
            req.external_port
        )),
        AddOutcome::Refused(e) => Next::GiveUp(e),
    }
}

/// The k-th other external port to try: the ports just above the wanted one (below it near
/// the top of the range).
pub fn alternative_port(wanted: u16, k: u16) -> u16 {
    wanted
        .checked_add(k)
        .unwrap_or_else(|| wanted.saturating_sub(k).max(1))
}

/// Whether a mapping renewed `since` ago with `lease_secs` should be renewed now
/// (half-life; permanent mappings are re-asserted at every check).
pub fn renew_due(lease_secs: u32, since: Duration) -> bool {
    lease_secs == 0 || since >= Duration::from_secs(u64::from(lease_secs)) / 2
}

/// The lease to ask for, in whole seconds (at least 1; 0 would mean permanent).
pub fn lease_secs(lease: Duration) -> u32 {
    let secs = lease.as_millis().div_ceil(1000);
    u32::try_from(secs).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> PortRequest {
        PortRequest {
            name: "pubky_tls".into(),
            internal_port: 6287,
            external_port: 6287,
        }
    }

    fn first() -> Attempt {
        Attempt {
            external_port: 6287,
            lease_secs: 3600,
            alternatives: 0,
        }
    }

    #[test]
    fn addresses_are_classified() {
        for (ip, kind) in [
            ("100.64.0.1", NatKind::Cgnat),
            ("100.127.255.254", NatKind::Cgnat),
            ("100.128.0.1", NatKind::Public),
            ("192.168.1.2", NatKind::DoubleNat),
            ("10.1.2.3", NatKind::DoubleNat),
            ("172.16.0.1", NatKind::DoubleNat),
            ("169.254.1.1", NatKind::DoubleNat),
            ("11.0.0.1", NatKind::Public),
            ("84.12.3.4", NatKind::Public),
            ("fd00::1", NatKind::DoubleNat),
            ("2a01:4f8::1", NatKind::Public),
        ] {
            assert_eq!(classify(ip.parse().unwrap()), kind, "{ip}");
        }
    }

    #[test]
    fn a_taken_port_moves_to_the_next_ones_then_gives_up() {
        let r = req();
        let Next::Retry(a) = after_add(&r, first(), AddOutcome::InUse, 2) else {
            panic!()
        };
        assert_eq!(
            (a.external_port, a.alternatives, a.lease_secs),
            (6288, 1, 3600)
        );
        let Next::Retry(b) = after_add(&r, a, AddOutcome::InUse, 2) else {
            panic!()
        };
        assert_eq!(b.external_port, 6289);
        assert!(matches!(
            after_add(&r, b, AddOutcome::InUse, 2),
            Next::GiveUp(_)
        ));
        assert_eq!(after_add(&r, b, AddOutcome::Mapped, 2), Next::Done(b));
        assert_eq!(alternative_port(65535, 1), 65534);
    }

    #[test]
    fn permanent_only_routers_get_a_permanent_lease_once() {
        let Next::Retry(a) = after_add(&req(), first(), AddOutcome::OnlyPermanent, 8) else {
            panic!()
        };
        assert_eq!((a.external_port, a.lease_secs), (6287, 0));
        assert!(matches!(
            after_add(&req(), a, AddOutcome::OnlyPermanent, 8),
            Next::GiveUp(_)
        ));
        assert!(matches!(
            after_add(&req(), first(), AddOutcome::Refused("606".into()), 8),
            Next::GiveUp(e) if e == "606"
        ));
    }

    #[test]
    fn leases_renew_at_half_life_and_round_up() {
        assert!(!renew_due(3600, Duration::from_secs(1799)));
        assert!(renew_due(3600, Duration::from_secs(1800)));
        assert!(renew_due(0, Duration::ZERO));
        assert_eq!(lease_secs(Duration::from_millis(1500)), 2);
        assert_eq!(lease_secs(Duration::from_millis(1)), 1);
        assert_eq!(lease_secs(Duration::from_secs(3600)), 3600);
    }

    #[test]
    fn a_granted_port_and_lease_are_what_the_router_chose() {
        let granted = AddOutcome::Granted {
            external_port: 40001,
            lease_secs: 120,
        };
        let Next::Done(a) = after_add(&req(), first(), granted, 8) else {
            panic!()
        };
        assert_eq!((a.external_port, a.lease_secs), (40001, 120));
    }

    #[test]
    fn a_router_that_restarted_is_told_by_its_epoch() {
        let s = Duration::from_secs;
        // Steady: the epoch advanced as much as the time here.
        assert!(!epoch_lost(1000, s(60), 1060));
        // A slower server clock is tolerated down to 7/8 of the time, less 2 s.
        assert!(!epoch_lost(1000, s(80), 1068));
        assert!(epoch_lost(1000, s(80), 1067));
        // The epoch went back: the server restarted (and forgot its mappings).
        assert!(epoch_lost(1000, s(1), 3));
        // Restarted long enough ago to be past the old epoch, but not by the time passed.
        assert!(epoch_lost(100, s(600), 120));
        // Same second.
        assert!(!epoch_lost(5, Duration::ZERO, 5));
    }

    #[test]
    fn the_router_and_the_dht_views_are_compared() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            compare_views(ip("11.0.0.1"), ip("11.0.0.1")),
            Views::Agree("11.0.0.1".parse().unwrap())
        );
        assert_eq!(
            compare_views(ip("11.0.0.1"), ip("12.0.0.1")),
            Views::Differ {
                router: "11.0.0.1".parse().unwrap(),
                dht: "12.0.0.1".parse().unwrap()
            }
        );
        assert_eq!(
            compare_views(None, ip("12.0.0.1")),
            Views::DhtOnly("12.0.0.1".parse().unwrap())
        );
        assert_eq!(compare_views(ip("11.0.0.1"), None), Views::Unknown);
        // A testnet on loopback or the LAN sees the private side: not an internet view.
        assert_eq!(
            compare_views(ip("11.0.0.1"), ip("127.0.0.1")),
            Views::Unknown
        );
        assert_eq!(compare_views(None, ip("192.168.77.10")), Views::Unknown);
    }

    #[test]
    fn the_ladder_goes_on_past_refusing_rungs_only_while_a_rung_is_left() {
        let ladder = Protocol::ALL;
        let mut passed = PassedOver::default();
        assert!(passed.ladder_goes_on(&ladder, Protocol::Upnp));
        assert!(!passed.ladder_goes_on(&ladder, Protocol::Pcp));
        passed.push(Protocol::NatPmp, "refused".into());
        assert_eq!(passed.refusal(Protocol::NatPmp), Some("refused"));
        // PCP is left after UPnP; nothing after NAT-PMP once PCP refuses too.
        assert!(passed.ladder_goes_on(&ladder, Protocol::Upnp));
        passed.push(Protocol::Pcp, "refused".into());
        assert!(!passed.ladder_goes_on(&ladder, Protocol::Upnp));
        passed.clear();
        assert!(passed.is_empty());
    }

    #[test]
    fn protocols_have_config_keys() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_key(p.key()), Some(p));
        }
        assert_eq!(Protocol::from_key("natpmp"), None);
    }

    #[test]
    fn outcomes_come_from_the_gateway_errors() {
        assert_eq!(AddOutcome::from(Ok(())), AddOutcome::Mapped);
        assert_eq!(
            AddOutcome::from(Err(AddPortError::PortInUse)),
            AddOutcome::InUse
        );
        assert_eq!(
            AddOutcome::from(Err(AddPortError::OnlyPermanentLeasesSupported)),
            AddOutcome::OnlyPermanent
        );
        assert!(matches!(
            AddOutcome::from(Err(AddPortError::ActionNotAuthorized)),
            AddOutcome::Refused(_)
        ));
    }
}

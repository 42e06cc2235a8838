//! The homeserver's own pkarr record and the reading of users' `_pubky` records. Pure: the
//! timestamp is passed in, nothing here touches the network.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

use pkarr::dns::rdata::{RData, SVCParam, SVCB};
use pkarr::dns::Name;
use pkarr::{Keypair, SignedPacket, Timestamp};

use crate::pubkey::PublicKey;

/// TTL of every record we publish (the reference's value).
pub const TTL_SECS: u32 = 3600;
/// Private SvcParam carrying the ICANN HTTP port when the domain is `localhost`.
pub const HTTP_PORT_PARAM: u16 = 0xff00;

/// What goes into the homeserver's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpec {
    /// The address clients dial (apex A/AAAA, and the ip hint).
    pub public_ip: IpAddr,
    /// A second address, IPv6, beside an IPv4 `public_ip` (a second apex `AAAA` and
    /// `ipv6hint`): clients with IPv6 reach the box without the IPv4 NAT. It must be open at
    /// `pubky_tls_port` too: one `port` parameter covers every address.
    pub public_ipv6: Option<Ipv6Addr>,
    /// Public port of the PubkyTLS listener (`port` SvcParam of the priority-1 record).
    pub pubky_tls_port: u16,
    /// Public port of the plain HTTP listener, announced only with an ICANN domain.
    pub icann_http_port: u16,
    /// Domain for browsers and the ICANN fallback (second HTTPS record), if any.
    pub icann_domain: Option<String>,
}

impl RecordSpec {
    /// The apex addresses: `public_ip`, then `public_ipv6` unless it repeats it.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut ips = vec![self.public_ip];
        if let Some(v6) = self.public_ipv6.map(IpAddr::V6) {
            if v6 != self.public_ip {
                ips.push(v6);
            }
        }
        ips
    }
}

#[derive(Debug)]
pub struct PacketError(pub String);

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds and signs the homeserver packet: `HTTPS 1 . port=<tls> ipv4hint|ipv6hint=<ip>`,
/// optionally `HTTPS 10 <domain>` (with param 65280 = HTTP port when the domain is
/// `localhost`), and the apex `A`/`AAAA`.
pub fn homeserver_packet(
    seed: &[u8; 32],
    spec: &RecordSpec,
    timestamp_us: u64,
) -> Result<SignedPacket, PacketError> {
    let keypair = Keypair::from_secret_key(seed);
    let apex = Name::new_unchecked(".");
    let mut direct = SVCB::new(1, apex.clone());
    direct.set_port(spec.pubky_tls_port);
    let ips = spec.addresses();
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for ip in &ips {
        match ip {
            IpAddr::V4(a) => v4.push(a.to_bits()),
            IpAddr::V6(a) => v6.push(a.to_bits()),
        }
    }
    if !v4.is_empty() {
        direct.set_ipv4hint(&v4);
    }
    if !v6.is_empty() {
        direct.set_ipv6hint(&v6);
    }
    let mut builder = SignedPacket::builder().https(apex.clone(), direct, TTL_SECS);
    if let Some(domain) = &spec.icann_domain {
        let target =
            Name::new(domain).map_err(|e| PacketError(format!("icann_domain {domain:?}: {e}")))?;
        let mut icann = SVCB::new(10, target);
        if domain == "localhost" {
            icann.set_param(SVCParam::Unknown(
                HTTP_PORT_PARAM,
                Cow::Owned(spec.icann_http_port.to_be_bytes().to_vec()),
            ));
        }
        builder = builder.https(apex.clone(), icann, TTL_SECS);
    }
    for ip in ips {
        builder = builder.address(apex.clone(), ip, TTL_SECS);
    }
    builder
        .timestamp(Timestamp::from(timestamp_us))
        .sign(&keypair)
        .map_err(|e| PacketError(e.to_string()))
}

/// The address and PubkyTLS port a homeserver packet announces: the apex A/AAAA and the
/// `port` of the priority-1 HTTPS record.
pub fn direct_endpoint(packet: &SignedPacket) -> (Option<IpAddr>, Option<u16>) {
    let z = packet.public_key().to_z32();
    let mut ip = None;
    let mut port = None;
    for rr in packet.resource_records(&z) {
        match &rr.rdata {
            RData::A(a) => ip = ip.or(Some(IpAddr::from(std::net::Ipv4Addr::from(a.address)))),
            RData::AAAA(a) => ip = ip.or(Some(IpAddr::from(std::net::Ipv6Addr::from(a.address)))),
            RData::HTTPS(h) if h.0.priority == 1 => {
                port = port.or(h.0.iter_params().find_map(|p| match p {
                    SVCParam::Port(p) => Some(*p),
                    _ => None,
                }))
            }
            _ => {}
        }
    }
    (ip, port)
}

/// The IPv6 addresses a homeserver packet announces (its apex `AAAA` records).
pub fn announced_ipv6(packet: &SignedPacket) -> Vec<Ipv6Addr> {
    let z = packet.public_key().to_z32();
    packet
        .resource_records(&z)
        .filter_map(|rr| match &rr.rdata {
            RData::AAAA(a) => Some(Ipv6Addr::from(a.address)),
            _ => None,
        })
        .collect()
}

/// The homeserver a user's packet points to: the target of the first `HTTPS`/`SVCB` record
/// at `_pubky.<user>`, if it is a key.
pub fn homeserver_of(packet: &SignedPacket) -> Option<PublicKey> {
    packet
        .resource_records("_pubky")
        .find_map(|rr| match &rr.rdata {
            RData::HTTPS(h) => Some(h.0.target.to_string()),
            RData::SVCB(s) => Some(s.target.to_string()),
            _ => None,
        })
        .and_then(|t| PublicKey::parse_host(&t).ok())
}

/// The key of a packet in our own type.
pub fn packet_key(packet: &SignedPacket) -> PublicKey {
    // Invariant: a SignedPacket's key was validated when it was parsed or signed.
    PublicKey::from_bytes(packet.public_key().to_bytes()).expect("valid pkarr key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn spec(domain: Option<&str>) -> RecordSpec {
        RecordSpec {
            public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            public_ipv6: None,
            pubky_tls_port: 6287,
            icann_http_port: 6286,
            icann_domain: domain.map(str::to_string),
        }
    }

    /// (priority, target, [(param key, value bytes)]) of each apex HTTPS record.
    type Https = (u16, String, Vec<(u16, Vec<u8>)>);

    fn https_records(p: &SignedPacket) -> Vec<Https> {
        let z = p.public_key().to_z32();
        p.resource_records(&z)
            .filter_map(|rr| match &rr.rdata {
                RData::HTTPS(h) => Some((
                    h.0.priority,
                    h.0.target.to_string(),
                    h.0.iter_params()
                        .map(|prm| {
                            let bytes = match prm {
                                SVCParam::Port(p) => p.to_be_bytes().to_vec(),
                                SVCParam::Ipv4Hint(v) => v[0].to_be_bytes().to_vec(),
                                SVCParam::Ipv6Hint(v) => v[0].to_be_bytes().to_vec(),
                                SVCParam::Unknown(_, b) => b.to_vec(),
                                _ => vec![],
                            };
                            (prm.key_code(), bytes)
                        })
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn record_matches_the_spec() {
        let p = homeserver_packet(&[0; 32], &spec(Some("localhost")), 1_000_000).unwrap();
        assert_eq!(
            p.public_key().to_z32(),
            "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"
        );
        assert_eq!(p.timestamp().as_u64(), 1_000_000);
        let mut recs = https_records(&p);
        recs.sort();
        assert_eq!(recs.len(), 2);
        // port 6287 = 0x188f, ipv4hint 127.0.0.1, param 65280 = 6286 = 0x188e.
        assert_eq!(recs[0].0, 1);
        assert_eq!(recs[0].1, "");
        assert!(recs[0].2.contains(&(3, vec![0x18, 0x8f])));
        assert!(recs[0].2.contains(&(4, vec![127, 0, 0, 1])));
        assert_eq!(recs[1].0, 10);
        assert_eq!(recs[1].1, "localhost");
        assert_eq!(recs[1].2, vec![(0xff00, vec![0x18, 0x8e])]);
        let z = p.public_key().to_z32();
        let a: Vec<_> = p
            .resource_records(&z)
            .filter_map(|rr| match &rr.rdata {
                RData::A(a) => Some(Ipv4Addr::from(a.address)),
                _ => None,
            })
            .collect();
        assert_eq!(a, vec![Ipv4Addr::LOCALHOST]);
        assert!(p.all_resource_records().all(|rr| rr.ttl == TTL_SECS));
    }

    #[test]
    fn an_ipv6_address_beside_the_ipv4_one_adds_aaaa_and_ipv6hint() {
        let v6: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let both = RecordSpec {
            public_ipv6: Some(v6),
            ..spec(None)
        };
        let p = homeserver_packet(&[0; 32], &both, 7).unwrap();
        let recs = https_records(&p);
        assert_eq!(recs.len(), 1);
        assert!(recs[0].2.contains(&(4, vec![127, 0, 0, 1])));
        assert!(recs[0].2.contains(&(6, v6.octets().to_vec())));
        assert_eq!(announced_ipv6(&p), vec![v6]);
        // The A record stays the first address: readers of one address see the IPv4 one.
        assert_eq!(direct_endpoint(&p).0, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // An IPv6 public_ip and the same IPv6 beside it: one AAAA, not two.
        let same = RecordSpec {
            public_ip: IpAddr::V6(v6),
            public_ipv6: Some(v6),
            ..spec(None)
        };
        let p = homeserver_packet(&[0; 32], &same, 8).unwrap();
        assert_eq!(announced_ipv6(&p), vec![v6]);
        assert_eq!(direct_endpoint(&p).0, Some(IpAddr::V6(v6)));
    }

    #[test]
    fn direct_endpoint_reads_address_and_port() {
        let p = homeserver_packet(&[0; 32], &spec(Some("localhost")), 1).unwrap();
        assert_eq!(
            direct_endpoint(&p),
            (Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), Some(6287))
        );
    }

    #[test]
    fn no_domain_means_one_https_record_and_other_domains_carry_no_port_param() {
        let p = homeserver_packet(&[0; 32], &spec(None), 5).unwrap();
        assert_eq!(https_records(&p).len(), 1);
        let p = homeserver_packet(&[0; 32], &spec(Some("hs.example.com")), 5).unwrap();
        let recs = https_records(&p);
        let icann = recs.iter().find(|r| r.0 == 10).unwrap();
        assert_eq!(icann.1, "hs.example.com");
        assert!(icann.2.is_empty());
        assert!(homeserver_packet(&[0; 32], &spec(Some("bad domain..x")), 5).is_err());
    }

    #[test]
    fn reads_the_pubky_target_of_a_user_packet() {
        let hs = Keypair::from_secret_key(&[0; 32]).public_key().to_z32();
        let user = Keypair::from_secret_key(&[9; 32]);
        let p = SignedPacket::builder()
            .https(
                Name::new_unchecked("_pubky"),
                SVCB::new(0, Name::new_unchecked(&hs)),
                TTL_SECS,
            )
            .sign(&user)
            .unwrap();
        assert_eq!(homeserver_of(&p).unwrap().to_string(), hs);
        let empty = SignedPacket::builder()
            .txt(Name::new_unchecked("x"), "a".try_into().unwrap(), TTL_SECS)
            .sign(&user)
            .unwrap();
        assert!(homeserver_of(&empty).is_none());
        assert_eq!(packet_key(&p).as_bytes(), user.public_key().as_bytes());
    }
}

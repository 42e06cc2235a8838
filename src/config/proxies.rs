//! Trusted reverse proxies (`drive.trusted_proxies`): networks whose `X-Forwarded-For` names
//! the real client, and the rule that picks the client out of that header.

use std::net::IpAddr;
use std::str::FromStr;

/// One network, `addr/len` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    len: u8,
}

impl FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Net, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR network");
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        Ok(Net { addr, len })
    }
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (
                u128::from(u32::from(n)),
                u128::from(u32::from(i)),
                32 - u32::from(self.len),
            ),
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                (u128::from(n), u128::from(i), 128 - u32::from(self.len))
            }
            _ => return false,
        };
        a.checked_shr(bits).unwrap_or(0) == b.checked_shr(bits).unwrap_or(0)
    }
}

/// The reverse proxies allowed to say who the client is. Empty: every `X-Forwarded-For` is
/// ignored and the socket's peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Net>);

impl TrustedProxies {
    pub fn new(nets: Vec<Net>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client behind `peer`: when `peer` is trusted, the right-most address of the
    /// `X-Forwarded-For` values that is not itself a trusted proxy (a client can put anything
    /// at the left of the list, so only what trusted hops appended counts). A trusted peer
    /// with no usable header is the client itself.
    pub fn client<'a>(&self, peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Garbage in a header only trusted hops wrote: stop at the last good address.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly `[v6]:port` or `v4:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    hop.rsplit_once(':')?
        .0
        .parse::<std::net::Ipv4Addr>()
        .ok()
        .map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let n: Net = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.1.1")) && !n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.1.1")));
        let one: Net = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Net = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "::/129", "1.2.3.4/-1"] {
            assert!(bad.parse::<Net>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_peers_and_only_trusted_hops() {
        let t = TrustedProxies::new(vec!["127.0.0.1".parse().unwrap()]);
        let peer = ip("127.0.0.1");
        // From the proxy: the address it appended.
        assert_eq!(
            t.client(peer, ["203.0.113.5"].into_iter()),
            ip("203.0.113.5")
        );
        // A client's own forged entry on the left is ignored.
        assert_eq!(
            t.client(peer, ["1.1.1.1, 203.0.113.5"].into_iter()),
            ip("203.0.113.5")
        );
        // Headers over several lines are one list.
        assert_eq!(
            t.client(peer, ["1.1.1.1", "203.0.113.6:5555"].into_iter()),
            ip("203.0.113.6")
        );
        assert_eq!(
            t.client(peer, ["[2001:db8::1]:80"].into_iter()),
            ip("2001:db8::1")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(t.client(peer, std::iter::empty()), peer);
        assert_eq!(t.client(peer, ["nonsense"].into_iter()), peer);
        // Not from a trusted peer: the header means nothing.
        let stranger = ip("198.51.100.1");
        assert_eq!(t.client(stranger, ["203.0.113.5"].into_iter()), stranger);
        // Nothing trusted: nothing changes.
        assert_eq!(
            TrustedProxies::default().client(peer, ["203.0.113.5"].into_iter()),
            peer
        );
        // Chains of trusted proxies are walked through.
        let chain = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(
            chain.client(
                ip("10.0.0.1"),
                ["9.9.9.9, 203.0.113.7, 10.0.0.2"].into_iter()
            ),
            ip("203.0.113.7")
        );
    }
}

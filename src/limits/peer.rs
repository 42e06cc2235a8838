//! Who a request is "from" for every per-address limit: the address key (an IPv4 address, or
//! the /64 an IPv6 address belongs to, since one household or one attacker gets a whole /64),
//! and the per-address share of a capped resource (connections, event streams). Which
//! proxies may name the client is configuration (`config::TrustedProxies`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// The key per-address limits count under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 cut to
/// its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Live holdings per address of one capped resource: an address may hold at most `share`.
#[derive(Debug, Default)]
pub struct Shares {
    held: HashMap<IpAddr, usize>,
}

impl Shares {
    /// Takes one unit for `key` unless it already holds `share`.
    pub fn take(&mut self, key: IpAddr, share: usize) -> bool {
        let n = self.held.entry(key).or_insert(0);
        if *n >= share {
            return false;
        }
        *n += 1;
        true
    }

    pub fn give_back(&mut self, key: IpAddr) {
        if let Some(n) = self.held.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&key);
            }
        }
    }

    pub fn held(&self, key: IpAddr) -> usize {
        self.held.get(&key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_v4_as_v4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            address_key(ip("2001:db8:1:2:ffff::9")),
            address_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(address_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(address_key(ip("::ffff:10.0.0.7")), ip("10.0.0.7"));
        assert_eq!(address_key(ip("10.0.0.7")), ip("10.0.0.7"));
    }

    #[test]
    fn shares_cap_each_address() {
        let mut s = Shares::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        assert!(s.take(a, 2) && s.take(a, 2));
        assert!(!s.take(a, 2));
        assert!(s.take(b, 2));
        s.give_back(a);
        assert_eq!(s.held(a), 1);
        assert!(s.take(a, 2));
        s.give_back(b);
        assert_eq!(s.held(b), 0);
        assert!(!s.held.contains_key(&b));
    }
}

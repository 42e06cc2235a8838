//! The box's IPv6 side, read from the kernel: its stable global address (what the record's
//! `AAAA` announces and the router's firewall is asked to open) and the IPv6 default
//! gateway (where the PCP request for that pinhole goes). Parsers of `/proc/net/if_inet6`
//! and `/proc/net/ipv6_route`, pure and tested, and the two readers that feed them.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

/// `IFA_F_*` flags of an address (linux/if_addr.h).
const TEMPORARY: u32 = 0x01;
const DADFAILED: u32 = 0x08;
const DEPRECATED: u32 = 0x20;
const TENTATIVE: u32 = 0x40;

/// Whether `ip` is a global unicast address another network can reach: not loopback,
/// link-local, unique-local (fc00::/7), multicast, IPv4-mapped or unspecified.
pub fn is_global(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.to_ipv4_mapped().is_some()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

fn hex_addr(field: &str) -> Option<Ipv6Addr> {
    (field.len() == 32)
        .then(|| u128::from_str_radix(field, 16).ok().map(Ipv6Addr::from))
        .flatten()
}

/// The global addresses in `/proc/net/if_inet6` text that suit a record: not temporary
/// (privacy addresses change every day and are meant for outgoing connections), not
/// deprecated, not still being checked for duplicates or failed that check. On `only` an
/// interface when given. In the kernel's order.
pub fn stable_global_addresses(if_inet6: &str, only: Option<&str>) -> Vec<Ipv6Addr> {
    if_inet6
        .lines()
        .filter_map(|line| {
            // address, ifindex, prefix length, scope, flags, device
            let f: Vec<&str> = line.split_whitespace().collect();
            let (ip, flags, dev) = (hex_addr(f.first()?)?, f.get(4)?, f.get(5)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let unsuitable = flags & (TEMPORARY | DADFAILED | DEPRECATED | TENTATIVE) != 0;
            let wanted_dev = only.is_none_or(|o| o == *dev);
            (is_global(ip) && !unsuitable && wanted_dev).then_some(ip)
        })
        .collect()
}

/// The next hop and device of the first IPv6 default route in `/proc/net/ipv6_route` text
/// (destination ::/0 through a gateway, route up).
pub fn parse_default_route(ipv6_route: &str) -> Option<(Ipv6Addr, String)> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    ipv6_route.lines().find_map(|line| {
        // destination, its prefix length, source, its prefix length, next hop, metric,
        // reference count, use, flags, device
        let f: Vec<&str> = line.split_whitespace().collect();
        let dest = hex_addr(f.first()?)?;
        let plen = f.get(1)?;
        let hop = hex_addr(f.get(4)?)?;
        let flags = u32::from_str_radix(f.get(8)?, 16).ok()?;
        let dev = f.get(9)?.to_string();
        let default = dest.is_unspecified() && *plen == "00";
        let via_gateway = flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
        (default && via_gateway && !hop.is_unspecified()).then_some((hop, dev))
    })
}

/// The interface index of `dev`, from `/proc/net/if_inet6` text (its second column).
fn parse_ifindex(if_inet6: &str, dev: &str) -> Option<u32> {
    if_inet6.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(5) == Some(&dev))
            .then(|| u32::from_str_radix(f.get(1)?, 16).ok())
            .flatten()
    })
}

/// Where the router's IPv6 side is reached: the default route's next hop (usually its
/// link-local address, which needs the interface as scope) on `port`, and the device.
pub fn default_gateway(port: u16) -> Option<(SocketAddr, String)> {
    let (hop, dev) = parse_default_route(&std::fs::read_to_string("/proc/net/ipv6_route").ok()?)?;
    let scope = if (hop.segments()[0] & 0xffc0) == 0xfe80 {
        parse_ifindex(&std::fs::read_to_string("/proc/net/if_inet6").ok()?, &dev)?
    } else {
        0
    };
    Some((SocketAddr::V6(SocketAddrV6::new(hop, port, 0, scope)), dev))
}

/// The address to announce: `listen` itself when the listener is bound to one global
/// address, else the first stable global address on `dev` (the default route's device).
pub fn stable_global_address(listen: Ipv6Addr, dev: &str) -> Option<Ipv6Addr> {
    if !listen.is_unspecified() {
        return is_global(listen).then_some(listen);
    }
    let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    stable_global_addresses(&text, Some(dev)).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of a real table: a stable address, a privacy one, a deprecated one, a
    // unique-local and a link-local one, loopback.
    const IF_INET6: &str = "\
20010db8000100000000000000000099 03 40 00 01     eth0
20010db8000100000000000000000010 03 40 00 80     eth0
20010db8000100000000000000000077 03 40 00 20     eth0
20010db8000200000000000000000005 04 40 00 80     wlan0
fd000000000000000000000000000002 03 40 00 80     eth0
fe800000000000000000000000000010 03 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
";

    #[test]
    fn only_stable_global_addresses_are_announced() {
        let all = stable_global_addresses(IF_INET6, None);
        assert_eq!(
            all,
            vec![
                "2001:db8:1::10".parse::<Ipv6Addr>().unwrap(),
                "2001:db8:2::5".parse().unwrap()
            ]
        );
        let eth0 = stable_global_addresses(IF_INET6, Some("eth0"));
        assert_eq!(eth0, vec!["2001:db8:1::10".parse::<Ipv6Addr>().unwrap()]);
        assert!(stable_global_addresses(IF_INET6, Some("eth9")).is_empty());
        assert_eq!(parse_ifindex(IF_INET6, "wlan0"), Some(4));
    }

    #[test]
    fn global_means_reachable_from_another_network() {
        for (ip, global) in [
            ("2a01:4f8::1", true),
            ("2001:db8:1::10", true),
            ("fd00::2", false),
            ("fe80::1", false),
            ("::1", false),
            ("::", false),
            ("ff02::1", false),
            ("::ffff:192.0.2.1", false),
        ] {
            assert_eq!(is_global(ip.parse().unwrap()), global, "{ip}");
        }
    }

    #[test]
    fn the_default_route_names_its_next_hop_and_device() {
        // As on a LAN that learned its router from router advertisements (a link-local
        // next hop, flags RTF_UP | RTF_GATEWAY | RTF_DEFAULT | RTF_ADDRCONF), after an
        // on-link prefix route.
        let table = "\
20010db8000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe80000000000000021122fffe334455 00000400 00000003 00000000 00450003     eth0
";
        assert_eq!(
            parse_default_route(table),
            Some(("fe80::211:22ff:fe33:4455".parse().unwrap(), "eth0".into()))
        );
        // A default route without a gateway (a point-to-point link) is not a router to ask.
        let no_gateway = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000003 00000000 00000001     ppp0\n";
        assert_eq!(parse_default_route(no_gateway), None);
        assert_eq!(parse_default_route(""), None);
    }
}

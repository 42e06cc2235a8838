//! PCP (RFC 6887) messages: the MAP request for a TCP port and the ANNOUNCE request (which
//! only reads the server's epoch), and their responses. Pure encoding and decoding;
//! `port_control` sends them to the gateway's port 5351.

use std::net::{IpAddr, Ipv6Addr};

const VERSION: u8 = 2;
const OP_ANNOUNCE: u8 = 0;
const OP_MAP: u8 = 1;
/// The R bit: set in responses.
const RESPONSE: u8 = 0x80;
const TCP: u8 = 6;
const HEADER: usize = 24;
const MAP_BODY: usize = 36;

/// A mapping's nonce (§11.1): the same for its renewals and its deletion.
pub type Nonce = [u8; 12];

/// IPv4 addresses travel as IPv4-mapped IPv6 addresses (§5).
fn wire_ip(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn from_wire(b: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(b);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// The common request header (§7.1): version, R = 0 and opcode, reserved, requested
/// lifetime, and the client's own address as the server sees it.
fn header(opcode: u8, lifetime_secs: u32, client: IpAddr) -> [u8; HEADER] {
    let mut b = [0u8; HEADER];
    b[0] = VERSION;
    b[1] = opcode;
    b[4..8].copy_from_slice(&lifetime_secs.to_be_bytes());
    b[8..24].copy_from_slice(&wire_ip(client));
    b
}

/// ANNOUNCE (§14.1): lifetime 0, no body; the answer carries the server's epoch.
pub fn announce_request(client: IpAddr) -> [u8; HEADER] {
    header(OP_ANNOUNCE, 0, client)
}

/// MAP for TCP `internal_port` (§11.1). The suggested external address is "any" of the
/// client's family; a lifetime of 0 deletes the mapping the nonce names.
pub fn map_request(
    client: IpAddr,
    nonce: &Nonce,
    internal_port: u16,
    suggested_external: u16,
    lifetime_secs: u32,
) -> [u8; HEADER + MAP_BODY] {
    let mut b = [0u8; HEADER + MAP_BODY];
    b[..HEADER].copy_from_slice(&header(OP_MAP, lifetime_secs, client));
    let body = &mut b[HEADER..];
    body[..12].copy_from_slice(nonce);
    body[12] = TCP;
    // body[13..16]: reserved.
    body[16..18].copy_from_slice(&internal_port.to_be_bytes());
    body[18..20].copy_from_slice(&suggested_external.to_be_bytes());
    let any = match client {
        IpAddr::V4(_) => wire_ip(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        IpAddr::V6(_) => [0; 16],
    };
    body[20..36].copy_from_slice(&any);
    b
}

/// A decoded response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Announced {
        epoch: u32,
    },
    Mapped {
        epoch: u32,
        lifetime_secs: u32,
        internal_port: u16,
        external_port: u16,
        external_ip: IpAddr,
    },
    /// A non-zero result code (§7.4).
    Failed {
        code: u8,
    },
    /// A NAT-PMP server's answer to a PCP request: it speaks version 0 only (§9).
    NatPmpOnly,
}

/// Decodes a response to `request_opcode`; a MAP response must echo `nonce`. `None` for
/// anything else.
pub fn parse(packet: &[u8], request_opcode: u8, nonce: Option<&Nonce>) -> Option<Response> {
    let (&version, &op) = (packet.first()?, packet.get(1)?);
    if version == 0 && op >= 128 {
        // RFC 6886 servers answer an unknown version with result 1 (§9 of RFC 6887).
        return Some(Response::NatPmpOnly);
    }
    if version != VERSION || op != RESPONSE | request_opcode || packet.len() < HEADER {
        return None;
    }
    let code = packet[3];
    if code != 0 {
        return Some(Response::Failed { code });
    }
    let u32_at = |i: usize| u32::from_be_bytes(packet[i..i + 4].try_into().expect("4 bytes"));
    let (lifetime_secs, epoch) = (u32_at(4), u32_at(8));
    if request_opcode == OP_ANNOUNCE {
        return Some(Response::Announced { epoch });
    }
    let body = packet.get(HEADER..HEADER + MAP_BODY)?;
    if nonce.is_some_and(|n| body[..12] != n[..]) || body[12] != TCP {
        return None;
    }
    let ip: [u8; 16] = body[20..36].try_into().ok()?;
    Some(Response::Mapped {
        epoch,
        lifetime_secs,
        internal_port: u16::from_be_bytes([body[16], body[17]]),
        external_port: u16::from_be_bytes([body[18], body[19]]),
        external_ip: from_wire(ip),
    })
}

/// The opcodes callers pass to [`parse`].
pub const ANNOUNCE: u8 = OP_ANNOUNCE;
pub const MAP: u8 = OP_MAP;

/// The result codes of §7.4, as a sentence for the report.
pub fn result_text(code: u8) -> String {
    let what = match code {
        1 => "unsupported version",
        2 => "not authorized (the router refuses mappings from this device)",
        3 => "malformed request",
        4 => "unsupported opcode",
        5 => "unsupported option",
        6 => "malformed option",
        7 => "network failure (the router has no public address yet)",
        8 => "no resources (the router's mapping table is full)",
        9 => "unsupported protocol",
        10 => "user quota exceeded",
        11 => "cannot provide the external port",
        12 => "address mismatch (another NAT between this device and the router)",
        13 => "excessive remote peers",
        _ => "unknown result code",
    };
    format!("PCP result {code}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "192.168.77.10";

    #[test]
    fn requests_follow_the_rfc_layout() {
        let client: IpAddr = CLIENT.parse().unwrap();
        // §7.1 header of an ANNOUNCE: version 2, opcode 0, reserved, lifetime 0, then
        // ::ffff:192.168.77.10.
        let a = announce_request(client);
        assert_eq!(a[..8], [2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            a[8..24],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 77, 10]
        );

        let nonce = [7u8; 12];
        let m = map_request(client, &nonce, 6287, 6287, 7200);
        assert_eq!(m.len(), 60);
        assert_eq!(m[..8], [2, 1, 0, 0, 0, 0, 0x1c, 0x20]);
        // §11.1 MAP body: nonce, protocol 6, reserved, internal port, suggested external
        // port, suggested external address ::ffff:0.0.0.0 (no preference).
        assert_eq!(m[24..36], nonce);
        assert_eq!(m[36..40], [6, 0, 0, 0]);
        assert_eq!(m[40..44], [0x18, 0x8f, 0x18, 0x8f]);
        assert_eq!(
            m[44..60],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]
        );
        // An IPv6 client has "::" as no preference.
        let v6 = map_request("2001:db8::10".parse().unwrap(), &nonce, 1, 1, 1);
        assert_eq!(v6[44..60], [0; 16]);
    }

    /// A pinhole (§11, IPv6 without translation): the client's own IPv6 address travels as
    /// itself, not IPv4-mapped, and the answer names the same address and port outside.
    #[test]
    fn an_ipv6_pinhole_request_and_its_answer() {
        let client: std::net::Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let nonce = [3u8; 12];
        let m = map_request(IpAddr::V6(client), &nonce, 6287, 6287, 600);
        assert_eq!(m[..8], [2, 1, 0, 0, 0, 0, 0x02, 0x58]);
        assert_eq!(m[8..24], client.octets());
        assert_eq!(m[40..44], [0x18, 0x8f, 0x18, 0x8f]);
        let mut r = vec![2, 0x81, 0, 0, 0, 0, 0x02, 0x58, 0, 0, 0, 7];
        r.extend([0; 12]);
        r.extend(nonce);
        r.extend([6, 0, 0, 0, 0x18, 0x8f, 0x18, 0x8f]);
        r.extend(client.octets());
        assert_eq!(
            parse(&r, MAP, Some(&nonce)),
            Some(Response::Mapped {
                epoch: 7,
                lifetime_secs: 600,
                internal_port: 6287,
                external_port: 6287,
                external_ip: IpAddr::V6(client),
            })
        );
    }

    fn map_response(nonce: &Nonce, code: u8) -> Vec<u8> {
        let mut r = vec![2, 0x81, 0, code, 0, 0, 0x0e, 0x10, 0, 0, 0, 42];
        r.extend([0; 12]);
        r.extend(nonce);
        r.extend([6, 0, 0, 0, 0x18, 0x8f, 0x18, 0x90]);
        r.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 11, 0, 0, 1]);
        r
    }

    #[test]
    fn responses_are_decoded_and_others_ignored() {
        let nonce = [9u8; 12];
        assert_eq!(
            parse(&map_response(&nonce, 0), MAP, Some(&nonce)),
            Some(Response::Mapped {
                epoch: 42,
                lifetime_secs: 3600,
                internal_port: 6287,
                external_port: 6288,
                external_ip: "11.0.0.1".parse().unwrap(),
            })
        );
        // §7.4: a refusal is its result code, whatever follows.
        assert_eq!(
            parse(&map_response(&nonce, 2), MAP, Some(&nonce)),
            Some(Response::Failed { code: 2 })
        );
        // Another mapping's nonce, an ANNOUNCE answer to a MAP, a short packet: not ours.
        assert_eq!(parse(&map_response(&[1; 12], 0), MAP, Some(&nonce)), None);
        assert_eq!(parse(&map_response(&nonce, 0), ANNOUNCE, None), None);
        assert_eq!(
            parse(&map_response(&nonce, 0)[..40], MAP, Some(&nonce)),
            None
        );
        // ANNOUNCE response: the header alone, with the epoch.
        let mut ann = vec![2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        ann.extend([0; 12]);
        assert_eq!(
            parse(&ann, ANNOUNCE, None),
            Some(Response::Announced { epoch: 256 })
        );
        // A NAT-PMP-only server answers "unsupported version" in its own format.
        assert_eq!(
            parse(&[0, 0x81, 0, 1, 0, 0, 0, 0], MAP, Some(&nonce)),
            Some(Response::NatPmpOnly)
        );
        assert!(result_text(12).contains("address mismatch"));
    }
}

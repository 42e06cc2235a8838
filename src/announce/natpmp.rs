//! NAT-PMP (RFC 6886) messages: the external address request and the TCP mapping request,
//! and their responses. Pure encoding and decoding; `port_control` sends them to the
//! gateway's port 5351.

use std::net::Ipv4Addr;

/// The server port of NAT-PMP and PCP (RFC 6886 §3.1, RFC 6887 §19.1).
pub const SERVER_PORT: u16 = 5351;

const VERSION: u8 = 0;
/// Opcode 0: external address; 2: map TCP (1 is UDP). Responses add 128.
const OP_EXTERNAL: u8 = 0;
const OP_MAP_TCP: u8 = 2;
const RESPONSE: u8 = 128;

/// Request for the gateway's external address (§3.2): version, opcode.
pub fn external_request() -> [u8; 2] {
    [VERSION, OP_EXTERNAL]
}

/// Request to map TCP `internal_port` (§3.3). A lifetime of 0 deletes the mapping, and
/// then the suggested external port must be 0 too.
pub fn map_request(internal_port: u16, suggested_external: u16, lifetime_secs: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = VERSION;
    b[1] = OP_MAP_TCP;
    // b[2..4]: reserved, zero.
    b[4..6].copy_from_slice(&internal_port.to_be_bytes());
    let suggested = if lifetime_secs == 0 {
        0
    } else {
        suggested_external
    };
    b[6..8].copy_from_slice(&suggested.to_be_bytes());
    b[8..12].copy_from_slice(&lifetime_secs.to_be_bytes());
    b
}

/// A decoded response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    External {
        epoch: u32,
        ip: Ipv4Addr,
    },
    Mapped {
        epoch: u32,
        internal_port: u16,
        external_port: u16,
        lifetime_secs: u32,
    },
    /// A non-zero result code (§3.5), with the epoch when the packet carried one.
    Failed {
        code: u16,
    },
}

/// Decodes a response to `request_opcode`; `None` for anything else (another opcode, a
/// short packet, a PCP packet).
pub fn parse(packet: &[u8], request_opcode: u8) -> Option<Response> {
    let (&version, &op) = (packet.first()?, packet.get(1)?);
    if version != VERSION || op != RESPONSE + request_opcode {
        return None;
    }
    let code = u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?);
    if code != 0 {
        return Some(Response::Failed { code });
    }
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(packet.get(i..i + 4)?.try_into().ok()?))
    };
    let u16_at = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes(packet.get(i..i + 2)?.try_into().ok()?))
    };
    let epoch = u32_at(4)?;
    match request_opcode {
        OP_EXTERNAL => Some(Response::External {
            epoch,
            ip: Ipv4Addr::from(u32_at(8)?),
        }),
        _ => Some(Response::Mapped {
            epoch,
            internal_port: u16_at(8)?,
            external_port: u16_at(10)?,
            lifetime_secs: u32_at(12)?,
        }),
    }
}

/// The opcodes callers pass to [`parse`].
pub const EXTERNAL: u8 = OP_EXTERNAL;
pub const MAP_TCP: u8 = OP_MAP_TCP;

/// The result codes of §3.5, as a sentence for the report.
pub fn result_text(code: u16) -> String {
    let what = match code {
        1 => "unsupported version",
        2 => "not authorized or refused (NAT-PMP may be off in the router)",
        3 => "network failure (the router has no public address yet)",
        4 => "out of resources (the router's mapping table is full)",
        5 => "unsupported opcode",
        _ => "unknown result code",
    };
    format!("NAT-PMP result {code}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_follow_the_rfc_layout() {
        // §3.2: version 0, opcode 0, nothing else.
        assert_eq!(external_request(), [0, 0]);
        // §3.3: version, opcode 2 (TCP), reserved, internal port, suggested external port,
        // requested lifetime (7200 s is the RFC's recommendation).
        assert_eq!(
            map_request(6287, 6287, 7200),
            [0, 2, 0, 0, 0x18, 0x8f, 0x18, 0x8f, 0, 0, 0x1c, 0x20]
        );
        // §3.4: a deletion asks for lifetime 0 and external port 0.
        assert_eq!(
            map_request(6287, 6287, 0),
            [0, 2, 0, 0, 0x18, 0x8f, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn responses_are_decoded_and_others_ignored() {
        // §3.2 response: version 0, opcode 128, result 0, epoch, external address.
        let ext = [0, 128, 0, 0, 0, 0, 0x0e, 0x10, 11, 0, 0, 1];
        assert_eq!(
            parse(&ext, EXTERNAL),
            Some(Response::External {
                epoch: 3600,
                ip: Ipv4Addr::new(11, 0, 0, 1)
            })
        );
        // §3.3 response: opcode 130, result, epoch, internal, mapped external, lifetime.
        let map = [
            0, 130, 0, 0, 0, 0, 0, 5, 0x18, 0x8f, 0x18, 0x90, 0, 0, 0x0e, 0x10,
        ];
        assert_eq!(
            parse(&map, MAP_TCP),
            Some(Response::Mapped {
                epoch: 5,
                internal_port: 6287,
                external_port: 6288,
                lifetime_secs: 3600
            })
        );
        // A refusal carries its result code.
        assert_eq!(
            parse(&[0, 130, 0, 2, 0, 0, 0, 9], MAP_TCP),
            Some(Response::Failed { code: 2 })
        );
        // The answer to another request, a truncated one, a PCP packet: not ours.
        assert_eq!(parse(&map, EXTERNAL), None);
        assert_eq!(parse(&map[..10], MAP_TCP), None);
        assert_eq!(parse(&[2, 0x81, 0, 0], MAP_TCP), None);
        assert!(result_text(2).contains("not authorized"));
    }
}

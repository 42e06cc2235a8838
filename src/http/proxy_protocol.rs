//! The PROXY protocol preface (HAProxy's, versions 1 and 2) on a listener configured with
//! `drive.*_client_identity = { mode = "proxy_protocol", trusted_proxies = [...] }`: the
//! load balancer in front opens each connection with a line (v1) or a binary header (v2)
//! that names the real client, before any TLS or HTTP. On such a listener only the trusted
//! proxies may connect, and each connection must start with a preface that names a TCP
//! client (v1 `UNKNOWN` and v2 `LOCAL` are refused, as the reference refuses them); the
//! client it names is who every per-address limit counts. Exactly the preface is read, so
//! the bytes after it reach TLS or HTTP untouched.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smol::io::AsyncReadExt;

/// The v2 signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most this long, CRLF included.
const V1_MAX: usize = 107;
/// A v2 header is at most this long, TLVs included.
pub const V2_MAX: usize = 4096;

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("PROXY preface: {why}"))
}

/// Reads one preface from `stream` and returns the client it names.
pub async fn read_client<S: smol::io::AsyncRead + Unpin>(stream: &mut S) -> io::Result<SocketAddr> {
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await?;
    match first[0] {
        b'P' => {
            let mut line = vec![b'P'];
            while !line.ends_with(b"\r\n") {
                if line.len() >= V1_MAX {
                    return Err(bad("v1 line too long"));
                }
                let mut b = [0u8; 1];
                stream.read_exact(&mut b).await?;
                line.push(b[0]);
            }
            parse_v1(&line)
        }
        b'\r' => {
            let mut head = [0u8; 16];
            head[0] = b'\r';
            stream.read_exact(&mut head[1..]).await?;
            let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
            if 16 + len > V2_MAX {
                return Err(bad("v2 header too long"));
            }
            let mut rest = vec![0u8; len];
            stream.read_exact(&mut rest).await?;
            parse_v2(&head, &rest)
        }
        _ => Err(bad("missing")),
    }
}

/// `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` → the source.
pub fn parse_v1(line: &[u8]) -> io::Result<SocketAddr> {
    let text = std::str::from_utf8(line).map_err(|_| bad("v1 is not text"))?;
    let text = text
        .strip_suffix("\r\n")
        .ok_or_else(|| bad("v1 without CRLF"))?;
    let parts: Vec<&str> = text.split(' ').collect();
    let [proxy, family, src, dst, sport, dport] = parts.as_slice() else {
        return Err(bad("v1 must name TCP4 or TCP6 addresses and ports"));
    };
    if *proxy != "PROXY" {
        return Err(bad("v1 must start with PROXY"));
    }
    let ip = |s: &str| s.parse::<IpAddr>().map_err(|_| bad("v1 address"));
    let (src, dst) = (ip(src)?, ip(dst)?);
    let fits = match *family {
        "TCP4" => src.is_ipv4() && dst.is_ipv4(),
        "TCP6" => src.is_ipv6() && dst.is_ipv6(),
        _ => return Err(bad("v1 family must be TCP4 or TCP6")),
    };
    if !fits {
        return Err(bad("v1 addresses do not match the family"));
    }
    let port = |s: &str| {
        // Ports are decimal without leading zeros or signs.
        if s.is_empty()
            || (s.len() > 1 && s.starts_with('0'))
            || !s.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad("v1 port"));
        }
        s.parse::<u16>().map_err(|_| bad("v1 port"))
    };
    let (sport, _) = (port(sport)?, port(dport)?);
    Ok(SocketAddr::new(src, sport))
}

/// The 16-byte v2 head and what follows it → the source.
pub fn parse_v2(head: &[u8; 16], rest: &[u8]) -> io::Result<SocketAddr> {
    if &head[..12] != V2_SIG {
        return Err(bad("v2 signature"));
    }
    match head[12] {
        0x21 => {}
        0x20 => return Err(bad("v2 LOCAL names no client")),
        _ => return Err(bad("v2 version or command")),
    }
    match head[13] {
        // TCP over IPv4: src, dst, sport, dport.
        0x11 if rest.len() >= 12 => {
            let src = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            Ok(SocketAddr::new(
                src.into(),
                u16::from_be_bytes([rest[8], rest[9]]),
            ))
        }
        // TCP over IPv6.
        0x21 if rest.len() >= 36 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&rest[..16]);
            let port = u16::from_be_bytes([rest[32], rest[33]]);
            Ok(SocketAddr::new(Ipv6Addr::from(a).into(), port))
        }
        0x11 | 0x21 => Err(bad("v2 address block too short")),
        _ => Err(bad("v2 must carry a TCP client")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, fam: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.push(cmd);
        h.push(fam);
        h.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    fn read(bytes: &[u8]) -> io::Result<(SocketAddr, Vec<u8>)> {
        smol::block_on(async {
            let mut cursor = smol::io::Cursor::new(bytes.to_vec());
            let client = read_client(&mut cursor).await?;
            let mut after = Vec::new();
            cursor.read_to_end(&mut after).await?;
            Ok((client, after))
        })
    }

    /// The examples of HAProxy's protocol description, and what follows is left unread.
    #[test]
    fn version_1_lines() {
        let (c, after) =
            read(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n").unwrap();
        assert_eq!(c, "192.168.0.1:56324".parse().unwrap());
        assert_eq!(after, b"GET / HTTP/1.1\r\n");
        let (c, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 6287\r\n").unwrap();
        assert_eq!(c, "[2001:db8::1]:65535".parse().unwrap());
        for bad in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
            b"PROXY TCP4 2001:db8::1 192.168.0.11 1 2\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 1 443\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(read(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
        assert!(read(long.as_bytes()).is_err());
    }

    #[test]
    fn version_2_headers() {
        // TCP over IPv4, 10.0.0.5:40000 → 10.0.0.1:6287, with a TLV after the addresses.
        let addrs = [10, 0, 0, 5, 10, 0, 0, 1, 0x9c, 0x40, 0x18, 0x8f];
        let tlv = [0x04, 0x00, 0x02, 0xab, 0xcd];
        let mut bytes = v2(0x21, 0x11, &addrs, &tlv);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (c, after) = read(&bytes).unwrap();
        assert_eq!(c, "10.0.0.5:40000".parse().unwrap());
        assert_eq!(after, b"\x16\x03\x01", "the TLS hello is untouched");
        let mut six = vec![0x20, 0x01, 0x0d, 0xb8];
        six.extend_from_slice(&[0; 11]);
        six.push(7);
        six.extend_from_slice(&[0; 16]);
        six.extend_from_slice(&[0x01, 0xbb, 0x18, 0x8f]);
        let (c, _) = read(&v2(0x21, 0x21, &six, &[])).unwrap();
        assert_eq!(c, "[2001:db8::7]:443".parse().unwrap());
        assert!(read(&v2(0x20, 0x00, &[], &[])).is_err(), "LOCAL");
        assert!(read(&v2(0x21, 0x12, &addrs, &[])).is_err(), "UDP");
        assert!(read(&v2(0x21, 0x11, &addrs[..8], &[])).is_err(), "short");
        assert!(
            read(&v2(0x11, 0x11, &addrs, &[])).is_err(),
            "version 1 in a v2 header"
        );
        let mut huge = v2(0x21, 0x11, &addrs, &[]);
        huge[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert!(read(&huge).is_err());
        let mut sig = v2(0x21, 0x11, &addrs, &[]);
        sig[5] = b'X';
        assert!(read(&sig).is_err());
    }
}

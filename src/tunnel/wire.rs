//! The two lines a relay link opens with, and the preface of each forwarded connection.
//!
//! The box dials the relay and completes a PubkyTLS handshake that must present the relay's
//! key (the relay is authenticated by TLS). The box then proves its own key with one line:
//!
//! ```text
//! PUBKY-EDGE-RELAY/1 <box key, z-base-32> <base64 ed25519 signature>\n
//! ```
//!
//! The signature covers [`CONTEXT`] followed by 32 bytes exported from this TLS session
//! (RFC 8446 §7.5, label [`EXPORTER_LABEL`]), so it cannot be replayed on another link. The
//! relay answers `OK <public port> <relay's public address or ->\n` or `NO <reason>\n`;
//! after `OK` the link carries yamux, and the relay opens one stream per forwarded client.
//! Each stream starts with a PROXY protocol v1 line naming the client, so the box counts
//! its limits per real client; the rest is that client's bytes, PubkyTLS end to end.
//!
//! The box may open one kind of stream itself: `CHECK <port>\n` asks the relay to connect
//! back to the address the link comes from, at that port, and complete a PubkyTLS handshake
//! with the box's key; the relay answers `OK <ip:port> <ms>\n`, `NO <reason>\n`, or
//! `BUSY\n` while another check of the same box runs.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};

use crate::pubkey::PublicKey;

pub const MAGIC: &str = "PUBKY-EDGE-RELAY/1";
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-pubky-edge-relay-link";
pub const CONTEXT: &[u8] = b"pubky-edge relay link v1\0";
/// Longest line either side reads before the link carries yamux.
pub const MAX_LINE: usize = 512;

fn signed_message(exported: &[u8; 32]) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(exported);
    m
}

/// The box's hello for this session.
pub fn hello(signing: &SigningKey, exported: &[u8; 32]) -> String {
    let sig = signing.sign(&signed_message(exported));
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(sig.to_bytes());
    format!(
        "{MAGIC} {} {b64}\n",
        PublicKey::from(signing.verifying_key())
    )
}

/// The key a hello proves, or why it proves nothing.
pub fn check_hello(line: &str, exported: &[u8; 32]) -> Result<PublicKey, String> {
    let mut parts = line.trim_end_matches('\n').split(' ');
    let (Some(MAGIC), Some(key), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a relay hello".into());
    };
    let key = PublicKey::parse_z32(key).map_err(|e| format!("the box's key: {e}"))?;
    let sig = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(sig)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or("the signature is not 64 bytes of base64")?;
    key.verifying_key()
        .verify(&signed_message(exported), &Signature::from_bytes(&sig))
        .map_err(|_| "the signature does not prove the key on this link".to_string())?;
    Ok(key)
}

/// The relay's answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Served: the public port, and the relay's public address when it knows it.
    Ok {
        port: u16,
        ip: Option<IpAddr>,
    },
    No(String),
}

impl Answer {
    pub fn line(&self) -> String {
        match self {
            Answer::Ok { port, ip } => match ip {
                Some(ip) => format!("OK {port} {ip}\n"),
                None => format!("OK {port} -\n"),
            },
            // A reason is one line of at most 200 characters.
            Answer::No(why) => {
                let why: String = why.replace(['\n', '\r'], " ").chars().take(200).collect();
                format!("NO {why}\n")
            }
        }
    }

    pub fn parse(line: &str) -> Result<Answer, String> {
        let line = line.trim_end_matches('\n');
        if let Some(why) = line.strip_prefix("NO ") {
            return Ok(Answer::No(why.to_string()));
        }
        let bad = || format!("not a relay answer: {line:?}");
        let rest = line.strip_prefix("OK ").ok_or_else(bad)?;
        let (port, ip) = rest.split_once(' ').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let ip = match ip {
            "-" => None,
            ip => Some(ip.parse().map_err(|_| bad())?),
        };
        if port == 0 {
            return Err(bad());
        }
        Ok(Answer::Ok { port, ip })
    }
}

/// The box's request for a connect-back check at its own `port`.
pub fn check_request(port: u16) -> String {
    format!("CHECK {port}\n")
}

pub fn parse_check_request(line: &str) -> Result<u16, String> {
    line.trim_end_matches('\n')
        .strip_prefix("CHECK ")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("not a check request: {line:?}"))
}

/// What the relay found when it connected back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// A PubkyTLS handshake with the box's key completed at `at` in `ms`.
    Reached {
        at: SocketAddr,
        ms: u64,
    },
    Failed(String),
    /// Another check of the same box is running: ask again later.
    Busy,
}

impl Checked {
    pub fn line(&self) -> String {
        match self {
            Checked::Reached { at, ms } => format!("OK {at} {ms}\n"),
            Checked::Failed(why) => Answer::No(why.clone()).line(),
            Checked::Busy => "BUSY\n".into(),
        }
    }

    pub fn parse(line: &str) -> Result<Checked, String> {
        let line = line.trim_end_matches('\n');
        if let Some(why) = line.strip_prefix("NO ") {
            return Ok(Checked::Failed(why.to_string()));
        }
        if line == "BUSY" {
            return Ok(Checked::Busy);
        }
        let bad = || format!("not a check answer: {line:?}");
        let (at, ms) = line
            .strip_prefix("OK ")
            .and_then(|r| r.split_once(' '))
            .ok_or_else(bad)?;
        Ok(Checked::Reached {
            at: at.parse().map_err(|_| bad())?,
            ms: ms.parse().map_err(|_| bad())?,
        })
    }
}

/// The PROXY protocol v1 line that opens a forwarded connection: `client` reached the
/// relay at `relay`.
pub fn proxy_line(client: SocketAddr, relay: SocketAddr) -> String {
    let (client, relay) = match (client, relay) {
        (SocketAddr::V6(c), SocketAddr::V4(r)) => {
            // Mixed families cannot be one v1 line; the client is what counts.
            (
                SocketAddr::V6(c),
                SocketAddr::new(r.ip().to_ipv6_mapped().into(), r.port()),
            )
        }
        (SocketAddr::V4(c), SocketAddr::V6(r)) => (
            SocketAddr::new(c.ip().to_ipv6_mapped().into(), c.port()),
            SocketAddr::V6(r),
        ),
        pair => pair,
    };
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        relay.ip(),
        client.port(),
        relay.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn a_hello_proves_the_key_on_its_own_session_only() {
        let (box_key, session) = (key(7), [3u8; 32]);
        let line = hello(&box_key, &session);
        assert!(line.starts_with("PUBKY-EDGE-RELAY/1 ") && line.ends_with('\n'));
        assert!(line.len() < MAX_LINE);
        assert_eq!(
            check_hello(&line, &session),
            Ok(PublicKey::from(box_key.verifying_key()))
        );
        // Replayed on another TLS session, the same line proves nothing.
        assert!(check_hello(&line, &[4u8; 32])
            .unwrap_err()
            .contains("does not prove"));
        // Another key named with this signature.
        let other = PublicKey::from(key(8).verifying_key());
        let sig = line.split(' ').nth(2).unwrap();
        let forged = format!("{MAGIC} {other} {sig}");
        assert!(check_hello(&forged, &session).is_err());
        assert!(check_hello("GET / HTTP/1.1\r\n", &session).is_err());
        assert!(check_hello(&format!("{MAGIC} {other} AAAA\n"), &session)
            .unwrap_err()
            .contains("64 bytes"));
    }

    #[test]
    fn answers_round_trip_and_bad_ones_are_refused() {
        for a in [
            Answer::Ok {
                port: 6290,
                ip: Some("203.0.113.5".parse().unwrap()),
            },
            Answer::Ok { port: 1, ip: None },
            Answer::Ok {
                port: 443,
                ip: Some("2001:db8::1".parse().unwrap()),
            },
            Answer::No("not a box this relay serves".into()),
        ] {
            assert_eq!(Answer::parse(&a.line()), Ok(a));
        }
        assert_eq!(
            Answer::No("two\nlines".into()).line(),
            "NO two lines\n".to_string()
        );
        for bad in [
            "OK",
            "OK 0 -",
            "OK 70000 -",
            "OK 5 nowhere",
            "HTTP/1.1 200 OK",
        ] {
            assert!(Answer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_requests_and_answers_round_trip() {
        assert_eq!(parse_check_request(&check_request(6287)), Ok(6287));
        for bad in [
            "CHECK 0\n",
            "CHECK\n",
            "CHECK 70000\n",
            "GET / HTTP/1.1\r\n",
        ] {
            assert!(parse_check_request(bad).is_err(), "{bad}");
        }
        for c in [
            Checked::Reached {
                at: "11.0.0.1:6287".parse().unwrap(),
                ms: 3,
            },
            Checked::Failed("connect to 12.0.0.1:6287: refused".into()),
            Checked::Busy,
        ] {
            assert_eq!(Checked::parse(&c.line()), Ok(c));
        }
        assert!(Checked::parse("OK nowhere 3").is_err());
        assert!(Checked::parse("OK 11.0.0.1:6287").is_err());
    }

    #[test]
    fn proxy_lines_parse_back_to_the_client() {
        use crate::http::proxy_protocol::parse_v1;
        let relay: SocketAddr = "203.0.113.5:6290".parse().unwrap();
        for client in ["198.51.100.7:50123", "[2001:db8::7]:50123"] {
            let client: SocketAddr = client.parse().unwrap();
            let line = proxy_line(client, relay);
            let parsed = parse_v1(line.as_bytes()).unwrap();
            assert_eq!(parsed.port(), client.port());
            let ip = match parsed.ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            assert_eq!(ip, client.ip());
        }
        assert_eq!(
            proxy_line("198.51.100.7:1".parse().unwrap(), relay),
            "PROXY TCP4 198.51.100.7 203.0.113.5 1 6290\r\n"
        );
    }
}

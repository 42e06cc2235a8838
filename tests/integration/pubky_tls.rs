//! PubkyTLS against a real rustls client that, like the SDK, accepts only a raw public key
//! equal to the one it expects (`tls::client_config`); and the listener's behaviour
//! under bad handshakes.

use crate::support as common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::Server;
use pubky_edge::pubkey::PublicKey;
use pubky_edge::tls::client_config;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

/// One HTTP/1.1 request over PubkyTLS; the whole response as text.
fn tls_request(
    addr: SocketAddr,
    key: &[u8; 32],
    sni: &str,
    request: &str,
) -> Result<String, std::io::Error> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let expected = PublicKey::from_bytes(*key).unwrap();
    let conn = ClientConnection::new(client_config(&expected), name).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[test]
fn serves_http_over_tls_with_the_homeserver_key_for_the_sdk_server_names() {
    let s = Server::start("");
    let key = *s.pk.as_bytes();
    let hs = s.pk.to_string();
    let r = tls_request(s.tls_addr, &key, &hs, &get("/info", &hs)).unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("path-addressed-storage"), "{r}");

    // A user-addressed request: SNI and Host `_pubky.<user>`.
    let u = common::new_user(&s);
    s.req("PUT", &s.storage_url(&u.pk, "/pub/a.txt"))
        .bearer(&u.token)
        .body("over tls")
        .send();
    let host = format!("_pubky.{}", u.pk);
    let r = tls_request(s.tls_addr, &key, &host, &get("/pub/a.txt", &host)).unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("over tls"), "{r}");
}

#[test]
fn a_client_expecting_another_key_refuses_the_server() {
    let s = Server::start("");
    let other = *common::pk_of(&common::random_key()).as_bytes();
    let hs = s.pk.to_string();
    let e = tls_request(s.tls_addr, &other, &hs, &get("/info", &hs)).unwrap_err();
    assert!(
        e.to_string().contains("certificate") || e.to_string().contains("Certificate"),
        "{e}"
    );
}

#[test]
fn wrong_server_names_are_refused_in_the_handshake() {
    let s = Server::start("");
    let key = *s.pk.as_bytes();
    for sni in [
        "example.com",
        &common::pk_of(&common::random_key()).to_string(),
        &format!("www.{}", s.pk),
    ] {
        let e = tls_request(s.tls_addr, &key, sni, &get("/info", sni));
        assert!(e.is_err(), "{sni} must be refused: {e:?}");
    }
    // And the listener is unaffected.
    let hs = s.pk.to_string();
    let r = tls_request(s.tls_addr, &key, &hs, &get("/", &hs)).unwrap();
    assert!(r.contains("Pubky Homeserver"), "{r}");
}

#[test]
fn garbage_and_stalled_handshakes_do_not_affect_other_connections() {
    let s = Server::start("[limits]\nheader_read_timeout_ms = 1500\n");
    let key = *s.pk.as_bytes();
    let hs = s.pk.to_string();

    // A connection that never sends a ClientHello, held open throughout.
    let stalled = TcpStream::connect(s.tls_addr).unwrap();
    // Plain HTTP and random bytes on the TLS port are answered with a close.
    for junk in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        (0..600u32).map(|i| (i * 7919 % 251) as u8).collect(),
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01],
    ] {
        let mut c = TcpStream::connect(s.tls_addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(&junk).unwrap();
        let mut buf = [0u8; 512];
        let n = loop {
            match c.read(&mut buf) {
                Ok(0) => break 0,
                Ok(n) => {
                    // A TLS alert record (content type 21) may precede the close.
                    assert_eq!(buf[0], 21, "only an alert may be sent back");
                    let _ = n;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break 0,
                Err(e) => panic!("connection not closed: {e}"),
            }
        };
        assert_eq!(n, 0);
    }
    // Others are served meanwhile.
    for _ in 0..5 {
        let r = tls_request(s.tls_addr, &key, &hs, &get("/info", &hs)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    // The stalled one is closed by the handshake timeout (1.5 s; the read would give up
    // with an error after 10 s).
    let mut stalled = stalled;
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = stalled.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
}

/// Behind a TCP load balancer speaking PROXY protocol, the preface comes before the TLS
/// hello and the handshake (with the homeserver's key) follows untouched; without the
/// preface the listener closes the connection.
#[test]
fn pubky_tls_behind_a_proxy_protocol_preface() {
    let s = Server::start(
        "[drive]\npubky_client_identity = { mode = \"proxy_protocol\", trusted_proxies = [\"127.0.0.1\"] }\n",
    );
    let key = *s.pk.as_bytes();
    let hs = s.pk.to_string();
    let name = ServerName::try_from(hs.clone()).unwrap();
    let conn = ClientConnection::new(client_config(&s.pk), name).unwrap();
    let mut tcp = TcpStream::connect(s.tls_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Version 2, TCP over IPv4, client 198.51.100.7:50000.
    let mut preface = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    preface.extend_from_slice(&[198, 51, 100, 7, 127, 0, 0, 1, 0xc3, 0x50, 0x18, 0x8f]);
    tcp.write_all(&preface).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(get("/info", &hs).as_bytes()).unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).unwrap();
    let r = String::from_utf8_lossy(&out);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        tls_request(s.tls_addr, &key, &hs, &get("/info", &hs)).is_err(),
        "a handshake without the preface is closed"
    );
}

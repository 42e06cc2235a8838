//! The server's protective limits and lifecycle against the real app: oversized heads and
//! bodies, the connection cap, slow clients, and graceful shutdown letting an in-flight
//! upload finish while new connections are refused.

use crate::support as common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

#[test]
fn oversized_header_is_rejected_and_server_keeps_serving() {
    let s = Server::start("[limits]\nmax_header_bytes = 8192\n");
    let big = "a".repeat(20_000);
    let raw = format!("GET /info HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = c.write_all(raw.as_bytes());
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "oversized head got: {text}"
    );
    assert_eq!(s.req("GET", "/info").send().status, 200);
}

#[test]
fn upload_limit_is_enforced_while_streaming() {
    let s = Server::start("[storage]\nmax_upload_mb = 1\n");
    let u = new_user(&s);
    let url = s.storage_url(&u.pk, "/pub/big");
    let r = s
        .req("PUT", &url)
        .bearer(&u.token)
        .body(vec![1u8; (1 << 20) + 1])
        .send();
    assert_eq!(r.status, 413, "{}", r.text());
    // chunked upload without a length is cut off too
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "PUT {url} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        u.token
    );
    c.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'z'; 64 * 1024];
    for _ in 0..20 {
        if c.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || c.write_all(&chunk).is_err()
            || c.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = c.write_all(b"0\r\n\r\n");
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let resp = parse_response(&buf, false).expect("a response");
    assert_eq!(resp.status, 413);
    assert_eq!(s.req("GET", &url).send().status, 404);
}

#[test]
fn connection_cap_answers_503() {
    let s = Server::start("[limits]\nmax_connections = 2\nmax_connections_per_ip = 2\n");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(s.addr).unwrap();
        // a complete request keeps the connection registered and alive
        c.write_all(b"GET /info HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(c);
    }
    let r = s.req("GET", "/info").send();
    assert_eq!(r.status, 503);
    drop(held);
    // slots free up again once the held connections are gone
    let mut ok = false;
    for _ in 0..200 {
        if s.req("GET", "/info").send().status == 200 {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ok, "connection slots were not released");
}

#[test]
fn slow_header_client_is_disconnected() {
    let s = Server::start("[limits]\nheader_read_timeout_ms = 300\n");
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"GET /info HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .unwrap();
    let mut buf = Vec::new();
    let n = c.read_to_end(&mut buf);
    assert!(
        n.is_ok(),
        "the server should close, not leave the client hanging"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(s.req("GET", "/info").send().status, 200);
}

#[test]
fn graceful_shutdown_finishes_in_flight_upload() {
    let s = Server::start("");
    let u = new_user(&s);
    let url = s.storage_url(&u.pk, "/pub/inflight.bin");
    let addr = s.addr;
    let dir = s.data_dir.clone();
    let body = vec![9u8; 200_000];
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "PUT {url} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n",
        u.token,
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body[..1000]).unwrap();
    // give the server time to start handling the request
    std::thread::sleep(Duration::from_millis(200));
    let stopper = std::thread::spawn(move || s.stop());
    // new connections are refused (or closed without an answer) once draining started
    let mut refused = false;
    for _ in 0..200 {
        match TcpStream::connect(addr) {
            Err(_) => {
                refused = true;
                break;
            }
            Ok(mut n) => {
                n.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = n.write_all(b"GET /info HTTP/1.1\r\nhost: x\r\n\r\n");
                let mut b = Vec::new();
                if n.read_to_end(&mut b).map(|_| b.is_empty()).unwrap_or(true) {
                    refused = true;
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(refused, "new connections were still served during shutdown");
    c.write_all(&body[1000..]).unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    let resp = parse_response(&buf, false).expect("response");
    assert_eq!(resp.status, 201);
    let tmp = stopper.join().unwrap();
    let s2 = Server::start_in(&dir, "");
    let r = s2.req("GET", &url).send();
    assert_eq!(r.body, body);
    drop(s2);
    drop(tmp);
}

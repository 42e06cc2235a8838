//! The accept loop and its limits, exercised over real loopback sockets.

use crate::support::transport as common;

use std::io::Write;
use std::time::Duration;

use common::{limits, Client, TestServer};
use hyper::{Response, StatusCode};
use pubky_edge::http::{read_limited, Body, BodyError};

const DRAIN: Duration = Duration::from_secs(5);

fn ok_server(limits: pubky_edge::http::ServerLimits) -> TestServer {
    TestServer::start(limits, DRAIN, |req, _info| async move {
        Response::new(Body::from(format!("hello {}", req.uri().path())))
    })
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let server = ok_server(limits());
    let mut client = Client::connect(server.addr).unwrap();
    let first = client.get("/a");
    let second = client.get("/b?token=secret");
    assert_eq!(
        (first.status, first.body.as_slice()),
        (200, &b"hello /a"[..])
    );
    assert_eq!(
        (second.status, second.body.as_slice()),
        (200, &b"hello /b"[..])
    );
    assert!(!second.closes());
    assert_eq!(server.stats.accepted(), 1);
}

#[test]
fn slow_header_is_closed_after_header_read_timeout() {
    let server = ok_server(common::ServerLimitsExt::with(limits(), |l| {
        l.header_read_timeout = Duration::from_millis(200)
    }));
    let mut client = Client::connect(server.addr).unwrap();
    client.send(b"GET / HTTP/1.1\r\nHost: te").unwrap();
    client.expect_closed();
}

#[test]
fn oversized_header_gets_431_and_close() {
    let server = ok_server(common::ServerLimitsExt::with(limits(), |l| {
        l.max_header_bytes = 4096
    }));
    let mut client = Client::connect(server.addr).unwrap();
    let big = "x".repeat(6000);
    let req = format!("GET / HTTP/1.1\r\nHost: test\r\nX-Big: {big}\r\n\r\n");
    client.send(req.as_bytes()).unwrap();
    let resp = client.read_response();
    assert_eq!(resp.status, 431);
    client.expect_closed();

    // Just under the limit is still served.
    let mut client = Client::connect(server.addr).unwrap();
    let fits = "y".repeat(3000);
    let req = format!("GET / HTTP/1.1\r\nHost: test\r\nX-Big: {fits}\r\n\r\n");
    client.send(req.as_bytes()).unwrap();
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn connection_over_the_cap_gets_503_and_close() {
    let server = ok_server(common::ServerLimitsExt::with(limits(), |l| {
        l.max_connections = 2
    }));
    let mut a = Client::connect(server.addr).unwrap();
    let mut b = Client::connect(server.addr).unwrap();
    assert_eq!(a.get("/").status, 200);
    assert_eq!(b.get("/").status, 200);

    let mut c = Client::connect(server.addr).unwrap();
    let refused = c.get("/");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.closes());
    c.expect_closed();
    assert_eq!(server.stats.refused(), 1);

    // A freed slot is usable again.
    drop(a);
    server.wait_until("a slot to free up", |s| s.stats.live() < 2);
    let mut d = Client::connect(server.addr).unwrap();
    assert_eq!(d.get("/").status, 200);
    assert_eq!(b.get("/").status, 200);
}

#[test]
fn max_requests_per_connection_closes_after_the_last() {
    let server = ok_server(common::ServerLimitsExt::with(limits(), |l| {
        l.max_requests_per_connection = 3
    }));
    let mut client = Client::connect(server.addr).unwrap();
    assert!(!client.get("/1").closes());
    assert!(!client.get("/2").closes());
    let third = client.get("/3");
    assert_eq!(third.status, 200);
    assert!(third.closes());
    client.expect_closed();
}

#[test]
fn file_body_streams_with_exact_content_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    // Not a multiple of the 64 KiB chunk, so the last chunk is short.
    let data: Vec<u8> = (0..200_003u32).map(|i| (i % 253) as u8).collect();
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&data)
        .unwrap();

    let served = path.clone();
    let server = TestServer::start(limits(), DRAIN, move |_req, _info| {
        let path = served.clone();
        async move {
            let file = std::fs::File::open(&path).unwrap();
            let len = file.metadata().unwrap().len();
            Response::new(Body::file(file, len))
        }
    });
    let mut client = Client::connect(server.addr).unwrap();
    let resp = client.get("/blob");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("200003"));
    assert!(resp.header("transfer-encoding").is_none());
    assert!(resp.body == data, "streamed bytes differ from the file");
    // The connection stays usable after a streamed body.
    assert_eq!(client.get("/blob").body.len(), data.len());
}

#[test]
fn read_limited_refuses_bodies_over_the_limit() {
    let server = TestServer::start(limits(), DRAIN, |req, _info| async move {
        let pace = pubky_edge::limits::body::BodyPace {
            idle: Duration::from_secs(5),
            min_rate: 0,
        };
        let (status, body) = match read_limited(req.into_body(), 16, pace).await {
            Ok(bytes) => (StatusCode::OK, Body::from(bytes)),
            Err(BodyError::TooLarge) => (StatusCode::PAYLOAD_TOO_LARGE, Body::Empty),
            Err(BodyError::Broken(_)) => (StatusCode::BAD_REQUEST, Body::Empty),
            Err(BodyError::TooSlow) => (StatusCode::REQUEST_TIMEOUT, Body::Empty),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        resp
    });
    let post = |head: &str, body: &[u8]| {
        let mut client = Client::connect(server.addr).unwrap();
        let mut req = format!("POST /echo HTTP/1.1\r\nHost: test\r\n{head}\r\n").into_bytes();
        req.extend_from_slice(body);
        client.send(&req).unwrap();
        client.read_response()
    };

    // Declared too large: refused without reading.
    let declared = post("Content-Length: 100\r\n", &[b'a'; 100]);
    assert_eq!(declared.status, 413);
    // Chunked, no declared length: refused once the running total passes 16.
    let chunked = post(
        "Transfer-Encoding: chunked\r\n",
        b"a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 413);
    // Within the limit: collected whole.
    let small = post("Content-Length: 5\r\n", b"hello");
    assert_eq!((small.status, small.body.as_slice()), (200, &b"hello"[..]));
    let exact = post(
        "Transfer-Encoding: chunked\r\n",
        b"10\r\n0123456789abcdef\r\n0\r\n\r\n",
    );
    assert_eq!(exact.body, b"0123456789abcdef");
}

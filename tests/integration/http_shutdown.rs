//! Graceful shutdown of `serve`: in-flight requests finish, idle and new connections do not
//! get served, and the drain deadline bounds how long stragglers can hold the server.

use crate::support::transport as common;

use std::time::Duration;

use common::{limits, Client, TestServer};
use hyper::Response;
use pubky_edge::http::Body;
use smol::channel;

/// `/slow` reports that it started, then waits for the test to release it; anything else
/// answers at once.
fn gated_server(drain: Duration) -> (TestServer, channel::Receiver<()>, channel::Sender<()>) {
    let (started_tx, started_rx) = channel::unbounded::<()>();
    let (release_tx, release_rx) = channel::unbounded::<()>();
    let server = TestServer::start(limits(), drain, move |req, _info| {
        let started = started_tx.clone();
        let release = release_rx.clone();
        async move {
            if req.uri().path() == "/slow" {
                let _ = started.send(()).await;
                let _ = release.recv().await;
            }
            Response::new(Body::from("done"))
        }
    });
    (server, started_rx, release_tx)
}

/// A connection made now must not be served: the connect fails, or the socket is closed
/// without an answer.
fn assert_not_served(addr: std::net::SocketAddr) {
    let Ok(mut late) = Client::connect(addr) else {
        return;
    };
    // The write may already fail if the server closed the socket; either way no answer.
    let _ = late.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    late.expect_closed();
}

#[test]
fn in_flight_request_completes_and_new_connections_are_refused() {
    let (mut server, started, release) = gated_server(Duration::from_secs(30));
    let mut idle = Client::connect(server.addr).unwrap();
    assert_eq!(idle.get("/").status, 200);

    let mut busy = Client::connect(server.addr).unwrap();
    busy.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    started.recv_blocking().unwrap();

    server.shutdown.trigger();
    // The idle keep-alive connection is closed by the drain...
    idle.expect_closed();
    // ...and nothing new is served once shutdown has begun.
    assert_not_served(server.addr);

    // The request that was already running still gets its full answer.
    release.send_blocking(()).unwrap();
    let resp = busy.read_response();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"done"[..]));
    // Whether that response already says `Connection: close` depends on which of "handler
    // done" and "shutdown seen" the connection task notices first; either way it then closes.
    busy.expect_closed();

    server.join().unwrap();
    assert_eq!(server.stats.live(), 0);
}

#[test]
fn drain_deadline_drops_stuck_connections_and_serve_returns() {
    // The release sender is kept alive but never used: the handler never finishes.
    let (mut server, started, _release) = gated_server(Duration::from_millis(50));
    let mut stuck = Client::connect(server.addr).unwrap();
    stuck
        .send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    started.recv_blocking().unwrap();

    server.shutdown.trigger();
    server.join().unwrap();
    assert_eq!(server.stats.live(), 0);
    stuck.expect_closed();
}

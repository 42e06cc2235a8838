//! Events against a real server on loopback: the `/events/` feed and the SSE stream —
//! cursors, filters, modes, validation, private events, limits and live delivery.

use crate::support as common;

use std::time::Duration;

use common::sse::{Item, Sse};
use common::*;

const WAIT: Duration = Duration::from_secs(10);

fn del(s: &Server, u: &User, path: &str) {
    let r = s
        .req("DELETE", &s.storage_url(&u.pk, path))
        .bearer(&u.token)
        .send();
    assert_eq!(r.status, 204, "DELETE {path}: {}", r.text());
}

fn sse(s: &Server, query: &str) -> Sse {
    Sse::open(s.addr, &format!("/events-stream?{query}"), &[])
}

#[test]
fn feed_pages_public_events_of_all_users() {
    let s = Server::start("");
    let u = new_user(&s);
    let paths = [
        "/pub/a.com/a.txt",
        "/pub/example.com/a.txt",
        "/pub/example.com/b.txt",
        "/pub/example.com/c.txt",
        "/pub/example.com/d.txt",
        "/pub/example.xyz/d.txt",
        "/pub/example.xyz",
        "/pub/file",
        "/pub/file2",
        "/pub/z.com/a.txt",
    ];
    for p in paths {
        put_file(&s, &u, p, b"x");
        del(&s, &u, p);
        put_file(&s, &u, "/priv/secret.txt", b"x");
    }
    let r = s.req("GET", "/events/?limit=10").send();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let lines = r.lines();
    assert_eq!(lines.len(), 11);
    for (i, p) in paths[..5].iter().enumerate() {
        assert_eq!(lines[2 * i], format!("PUT pubky://{}{p}", u.pk));
        assert_eq!(lines[2 * i + 1], format!("DEL pubky://{}{p}", u.pk));
    }
    assert!(!r.text().ends_with('\n'));
    let cursor = lines[10].strip_prefix("cursor: ").unwrap().to_string();
    let r = s
        .req("GET", &format!("/events/?limit=10&cursor={cursor}"))
        .send();
    let lines = r.lines();
    assert_eq!(lines.len(), 11);
    assert_eq!(lines[0], format!("PUT pubky://{}{}", u.pk, paths[5]));
    assert!(!r.text().contains("/priv/"));
    // past the end: empty body, no cursor line
    let last = lines[10].strip_prefix("cursor: ").unwrap();
    let r = s.req("GET", &format!("/events/?cursor={last}")).send();
    assert_eq!((r.status, r.text()), (200, String::new()));
    assert_eq!(s.req("GET", "/events/?limit=0").send().text(), "");
    assert_eq!(s.req("GET", "/events/?cursor=").send().lines().len(), 21);
    for bad in ["cursor=abc", "cursor=-1", "reverse=maybe"] {
        let r = s.req("GET", &format!("/events/?{bad}")).send();
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(s.req("POST", "/events/").send().status, 405);
}

#[test]
fn stream_batches_limits_reverse_and_headers() {
    let s = Server::start("");
    let u = new_user(&s);
    for i in 0..120 {
        put_file(&s, &u, &format!("/pub/f/{i:03}"), format!("{i}").as_bytes());
    }
    for i in 0..5 {
        del(&s, &u, &format!("/pub/f/{i:03}"));
    }
    let mut all = sse(&s, &format!("user={}", u.pk));
    assert_eq!(all.status, 200);
    assert_eq!(all.header("content-type"), Some("text/event-stream"));
    assert_eq!(all.header("cache-control"), Some("no-store"));
    assert!(all
        .header("vary")
        .unwrap()
        .contains("pubky-host, Authorization, Cookie"));
    let events = all.collect();
    assert_eq!(events.len(), 125);
    assert!(events[..120].iter().all(|e| e.kind == "PUT"));
    assert!(events[120..]
        .iter()
        .all(|e| e.kind == "DEL" && e.field("content_hash: ").is_none()));
    assert!(events.windows(2).all(|w| w[0].cursor() < w[1].cursor()));
    // content hash = the ETag without quotes
    let head = s.req("HEAD", &s.storage_url(&u.pk, "/pub/f/119")).send();
    let etag = head.header("etag").unwrap().trim_matches('"').to_string();
    assert_eq!(events[119].field("content_hash: "), Some(etag.as_str()));
    assert_eq!(events[0].uri(), format!("pubky://{}/pub/f/000", u.pk));

    let fifty = sse(&s, &format!("user={}&limit=50", u.pk)).collect();
    assert_eq!(fifty, events[..50].to_vec());
    let fwd = sse(&s, &format!("user={}&limit=5", u.pk)).collect();
    let rev = sse(&s, &format!("user={}&limit=5&reverse=true", u.pk)).collect();
    let newest: Vec<_> = events.iter().rev().take(5).cloned().collect();
    assert_eq!(rev, newest);
    assert_eq!(fwd, events[..5].to_vec());
    // reverse from a cursor: strictly older events
    let c = events[10].cursor();
    let older = sse(&s, &format!("user={}:{c}&reverse=1", u.pk)).collect();
    assert_eq!(older.len(), 10);
    assert_eq!(older[0], events[9]);
    // a cursor past the end is valid and yields nothing
    assert!(sse(&s, &format!("user={}:999999999", u.pk))
        .collect()
        .is_empty());
}

#[test]
fn stream_validation_in_order() {
    let s = Server::start("");
    let u = new_user(&s);
    let stranger = pk_of(&random_key());
    let status = |q: &str| {
        let r = sse(&s, q);
        (r.status, r.error_body.clone())
    };
    assert_eq!(status(""), (400, "user parameter is required".into()));
    let many: String = (0..51)
        .map(|_| format!("user={}&", pk_of(&random_key())))
        .collect();
    assert_eq!(
        status(&many),
        (400, "Too many users. Maximum allowed: 50".into())
    );
    assert_eq!(
        status("user=nope"),
        (400, "Invalid public key: nope".into())
    );
    assert_eq!(status(&format!("user={}&user=nope", u.pk)).0, 400);
    assert_eq!(
        status(&format!("user={}&user={stranger}", u.pk)),
        (404, "Not Found".into())
    );
    assert_eq!(
        status(&format!("user={}&live=true&reverse=true", u.pk)).1,
        "Cannot use live mode with reverse ordering"
    );
    assert_eq!(
        status(&format!("user={}:abc123xyz", u.pk)),
        (400, "Invalid cursor: abc123xyz".into())
    );
    assert_eq!(status(&format!("user={}:-100", u.pk)).0, 400);
    assert_eq!(status(&format!("user={}&limit=0", u.pk)).0, 400);
    assert_eq!(status(&format!("user={}&path=/pub/../..", u.pk)).0, 400);
    assert_eq!(status(&format!("user={}&path=/", u.pk)).0, 403);
    // the unknown user is found before its malformed cursor
    assert_eq!(status(&format!("user={stranger}:abc")).0, 404);
    assert_eq!(
        s.req("HEAD", &format!("/events-stream?user={}", u.pk))
            .send()
            .status,
        405
    );
    let r = s
        .req("POST", &format!("/events-stream?user={}", u.pk))
        .send();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

#[test]
fn path_filters_are_literal_subtrees_or_files() {
    let s = Server::start("");
    let u = new_user(&s);
    let v = new_user(&s);
    put_file(&s, &u, "/pub/my_folder/file.txt", b"1");
    put_file(&s, &u, "/pub/myfolder/file.txt", b"2");
    put_file(&s, &v, "/pub/my_folder/other.txt", b"3");
    put_file(&s, &u, "/pub/test.txt", b"4");
    put_file(&s, &u, "/pub/test.txt2", b"5");
    let e = sse(&s, &format!("user={}&path=/pub/my_folder/", u.pk)).collect();
    assert_eq!(e.len(), 1);
    assert!(e[0].uri().ends_with("/pub/my_folder/file.txt"));
    let e = sse(&s, &format!("user={}&path=pub/test.txt&path=", u.pk)).collect();
    assert_eq!(e.len(), 1);
    // two users: the union in id order, each from its own cursor
    let both = sse(
        &s,
        &format!("user={}&user={}&path=/pub/my_folder/", u.pk, v.pk),
    )
    .collect();
    assert_eq!(both.len(), 2);
    assert!(both[0].cursor() < both[1].cursor());
    let first = both[0].cursor();
    let later = sse(
        &s,
        &format!("user={}:{first}&user={}&path=/pub/my_folder/", u.pk, v.pk),
    )
    .collect();
    assert_eq!(later, both[1..].to_vec());
}

#[test]
fn live_mode_replays_then_pushes_new_writes() {
    let s = Server::start("");
    let u = new_user(&s);
    let quiet = new_user(&s);
    for i in 0..3 {
        put_file(&s, &u, &format!("/pub/{i}"), b"x");
    }
    let all = sse(&s, &format!("user={}", u.pk)).collect();
    let mut live = sse(&s, &format!("user={}:{}&live=true", u.pk, all[0].cursor()));
    assert_eq!(live.next_event(WAIT).unwrap(), all[1]);
    assert_eq!(live.next_event(WAIT).unwrap(), all[2]);
    put_file(&s, &u, "/pub/new", b"fresh");
    let e = live.next_event(WAIT).unwrap();
    assert_eq!(
        (e.kind.as_str(), e.uri()),
        ("PUT", format!("pubky://{}/pub/new", u.pk).as_str())
    );
    // other users' writes and private writes are not delivered
    put_file(&s, &quiet, "/pub/other", b"x");
    put_file(&s, &u, "/priv/hidden", b"x");
    del(&s, &u, "/pub/new");
    let e = live.next_event(WAIT).unwrap();
    assert_eq!(e.kind, "DEL");

    // batch mode on a user with no events closes at once; live waits for the first one
    assert!(sse(&s, &format!("user={}", quiet.pk)).collect().len() == 1);
    let empty = new_user(&s);
    assert!(sse(&s, &format!("user={}", empty.pk)).collect().is_empty());
    let mut waiting = sse(&s, &format!("user={}&live=1&limit=1", empty.pk));
    assert!(waiting.next(Duration::from_millis(200)).is_none());
    assert!(!waiting.closed);
    put_file(&s, &empty, "/pub/first", b"x");
    assert_eq!(waiting.next_event(WAIT).unwrap().kind, "PUT");
    // limit reached: the server ends the stream
    assert!(waiting.next(WAIT).is_none());
    assert!(waiting.closed);
}

#[test]
fn keep_alive_comments_and_stream_cap() {
    let s =
        Server::start("[events]\nkeep_alive_ms = 100\nmax_streams = 2\nmax_streams_per_ip = 2\n");
    let u = new_user(&s);
    let mut a = sse(&s, &format!("user={}&live=true", u.pk));
    assert_eq!(a.next(WAIT), Some(Item::Comment));
    let b = sse(&s, &format!("user={}&live=true", u.pk));
    assert_eq!(b.status, 200);
    let c = sse(&s, &format!("user={}&live=true", u.pk));
    assert_eq!(c.status, 503);
    assert!(c.header("retry-after").is_some());
    drop(b);
    // the slot frees once the server notices the closed connection (next keep-alive)
    let mut ok = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(50));
        let d = sse(&s, &format!("user={}&live=true", u.pk));
        if d.status == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "slot was not released");
    // metrics counted the refusal
    assert!(a.next(WAIT).is_some());
}

#[test]
fn private_events_need_the_owners_session() {
    let s = Server::start("");
    let u = new_user(&s);
    let v = new_user(&s);
    put_file(&s, &u, "/pub/p.txt", b"1");
    put_file(&s, &u, "/priv/app/a.txt", b"2");
    put_file(&s, &u, "/priv/other/b.txt", b"3");
    let q = format!("user={}&path=/priv/app/", u.pk);
    assert_eq!(sse(&s, &q).status, 401);
    let bearer = |t: &str| format!("Bearer {t}");
    let with = |q: &str, t: &str| {
        Sse::open(
            s.addr,
            &format!("/events-stream?{q}"),
            &[("authorization", &bearer(t))],
        )
    };
    assert_eq!(with(&q, &v.token).status, 403);
    let two = format!("user={}&user={}&path=/priv/app/", u.pk, v.pk);
    assert_eq!(with(&two, &u.token).status, 403);
    let mut own = with(&q, &u.token);
    assert_eq!(own.status, 200);
    let e = own.collect();
    assert_eq!(e.len(), 1);
    assert!(e[0].uri().ends_with("/priv/app/a.txt"));
    let union = with(&format!("{q}&path=/pub/"), &u.token).collect();
    assert_eq!(union.len(), 2);
    // a session scoped elsewhere cannot read /priv/app/
    let narrow = signin(&s, &u.key, "/priv/other/:r");
    assert_eq!(with(&q, &narrow).status, 403);
    // the public default never includes private events
    assert_eq!(sse(&s, &format!("user={}", u.pk)).collect().len(), 1);
}

#[test]
fn stalled_reader_is_dropped_without_holding_writers() {
    let s = Server::start("[limits]\nwrite_stall_timeout_ms = 300\n");
    let u = new_user(&s);
    let big = vec![7u8; 32 << 20];
    put_file(&s, &u, "/pub/big", &big);
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    c.write_all(format!("GET /storage/{}/pub/big HTTP/1.1\r\nhost: x\r\n\r\n", u.pk).as_bytes())
        .unwrap();
    // The reader stalls; a writer is not held up meanwhile.
    put_file(&s, &u, "/pub/small", b"x");
    std::thread::sleep(Duration::from_millis(1500));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < big.len(), "the stalled connection was not dropped");
}

#[test]
fn private_stream_closes_when_its_grant_is_revoked() {
    let s = Server::start("");
    let u = new_user(&s);
    let other = signin(&s, &u.key, "/:rw");
    let auth = format!("Bearer {other}");
    let mut live = Sse::open(
        s.addr,
        &format!("/events-stream?user={}&path=/priv/&live=true", u.pk),
        &[("authorization", &auth)],
    );
    assert_eq!(live.status, 200);
    put_file(&s, &u, "/priv/a", b"x");
    assert_eq!(live.next_event(WAIT).unwrap().kind, "PUT");
    let r = s.req("DELETE", "/auth/grant/session").bearer(&other).send();
    assert_eq!(r.status, 200);
    assert!(live.next(WAIT).is_none());
    assert!(live.closed, "stream still open after revocation");
    // a public stream is not tied to credentials
    let mut public = sse(&s, &format!("user={}&live=true", u.pk));
    put_file(&s, &u, "/pub/b", b"x");
    assert_eq!(public.next_event(WAIT).unwrap().kind, "PUT");
}

#[test]
fn shutdown_ends_live_streams_cleanly() {
    let s = Server::start("[limits]\nshutdown_drain_ms = 60000\n");
    let u = new_user(&s);
    let mut live = sse(&s, &format!("user={}&live=true", u.pk));
    assert_eq!(live.status, 200);
    let _dir = s.stop();
    assert!(live.next(WAIT).is_none());
    assert!(live.ended_cleanly, "the stream was cut, not ended");
}

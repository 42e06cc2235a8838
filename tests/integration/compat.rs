//! Small things tools of the reference homeserver notice: HEAD on `/info` and `/events/`,
//! cache headers on every `/events-stream` answer, legacy timestamp cursors and `pubky://`
//! users, the admin's 405s and `version`, the reference's metric series.

use crate::support as common;

use common::{new_user, put_file, Server};

/// The text form of a Pubky timestamp (Crockford base32 of the big-endian bytes).
fn timestamp(micros: u64) -> String {
    const A: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bits = u128::from(micros) << 1;
    (0..13)
        .rev()
        .map(|i| A[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn head_on_info_and_the_feed() {
    let s = Server::start("");
    let r = s.req("HEAD", "/info").send();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = s.req("HEAD", "/events/").send();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(s.req("POST", "/events/").send().status, 405);
}

#[test]
fn every_stream_answer_is_uncacheable() {
    let s = Server::start("");
    let u = new_user(&s);
    let check = |r: &common::Resp, status: u16| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("vary"), Some("pubky-host, Authorization, Cookie"));
    };
    check(&s.req("GET", "/events-stream").send(), 400);
    check(&s.req("HEAD", "/events-stream").send(), 405);
    let unknown = common::pk_of(&common::random_key());
    check(
        &s.req("GET", &format!("/events-stream?user={unknown}"))
            .send(),
        404,
    );
    let private = format!("/events-stream?user={}&path=/priv/", u.pk);
    check(&s.req("GET", &private).send(), 401);
    let ok = format!("/events-stream?user={}", u.pk);
    check(&s.req("GET", &ok).send(), 200);
}

#[test]
fn legacy_timestamp_cursors_and_pubky_users() {
    let s = Server::start("");
    let u = new_user(&s);
    put_file(&s, &u, "/pub/1", b"1");
    put_file(&s, &u, "/pub/2", b"2");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let between = now_us();
    std::thread::sleep(std::time::Duration::from_millis(5));
    put_file(&s, &u, "/pub/3", b"3");
    let feed = |cursor: &str| {
        let r = s.req("GET", &format!("/events/?cursor={cursor}")).send();
        assert_eq!(r.status, 200, "{cursor}: {}", r.text());
        r.lines()
            .into_iter()
            .filter(|l| l.starts_with("PUT "))
            .map(|l| l.rsplit('/').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(feed(&timestamp(0)), ["1", "2", "3"]);
    assert_eq!(feed(&timestamp(between)), ["3"]);
    assert_eq!(feed(&timestamp(between).to_lowercase()), ["3"]);
    assert!(feed(&timestamp(now_us())).is_empty());
    assert_eq!(feed("1"), ["2", "3"], "event ids still work");
    assert_eq!(s.req("GET", "/events/?cursor=nope").send().status, 400);

    // The stream takes both, and a user written as a pubky:// URL.
    let stream = |user: &str| {
        let r = s
            .req("GET", &format!("/events-stream?user={user}&limit=10"))
            .send();
        assert_eq!(r.status, 200, "{user}: {}", r.text());
        r.lines()
            .into_iter()
            .filter(|l| l.starts_with("data: pubky://"))
            .map(|l| l.rsplit('/').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let pk = u.pk.to_string();
    assert_eq!(stream(&format!("{pk}:{}", timestamp(between))), ["3"]);
    assert_eq!(
        stream(&format!("pubky://{pk}:{}", timestamp(between))),
        ["3"]
    );
    assert_eq!(stream(&format!("pubky://{pk}")), ["1", "2", "3"]);
}

#[test]
fn admin_405s_head_and_version() {
    let s = Server::start("");
    let u = new_user(&s);
    let r = s.admin("GET", &format!("/users/{}/disable", u.pk)).send();
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = s.admin("DELETE", "/users").send();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    let r = s.admin("POST", &format!("/users/{}/quota", u.pk)).send();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, PATCH")));
    let r = s.admin("GET", &format!("/webdav/{}/pub/x", u.pk)).send();
    assert_eq!((r.status, r.header("allow")), (405, Some("DELETE")));
    assert_eq!(s.admin("GET", "/nothing-here").send().status, 404);
    let r = s.admin("HEAD", "/info").send();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let info = s.admin("GET", "/info").send().text();
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_reference_metric_series_are_there() {
    let s = Server::start("");
    new_user(&s);
    s.req("GET", "/events/").send();
    let m = s.metrics();
    for series in [
        "event_stream_broadcast_half_full_count_total{otel_scope_name=\"pubky_homeserver\"} 0",
        "event_stream_broadcast_lagged_count_total{otel_scope_name=\"pubky_homeserver\"} 0",
        "events_db_query_duration_ms_count{otel_scope_name=\"pubky_homeserver\"} 1",
        "events_db_query_duration_ms_bucket{otel_scope_name=\"pubky_homeserver\",le=\"7500\"} 1",
        "event_stream_connection_duration_ms_bucket{otel_scope_name=\"pubky_homeserver\",le=\"100000\"}",
        "signup_count_total{otel_scope_name=\"pubky_homeserver\"} 1",
    ] {
        assert!(m.contains(series), "{series} missing:\n{m}");
    }
}

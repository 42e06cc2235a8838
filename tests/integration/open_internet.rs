//! What one stranger on the internet can hold: request bodies that never finish, and each
//! address's share of the connections and event streams; and who the stranger is behind a
//! trusted reverse proxy. Several clients are simulated by connecting from different
//! loopback addresses (127.0.0.x).

use crate::support as common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Reads until the server closes, returning what it said (or panics after 10 s).
fn answer_and_close(mut c: TcpStream) -> (Resp, Duration) {
    let start = Instant::now();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf)
        .expect("the server should answer and close within 10 s");
    let resp = parse_response(&buf, false)
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&buf)));
    (resp, start.elapsed())
}

/// A grant sign-in that announces a 60,000-byte body and sends none of it (yet).
fn sign_in_head_only(s: &Server) -> TcpStream {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(
        b"POST /auth/grant/session HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 60000\r\n\r\n",
    )
    .unwrap();
    c
}

const PACE: &str = "[limits]\nbody_read_timeout_ms = 400\nmin_body_bytes_per_sec = 1000\n";

#[test]
fn a_body_that_never_comes_loses_its_connection() {
    let s = Server::start(PACE);
    let (resp, _) = answer_and_close(sign_in_head_only(&s));
    assert_eq!(resp.status, 408, "{}", resp.text());
    // the same for a cookie sign-in and an upload (the body is read before anything else)
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"POST /session HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n{")
        .unwrap();
    assert_eq!(answer_and_close(c).0.status, 408);
    let user = new_user(&s);
    let url = s.storage_url(&user.pk, "/pub/never.txt");
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(
        format!(
            "PUT {url} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 100000\r\n\r\nabc",
            user.token
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(answer_and_close(c).0.status, 408);
    assert_eq!(s.req("GET", &url).send().status, 404, "nothing was stored");
}

#[test]
fn a_trickled_body_loses_its_connection() {
    let s = Server::start(PACE);
    let c = sign_in_head_only(&s);
    // one byte every 100 ms: never silent for 400 ms, but 10 B/s against a 1000 B/s minimum
    let mut writer = c.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..200 {
            if writer.write_all(b" ").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let (resp, took) = answer_and_close(c);
    assert_eq!(resp.status, 408);
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(
        trickle.join().unwrap(),
        "the server should have closed the trickle"
    );
}

#[test]
fn a_body_at_a_fair_rate_is_read_whole() {
    let s = Server::start(PACE);
    let user = new_user(&s);
    let url = s.storage_url(&user.pk, "/pub/slow.txt");
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(
        format!(
            "PUT {url} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 6000\r\n\
             connection: close\r\n\r\n",
            user.token
        )
        .as_bytes(),
    )
    .unwrap();
    // 2000 B/s with 300 ms pauses: above the minimum, never idle for the 400 ms limit
    for _ in 0..10 {
        c.write_all(&[b'x'; 600]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(answer_and_close(c).0.status, 201);
    assert_eq!(s.req("GET", &url).send().body.len(), 6000);
}

#[test]
fn one_address_holds_only_its_share_of_the_connections() {
    let s = Server::start("[limits]\nmax_connections = 8\nmax_connections_per_ip = 2\n");
    let attacker = [127, 0, 0, 2];
    // connections in the middle of a body are busy (never evicted as idle)
    let hold = |from| {
        let mut c = connect_from(from, s.addr);
        c.write_all(b"POST /session HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
            .unwrap();
        c
    };
    let held: Vec<_> = (0..2).map(|_| hold(attacker)).collect();
    std::thread::sleep(Duration::from_millis(200));
    // the attacker's third is turned away …
    let r = send_from(attacker, s.addr, b"GET /info HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(r.status, 503);
    // … and so is every further one, while another address is served
    for _ in 0..8 {
        let _ = connect_from(attacker, s.addr).write_all(b"GET /info HTTP/1.1\r\n");
    }
    let r = send_from(
        [127, 0, 0, 3],
        s.addr,
        b"GET /info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(s
        .metrics()
        .contains("pubky_edge_connections_refused_per_ip_total"));
    drop(held);
}

#[test]
fn one_address_holds_only_its_share_of_the_event_streams() {
    let s = Server::start(
        "[limits]\nmax_connections = 16\n[events]\nmax_streams = 4\nmax_streams_per_ip = 1\n",
    );
    let user = new_user(&s);
    let open = |from| {
        let mut c = connect_from(from, s.addr);
        c.write_all(
            format!(
                "GET /events-stream?user={}&live=true HTTP/1.1\r\nhost: x\r\n\r\n",
                user.pk
            )
            .as_bytes(),
        )
        .unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        (String::from_utf8_lossy(&head).into_owned(), c)
    };
    let (first, _keep) = open([127, 0, 0, 2]);
    assert_eq!(first, "HTTP/1.1 200");
    let (second, _) = open([127, 0, 0, 2]);
    assert_eq!(second, "HTTP/1.1 503");
    let (other, _keep2) = open([127, 0, 0, 3]);
    assert_eq!(other, "HTTP/1.1 200");
}

const FEED_LIMIT: &str = "[[drive.rate_limits]]\npath = \"/events/\"\nmethod = \"GET\"\nquota = \"1r/m\"\nkey = \"ip\"\n";

fn feed_from(s: &Server, forwarded_for: &str) -> u16 {
    s.req("GET", "/events/")
        .header("x-forwarded-for", forwarded_for)
        .send()
        .status
}

#[test]
fn behind_a_trusted_proxy_limits_apply_to_the_forwarded_client() {
    let s = Server::start(&format!(
        "[drive]\ntrusted_proxies = [\"127.0.0.1\"]\n{FEED_LIMIT}"
    ));
    assert_eq!(feed_from(&s, "203.0.113.1"), 200);
    assert_eq!(feed_from(&s, "203.0.113.1"), 429);
    // another client behind the same proxy has its own bucket
    assert_eq!(feed_from(&s, "203.0.113.2"), 200);
    // what a client writes at the left of the list is not believed
    assert_eq!(feed_from(&s, "203.0.113.9, 203.0.113.2"), 429);
}

#[test]
fn without_trusted_proxies_forwarded_headers_are_ignored() {
    let s = Server::start(FEED_LIMIT);
    assert_eq!(feed_from(&s, "203.0.113.1"), 200);
    assert_eq!(feed_from(&s, "203.0.113.2"), 429);
    // a proxy that is not listed is not believed either
    let s = Server::start(&format!(
        "[drive]\ntrusted_proxies = [\"10.0.0.0/8\"]\n{FEED_LIMIT}"
    ));
    assert_eq!(feed_from(&s, "203.0.113.1"), 200);
    assert_eq!(feed_from(&s, "203.0.113.2"), 429);
}

fn examined(s: &Server) -> u64 {
    let m = s.metrics();
    m.lines()
        .find_map(|l| l.strip_prefix("pubky_edge_event_records_examined_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no examined counter in {m}"))
}

/// Waits until the counter stops moving (the streams are caught up).
fn settled(s: &Server) -> u64 {
    let mut last = examined(s);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = examined(s);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[test]
fn streams_that_match_nothing_read_the_history_once_and_writes_wake_only_theirs() {
    let s = Server::start("[storage]\ndurability = \"relaxed\"\n[events]\nkeep_alive_ms = 100\n");
    let (target, other) = (new_user(&s), new_user(&s));
    const HISTORY: u64 = 3000;
    for i in 0..HISTORY {
        put_file(&s, &target, &format!("/priv/{i}"), b"x");
    }
    let before = examined(&s);
    const STREAMS: u64 = 4;
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            let q = format!(
                "/events-stream?user={}&live=true&path=/pub/nothing/",
                target.pk
            );
            let sse = common::sse::Sse::open(s.addr, &q, &[]);
            assert_eq!(sse.status, 200);
            sse
        })
        .collect();
    let caught_up = settled(&s) - before;
    // each stream walked the history once (plus a look past each budget's end) …
    assert!(caught_up >= STREAMS * HISTORY, "{caught_up}");
    assert!(caught_up <= STREAMS * (HISTORY + 10), "{caught_up}");
    // … and then writes cost each stream only the new records, with keep-alives free
    for i in 0..20 {
        put_file(&s, &other, &format!("/pub/{i}"), b"x");
        put_file(&s, &target, &format!("/priv/new{i}"), b"x");
    }
    let after_writes = settled(&s) - before - caught_up;
    assert!(after_writes <= STREAMS * 20 * 3, "{after_writes}");
    drop(streams);
}

#[test]
fn the_public_feed_reads_only_public_events() {
    let s = Server::start("[storage]\ndurability = \"relaxed\"\n");
    let u = new_user(&s);
    for i in 0..1500 {
        put_file(&s, &u, &format!("/priv/{i}"), b"x");
    }
    put_file(&s, &u, "/pub/one", b"x");
    let before = examined(&s);
    let r = s.req("GET", "/events/?cursor=0&limit=10").send();
    assert_eq!(
        r.text(),
        format!("PUT pubky://{}/pub/one\ncursor: 1501", u.pk)
    );
    let r = s.req("GET", "/events/?cursor=1501").send();
    assert_eq!((r.status, r.text()), (200, String::new()));
    assert_eq!(examined(&s) - before, 1);
}

/// curl's status for GET `url` from the loopback address `from` (`extra` args added).
fn curl_from(from: &str, url: &str, extra: &[&str]) -> String {
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(["--interface", from])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Behind HAProxy speaking PROXY protocol v2 (`send-proxy-v2`), each client is known by the
/// address HAProxy names, not by HAProxy's: one client's rate limit does not touch another
/// behind the same proxy. Version 1 (curl's `--haproxy-protocol`) works too; a connection
/// without a preface, or from a peer that is not a trusted proxy, is closed unanswered.
#[test]
fn behind_haproxy_speaking_proxy_protocol_each_client_is_itself() {
    if !installed("haproxy", "-v") || !installed("curl", "--version") {
        return;
    }
    let s = Server::start(&format!(
        "[drive]\nicann_client_identity = {{ mode = \"proxy_protocol\", trusted_proxies = [\"127.0.0.1\"] }}\n{FEED_LIMIT}"
    ));
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_port = front.local_addr().unwrap().port();
    drop(front);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n\
             frontend edge\n  bind 127.0.0.1:{front_port}\n  default_backend box\n\
             backend box\n  server s1 127.0.0.1:{} send-proxy-v2 source 127.0.0.1\n",
            s.addr.port()
        ),
    )
    .unwrap();
    let mut haproxy = std::process::Command::new("haproxy")
        .args(["-db", "-f", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", front_port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let through = format!("http://127.0.0.1:{front_port}/events/");
    let first = curl_from("127.0.0.3", &through, &[]);
    let second = curl_from("127.0.0.3", &through, &[]);
    let other = curl_from("127.0.0.4", &through, &[]);
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    assert_eq!((first.as_str(), second.as_str()), ("200", "429"));
    assert_eq!(
        other, "200",
        "another client behind the same proxy has its own bucket"
    );

    // PROXY v1 straight from curl (the trusted address), and what is refused.
    let direct = format!("http://{}/events/", s.addr);
    assert_eq!(
        curl_from("127.0.0.1", &direct, &["--haproxy-protocol"]),
        "200"
    );
    assert_eq!(
        curl_from("127.0.0.1", &direct, &[]),
        "000",
        "no preface: closed"
    );
    let untrusted = curl_from("127.0.0.5", &direct, &["--haproxy-protocol"]);
    assert_eq!(untrusted, "000", "not a trusted proxy: closed");
}

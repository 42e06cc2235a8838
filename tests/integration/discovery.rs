//! The pkarr relay endpoint, the homeserver record on a loopback Mainline DHT (address
//! changes republish it), and the users' republisher — against real DHT nodes.

use crate::support as common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::Server;
use pkarr::dns::rdata::{RData, SVCB};
use pkarr::dns::Name;
use pkarr::{Keypair, SignedPacket, Timestamp};
use pubky_edge::announce::dht::local_testnet;
use pubky_edge::announce::{DhtClient, DhtSettings};
use pubky_edge::pubkey::PublicKey;

fn user_packet(user: &Keypair, target: &str, ts_us: u64) -> SignedPacket {
    SignedPacket::builder()
        .https(
            Name::new_unchecked("_pubky"),
            SVCB::new(0, Name::new_unchecked(target)),
            3600,
        )
        .timestamp(Timestamp::from(ts_us))
        .sign(user)
        .unwrap()
}

fn now_us() -> u64 {
    pubky_edge::clock::now_micros()
}

fn key_of(k: &Keypair) -> PublicKey {
    PublicKey::from_bytes(k.public_key().to_bytes()).unwrap()
}

#[test]
fn relay_checks_packets_and_serves_them_back() {
    let s = Server::start("");
    let user = Keypair::random();
    let z = user.public_key().to_z32();
    let path = format!("/pkarr/{z}");
    assert_eq!(s.req("GET", &path).send().status, 404);

    let p = user_packet(&user, &s.pk.to_string(), now_us());
    let r = s
        .req("PUT", &path)
        .body(p.to_relay_payload().to_vec())
        .send();
    assert_eq!(r.status, 204, "{}", r.text());
    let r = s.req("GET", &path).send();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, p.to_relay_payload().to_vec());
    assert_eq!(
        r.header("content-type"),
        Some("application/pkarr.org/relays#payload")
    );
    let lm = r.header("last-modified").unwrap().to_string();
    let r = s.req("GET", &path).header("if-modified-since", &lm).send();
    assert_eq!(r.status, 304);
    let r = s.req("HEAD", &path).send();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());

    // Stale: an older packet for the same key.
    let old = user_packet(&user, &s.pk.to_string(), now_us() - 60_000_000);
    let r = s
        .req("PUT", &path)
        .body(old.to_relay_payload().to_vec())
        .send();
    assert_eq!(r.status, 409, "{}", r.text());
    // Dated hours ahead.
    let future = user_packet(&user, &s.pk.to_string(), now_us() + 3 * 3600 * 1_000_000);
    let r = s
        .req("PUT", &path)
        .body(future.to_relay_payload().to_vec())
        .send();
    assert_eq!(r.status, 400, "{}", r.text());
    // Garbage, a packet signed by someone else, oversized, empty.
    let r = s.req("PUT", &path).body(vec![7u8; 200]).send();
    assert_eq!(r.status, 400);
    let other = user_packet(&Keypair::random(), "x", now_us());
    let r = s
        .req("PUT", &path)
        .body(other.to_relay_payload().to_vec())
        .send();
    assert_eq!(r.status, 400);
    let r = s.req("PUT", &path).body(vec![0u8; 5000]).send();
    assert_eq!(r.status, 413);
    let r = s.req("PUT", &path).send();
    assert_eq!(r.status, 400);
    // Bad key, bad policy, wrong method.
    assert_eq!(s.req("GET", "/pkarr/not-a-key").send().status, 400);
    assert_eq!(
        s.req("GET", &format!("{path}?policy=Sometimes"))
            .send()
            .status,
        400
    );
    assert_eq!(s.req("POST", &path).send().status, 405);
    // After all that, the good packet is still what is served.
    let r = s.req("GET", &path).send();
    assert_eq!(r.body, p.to_relay_payload().to_vec());
    // CORS for browsers.
    let r = s
        .req("GET", &path)
        .header("origin", "http://app.localhost")
        .send();
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.localhost")
    );
}

#[test]
fn dedicated_relay_listener_serves_the_relay_at_its_root() {
    let s = Server::start("[pkarr_relay]\nlisten_socket = \"127.0.0.1:0\"\n");
    let addr = s.running().addrs.relay.expect("relay listener");
    let user = Keypair::random();
    let p = user_packet(&user, "x", now_us());
    let path = format!("/{}", user.public_key().to_z32());
    let put = format!(
        "PUT {path} HTTP/1.1\r\nHost: relay\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        p.to_relay_payload().len()
    );
    let mut bytes = put.into_bytes();
    bytes.extend_from_slice(&p.to_relay_payload());
    assert_eq!(common::send_raw(addr, &bytes, false).status, 204);
    let get = format!("GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    let r = common::send_raw(addr, get.as_bytes(), false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, p.to_relay_payload().to_vec());
    // Only the relay lives there.
    let info = "GET /info HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n";
    assert_eq!(common::send_raw(addr, info.as_bytes(), false).status, 400);
    // Disabled relay: no route.
    let off = Server::start("[pkarr_relay]\nenabled = false\n");
    assert_eq!(off.req("GET", &format!("/pkarr{path}")).send().status, 404);
}

/// A DHT client of the test's own, ready (bootstrapped) before it is used.
fn dht_client(bootstrap: &[String]) -> DhtClient {
    let c = DhtClient::start(&DhtSettings {
        bootstrap: bootstrap.to_vec(),
        request_timeout: Duration::from_millis(1000),
        port: None,
    })
    .unwrap();
    assert!(
        smol::block_on(c.bootstrapped()),
        "test DHT client bootstrapped"
    );
    c
}

fn dht_toml(bootstrap: &[String], extra: &str) -> String {
    let nodes: Vec<String> = bootstrap.iter().map(|b| format!("{b:?}")).collect();
    format!(
        "[pkdns]\ndht = true\npublic_ip = \"127.0.0.1\"\ndht_request_timeout_ms = 1000\n\
         publish_retry_min_ms = 100\ndht_bootstrap_nodes = [{}]\n{extra}",
        nodes.join(", ")
    )
}

fn apex_ip(p: &SignedPacket) -> Option<IpAddr> {
    let z = p.public_key().to_z32();
    p.resource_records(&z).find_map(|rr| match &rr.rdata {
        RData::A(a) => Some(IpAddr::from(std::net::Ipv4Addr::from(a.address))),
        _ => None,
    })
}

#[test]
fn record_is_published_and_follows_the_public_address() {
    let (_nodes, bootstrap) = local_testnet(0, 4).unwrap();
    let s = Server::start(&dht_toml(&bootstrap, ""));
    s.wait_published(20);
    let reader = dht_client(&bootstrap);
    let p = smol::block_on(reader.get(&s.pk)).expect("record on the DHT");
    assert_eq!(apex_ip(&p), Some("127.0.0.1".parse().unwrap()));
    let st = s.running().probes.publish_status.lock().unwrap().clone();
    assert!(st.stored_at_nodes >= 1, "{st:?}");
    assert!(st.last_error.is_none());
    // The status file is what `pubky-edge info` reports.
    let saved = pubky_edge::announce::PublishStatus::load(&s.data_dir).unwrap();
    assert_eq!(saved.published_ip.as_deref(), Some("127.0.0.1"));

    // The router reports a new address: a newer record follows without waiting an interval.
    let new_ip: IpAddr = "192.0.2.77".parse().unwrap();
    let attempted = s.running().probes.publish_attempted.listen();
    s.running().public_address.set(new_ip);
    smol::block_on(smol::future::or(attempted, async {
        smol::Timer::after(Duration::from_secs(20)).await;
    }));
    let st = s.running().probes.publish_status.lock().unwrap().clone();
    assert_eq!(st.published_ip.as_deref(), Some("192.0.2.77"), "{st:?}");
    assert!(st.packet_timestamp_us > p.timestamp().as_u64());
    let p2 = smol::block_on(reader.get(&s.pk)).unwrap();
    assert_eq!(apex_ip(&p2), Some(new_ip));
}

#[test]
fn publish_failures_are_reported_and_retried() {
    // A bootstrap node that does not exist: every publish fails, with backoff.
    let s = Server::start(&dht_toml(&["127.0.0.1:9".to_string()], ""));
    let r = s.running();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempts = 0;
    while attempts < 2 {
        let l = r.probes.publish_attempted.listen();
        let st = r.probes.publish_status.lock().unwrap().clone();
        if st.last_error.is_some() {
            attempts += 1;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempts reported: {st:?}"
        );
        smol::block_on(smol::future::or(l, async {
            smol::Timer::after(Duration::from_secs(5)).await;
        }));
    }
    let st = r.probes.publish_status.lock().unwrap().clone();
    assert!(st.last_success_secs.is_none());
    assert!(st.last_error.is_some());
    // The server itself keeps serving.
    assert_eq!(s.req("GET", "/info").send().status, 200);
}

#[test]
fn relay_forwards_to_the_dht_and_looks_packets_up_there() {
    let (_nodes, bootstrap) = local_testnet(0, 4).unwrap();
    let s = Server::start(&dht_toml(&bootstrap, ""));
    let other = dht_client(&bootstrap);
    // PUT through the relay → on the DHT.
    let a = Keypair::random();
    let pa = user_packet(&a, "x", now_us());
    let r = s
        .req("PUT", &format!("/pkarr/{}", a.public_key().to_z32()))
        .body(pa.to_relay_payload().to_vec())
        .send();
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.header("pkarr-dht-stored-nodes").is_some());
    let got = smol::block_on(other.get(&key_of(&a))).unwrap();
    assert_eq!(got.as_bytes(), pa.as_bytes());
    // On the DHT only → the relay finds it.
    let b = Keypair::random();
    let pb = user_packet(&b, "y", now_us());
    smol::block_on(other.put(&pb)).unwrap();
    let r = s
        .req("GET", &format!("/pkarr/{}", b.public_key().to_z32()))
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pb.to_relay_payload().to_vec());
}

#[test]
fn users_records_are_republished_never_forged() {
    let (_nodes, bootstrap) = local_testnet(0, 4).unwrap();
    let s = Server::start(&dht_toml(
        &bootstrap,
        "user_keys_republish_first_ms = 200\nuser_keys_republish_interval_ms = 200\n",
    ));
    let dht = dht_client(&bootstrap);
    // Three accounts: one pointing here, one that moved elsewhere, one with no record.
    let mut seeds = Vec::new();
    for _ in 0..3 {
        let k = common::random_key();
        common::signup_and_signin(&s, &k);
        seeds.push(k.to_bytes());
    }
    let here = Keypair::from_secret_key(&seeds[0]);
    let moved = Keypair::from_secret_key(&seeds[1]);
    let p_here = user_packet(&here, &s.pk.to_string(), now_us());
    let elsewhere = common::pk_of(&common::random_key()).to_string();
    let p_moved = user_packet(&moved, &elsewhere, now_us());
    smol::block_on(dht.put(&p_here)).unwrap();
    smol::block_on(dht.put(&p_moved)).unwrap();

    // Two passes after the setup: the second one surely started after it.
    let r = s.running();
    for _ in 0..2 {
        let l = r.probes.users_republished.listen();
        let done = smol::block_on(smol::future::or(
            async {
                l.await;
                true
            },
            async {
                smol::Timer::after(Duration::from_secs(30)).await;
                false
            },
        ));
        assert!(done, "no republish pass");
    }
    let report = r.probes.users_report.lock().unwrap().expect("a pass ran");
    assert_eq!(report.users, 3);
    assert_eq!(report.republished, 1, "{report:?}");
    assert_eq!(report.elsewhere, 1, "{report:?}");
    assert_eq!(report.missing, 1, "{report:?}");
    // The packet on the DHT is still the user's own, byte for byte.
    let got = smol::block_on(dht.get(&key_of(&here))).unwrap();
    assert_eq!(got.as_bytes(), p_here.as_bytes());
}

#[test]
fn the_relay_serves_the_homeserver_record_even_without_a_dht() {
    let s = Server::start("[pkdns]\npublic_ip = \"192.0.2.9\"\nicann_domain = \"localhost\"\n");
    let path = format!("/pkarr/{}", s.pk);
    let r = s.running();
    let mut got = None;
    for _ in 0..10 {
        let l = r.probes.publish_attempted.listen();
        let resp = s.req("GET", &path).send();
        if resp.status == 200 {
            got = Some(resp.body);
            break;
        }
        smol::block_on(smol::future::or(l, async {
            smol::Timer::after(Duration::from_secs(2)).await;
        }));
    }
    let payload = got.expect("the homeserver record in the device's relay");
    let key = pkarr::PublicKey::try_from(s.pk.as_bytes()).unwrap();
    let p = SignedPacket::from_relay_payload(&key, &payload.into()).unwrap();
    assert_eq!(apex_ip(&p), Some("192.0.2.9".parse().unwrap()));
    // The browser endpoint: `localhost` with the HTTP port in SvcParam 65280.
    let z = s.pk.to_string();
    let icann = p
        .resource_records(&z)
        .find_map(|rr| match &rr.rdata {
            RData::HTTPS(h) if h.0.target.to_string() == "localhost" => Some(h.0.clone()),
            _ => None,
        })
        .expect("localhost record");
    let port = match icann.get_param(0xff00) {
        Some(pkarr::dns::rdata::SVCParam::Unknown(_, v)) => u16::from_be_bytes([v[0], v[1]]),
        other => panic!("no http port param: {other:?}"),
    };
    assert_eq!(port, s.addr.port());
    // Nothing was published to a DHT (there is none); the status says so.
    assert!(r
        .probes
        .publish_status
        .lock()
        .unwrap()
        .last_success_secs
        .is_none());
}

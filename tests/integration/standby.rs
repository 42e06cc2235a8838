//! A standby box: paired with a one-time code, it copies the primary's store, follows its
//! log under concurrent writes (public, private, inline and blob-sized, overwrites and
//! deletes), holds the same files, events and accounts, serves reads and refuses writes.
//! The process-level cases (SIGKILL mid-replication, takeover with the official SDK, the
//! old primary's return) are in `tests/system/standby.rs`.

use crate::support as common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::replica::fingerprint;
use common::{new_user, put_file, Server, User};
use pubky_edge::store::Store;

/// A one-time pairing code from the primary's admin API.
fn pairing_code(primary: &Server, takeover: bool) -> String {
    let path = format!(
        "/standby/code{}",
        if takeover { "?takeover=true" } else { "" }
    );
    let r = primary.admin("POST", &path).send();
    assert_eq!(r.status, 200, "code: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["code"].as_str().unwrap().to_string()
}

/// Waits until the standby (data in `dir`) holds the primary's whole log.
fn wait_caught_up(primary: &Store, standby: &Store, dir: &Path, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while standby.event_head() < primary.event_head() {
        assert!(
            Instant::now() < deadline,
            "the standby is at {} of {} after {secs} s: {}",
            standby.event_head(),
            primary.event_head(),
            std::fs::read_to_string(dir.join("standby/follow-status.json")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pubky-edge --config <standby config> --data-dir DIR standby pair CODE --at ADDR`.
fn pair(dir: &Path, config: &Path, code: &str, at: std::net::SocketAddr) -> (bool, String) {
    let (ok, said) = crate::moving::edge(
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "standby",
            "pair",
            code,
            "--at",
            &at.to_string(),
        ],
        &[],
    );
    (ok, said)
}

/// Writes of one user: new files (inline and blob-sized, public and private), overwrites
/// and deletes.
fn churn(s: &Server, u: &User, round: usize) {
    let big = vec![round as u8; 40_000 + round];
    put_file(
        s,
        u,
        &format!("/pub/app/{round}.txt"),
        format!("public {round}").as_bytes(),
    );
    put_file(
        s,
        u,
        &format!("/priv/notes/{round}"),
        format!("private {round}").as_bytes(),
    );
    if round % 3 == 0 {
        put_file(s, u, &format!("/pub/app/big-{round}.bin"), &big);
        // The same body at a second path: one blob, two references.
        put_file(s, u, &format!("/pub/copy/big-{round}.bin"), &big);
    }
    if round % 4 == 1 {
        put_file(s, u, &format!("/pub/app/{}.txt", round - 1), b"overwritten");
    }
    if round % 5 == 2 {
        let r = s
            .req(
                "DELETE",
                &s.storage_url(&u.pk, &format!("/priv/notes/{}", round - 1)),
            )
            .bearer(&u.token)
            .send();
        assert_eq!(r.status, 204, "delete: {}", r.text());
    }
}

#[test]
fn a_standby_copies_follows_and_serves_the_primary_s_store_and_refuses_writes() {
    let primary = Server::start("");
    let users: Vec<User> = (0..3).map(|_| new_user(&primary)).collect();
    for (i, u) in users.iter().enumerate() {
        for round in 0..6 {
            churn(&primary, u, round + i * 100);
        }
    }
    // A disabled account and a signup token are tables, not events.
    let disabled = new_user(&primary);
    put_file(&primary, &disabled, "/pub/x", b"x");
    let r = primary
        .admin("POST", &format!("/users/{}/disable", disabled.pk))
        .send();
    assert_eq!(r.status, 200);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("standby");
    let config = tmp.path().join("standby.toml");
    std::fs::write(&config, common::OPEN).unwrap();
    // A made-up code is refused, and nothing is left half paired.
    let bogus = format!("{}:{}", primary.pk, "A".repeat(43));
    let (ok, said) = pair(&dir, &config, &bogus, primary.tls_addr);
    assert!(
        !ok && said.contains("unknown, used or expired pairing code"),
        "{said}"
    );
    assert!(!dir.join("standby/follow.json").exists());

    // The standby protocol is refused over plain HTTP, token or not.
    let r = primary.req("GET", "/standby/v1/events?after=0").send();
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("PubkyTLS only"), "{}", r.text());

    let code = pairing_code(&primary, false);
    let (ok, said) = pair(&dir, &config, &code, primary.tls_addr);
    assert!(ok, "pair: {said}");
    // The code is spent.
    let (ok, said) = pair(&tmp.path().join("other"), &config, &code, primary.tls_addr);
    assert!(!ok && said.contains("unknown, used or expired"), "{said}");

    let standby = Server::start_in(&dir, "");
    let (p, s) = (primary.running().store(), standby.running().store());
    wait_caught_up(p, s, &dir, 20);
    assert_eq!(fingerprint(s), fingerprint(p), "after the first copy");

    // Concurrent writers while the standby follows.
    std::thread::scope(|scope| {
        for (i, u) in users.iter().enumerate() {
            let primary = &primary;
            scope.spawn(move || {
                for round in 6..40 {
                    churn(primary, u, round + i * 100);
                }
            });
        }
    });
    let late = new_user(&primary);
    put_file(&primary, &late, "/priv/late", b"signed up after the copy");
    wait_caught_up(p, s, &dir, 30);
    let (fp, fs) = (fingerprint(p), fingerprint(s));
    assert!(
        fp.files.len() > 250 && fp.events.len() > 350,
        "{} files, {} events",
        fp.files.len(),
        fp.events.len()
    );
    assert_eq!(fs.files, fp.files);
    assert_eq!(fs.events, fp.events);
    assert_eq!(fs.users.len(), fp.users.len());
    // Quota usage is counted on the standby from its own files: the same totals.
    assert_eq!(fs.users, fp.users);
    assert_eq!(s.check().unwrap().problems, Vec::<String>::new());

    // Reads on the standby: public by anyone, private with the session made on the
    // primary (the sessions are copied), blobs byte for byte.
    let u = &users[1];
    let r = standby
        .req("GET", &standby.storage_url(&u.pk, "/pub/app/105.txt"))
        .send();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"public 105"[..]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = standby
            .req("GET", &standby.storage_url(&late.pk, "/priv/late"))
            .bearer(&late.token)
            .send();
        if r.status == 200 {
            assert_eq!(r.body, b"signed up after the copy");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "private read: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = standby
        .req("GET", &standby.storage_url(&u.pk, "/pub/app/big-111.bin"))
        .send();
    assert_eq!(r.body, vec![111u8; 40_111]);
    // The disabled flag arrived with the tables.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.user(&disabled.pk).unwrap().unwrap().disabled {
        assert!(
            Instant::now() < deadline,
            "the disabled flag did not arrive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Writes are refused, with why.
    let r = standby
        .req("PUT", &standby.storage_url(&u.pk, "/pub/app/new"))
        .bearer(&u.token)
        .body(b"no".to_vec())
        .send();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("standby"), "{}", r.text());
    let r = standby
        .req("DELETE", &standby.storage_url(&u.pk, "/pub/app/105.txt"))
        .bearer(&u.token)
        .send();
    assert_eq!(r.status, 503);
    // The pkarr relay is not the homeserver's data: a standby still relays (here it
    // judges the bogus packet itself instead of refusing the write).
    let r = standby
        .req("PUT", &format!("/pkarr/{}", u.pk))
        .body(b"not a packet".to_vec())
        .send();
    assert!(
        r.status != 503 && r.status >= 400,
        "{} {}",
        r.status,
        r.text()
    );

    // Both boxes show the lag; the primary names its standby.
    let m = standby.metrics();
    assert!(m.contains("pubky_edge_standby_lag_events 0\n"), "{m}");
    let r = primary.admin("GET", "/standby").send();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["mode"], "primary");
    assert_eq!(v["standby"]["takeover"], false);
    assert_eq!(v["standby"]["lag_events"], 0, "{v}");
    let r = standby.admin("GET", "/standby").send();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["mode"], "standby");

    // So do both dashboards, in their Health card.
    for (server, says) in [(&primary, "it holds events up to"), (&standby, "following")] {
        let cookie = crate::dashboard::claim_with_configured_password(server);
        let home = server
            .dashboard("GET", "/")
            .header("cookie", &format!("pe_session={cookie}"))
            .send()
            .text();
        let at = home.find("<dt>Second box</dt>").expect("a Second box line");
        assert!(
            home[at..].split("</dd>").next().unwrap().contains(says),
            "{home}"
        );
        if says == "following" {
            // Invitations are the primary's: the standby's dashboard says so.
            let page = server
                .dashboard("GET", "/invites")
                .header("cookie", &format!("pe_session={cookie}"))
                .send()
                .text();
            let csrf = page
                .split("name=\"csrf\" value=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .expect("a form")
                .to_string();
            let r = server
                .dashboard("POST", "/invites")
                .header("cookie", &format!("pe_session={cookie}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf={csrf}&quota_mb="))
                .send();
            assert_eq!(r.header("location"), Some("/?n=standby"), "{}", r.text());
        }
    }

    // Unpairing on the primary stops the replication token.
    let r = primary.admin("DELETE", "/standby").send();
    assert_eq!(r.status, 200);
    put_file(&primary, &late, "/priv/after-unpair", b"not replicated");
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.event_head() < p.event_head());
    let said = std::fs::read_to_string(dir.join("standby/follow-status.json")).unwrap();
    assert!(said.contains("refused the replication token"), "{said}");
}

//! Storage API against a real server on loopback: reads, writes, addressing forms, paths,
//! collisions, listing, conditional GETs, private data, quotas and restarts.

use crate::support as common;

use common::*;

#[test]
fn put_get_head_delete_both_addressing_forms() {
    let s = Server::start("");
    let u = new_user(&s);
    let url = s.storage_url(&u.pk, "/pub/foo.txt");
    let other = random_key();
    let r = s
        .req("PUT", &format!("{url}?pubky-host={}", pk_of(&other)))
        .header("pubky-host", &pk_of(&other).to_z32())
        .bearer(&u.token)
        .body(vec![0u8, 1, 2, 3, 4])
        .send();
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.body.is_empty());

    let r = s.req("GET", &url).send();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, vec![0u8, 1, 2, 3, 4]);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(
        r.header("etag"),
        Some("\"tAtE39l+eoSplqka+LhRiMZsEmlAunqtLnrms4VAKqI=\"")
    );
    assert_eq!(r.header("cache-control"), Some("private, must-revalidate"));
    assert!(r.header("last-modified").is_some());

    let h = s.req("HEAD", &url).send();
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("5"));
    assert_eq!(h.header("etag"), r.header("etag"));

    // the legacy form reads the same entry through pubky-host
    let legacy = s
        .req("GET", "/pub/foo.txt")
        .header("pubky-host", &u.pk.to_z32())
        .send();
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.body, vec![0u8, 1, 2, 3, 4]);
    assert!(legacy.header("vary").unwrap().contains("pubky-host"));
    let legacy_host = s
        .req("GET", "/pub/foo.txt")
        .header("host", &format!("_pubky.{}", u.pk))
        .send();
    assert_eq!(legacy_host.status, 200);

    let d = s.req("DELETE", &url).bearer(&u.token).send();
    assert_eq!(d.status, 204);
    assert_eq!(s.req("GET", &url).send().status, 404);
    assert_eq!(s.req("DELETE", &url).bearer(&u.token).send().status, 404);
}

#[test]
fn missing_tenant_and_malformed_addressing() {
    let s = Server::start("");
    let r = s.req("GET", "/pub/foo.txt").send();
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "Missing request tenant");
    let pk = s.pk.to_z32();
    for (p, msg) in [
        ("/storage".to_string(), "Missing storage owner or path"),
        ("/storage/".to_string(), "Missing storage owner or path"),
        (
            "/storage/short/pub/file.txt".to_string(),
            "Invalid storage owner public key",
        ),
        (
            format!("/storage/pubky{pk}/pub/file.txt"),
            "Invalid storage owner public key",
        ),
        (format!("/storage/{pk}/"), "Missing storage path"),
    ] {
        let r = s
            .req("GET", &p)
            .header("origin", "https://app.example")
            .send();
        assert_eq!(r.status, 400, "{p}");
        assert_eq!(r.text(), msg, "{p}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example")
        );
    }
    let r = s
        .req("PUT", &format!("/storage/{pk}/pub/file.txt"))
        .body("x")
        .send();
    assert_eq!(r.status, 401);
}

#[test]
fn bad_paths_are_rejected_and_leave_data_untouched() {
    let s = Server::start("");
    let u = new_user(&s);
    let good = s.storage_url(&u.pk, "/pub/report");
    assert_eq!(
        s.req("PUT", &good)
            .bearer(&u.token)
            .body("original")
            .send()
            .status,
        201
    );
    for alias in [
        "/pub/report%20",
        "/pub/report%C2%A0",
        "/pub/report%E3%80%80",
        "/pub/scope/%5C..%5Creport",
        "/pub/../../etc/passwd",
        "/pub/a%00b",
        "/pub/%FF",
    ] {
        let url = s.storage_url(&u.pk, alias);
        for m in ["PUT", "DELETE"] {
            let r = s.req(m, &url).bearer(&u.token).body("evil").send();
            assert_eq!(r.status, 400, "{m} {alias}: {}", r.text());
        }
    }
    let long = format!("/pub/{}", "a".repeat(256));
    let r = s
        .req("PUT", &s.storage_url(&u.pk, &long))
        .bearer(&u.token)
        .body("x")
        .send();
    assert_eq!(r.status, 400);
    assert_eq!(s.req("GET", &good).send().text(), "original");
    // directories cannot be written
    let r = s
        .req("PUT", &s.storage_url(&u.pk, "/pub/directory/"))
        .bearer(&u.token)
        .body("x")
        .send();
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "Target path must be a file");
    let r = s
        .req("DELETE", &s.storage_url(&u.pk, "/pub/directory/"))
        .bearer(&u.token)
        .send();
    assert_eq!(r.status, 400);
    // traversal normalises inside the user's space: /pub/x/../y is /pub/y
    let r = s
        .req("PUT", &s.storage_url(&u.pk, "/pub/x/../y"))
        .bearer(&u.token)
        .body("y")
        .send();
    assert_eq!(r.status, 201);
    assert_eq!(
        s.req("GET", &s.storage_url(&u.pk, "/pub/y")).send().text(),
        "y"
    );
}

#[test]
fn file_directory_collisions() {
    let s = Server::start("");
    let u = new_user(&s);
    let put = |p: &str| {
        s.req("PUT", &s.storage_url(&u.pk, p))
            .bearer(&u.token)
            .body("x")
            .send()
            .status
    };
    let del = |p: &str| {
        s.req("DELETE", &s.storage_url(&u.pk, p))
            .bearer(&u.token)
            .send()
            .status
    };
    assert_eq!(put("/pub/app/foo"), 201);
    assert_eq!(put("/pub/app/foo/bar.json"), 409);
    assert_eq!(
        s.req("GET", &s.storage_url(&u.pk, "/pub/app/foo/bar.json"))
            .send()
            .status,
        404
    );
    assert_eq!(del("/pub/app/foo"), 204);
    assert_eq!(put("/pub/app/foo/bar.json"), 201);
    assert_eq!(put("/pub/app/foo"), 409);
    assert_eq!(del("/pub/app/foo/bar.json"), 204);
    assert_eq!(put("/pub/app/foo"), 201);
}

#[test]
fn users_are_isolated() {
    let s = Server::start("");
    let a = new_user(&s);
    let b = new_user(&s);
    let path = "/pub/pubky.app/file/file_1";
    for u in [&a, &b] {
        let r = s
            .req("PUT", &s.storage_url(&u.pk, path))
            .bearer(&u.token)
            .body(u.pk.to_z32())
            .send();
        assert_eq!(r.status, 201);
    }
    // b's token cannot write into a's space
    let r = s
        .req("PUT", &s.storage_url(&a.pk, path))
        .bearer(&b.token)
        .body("overwrite")
        .send();
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "Session user does not match target tenant");
    let r = s
        .req("DELETE", &s.storage_url(&a.pk, path))
        .bearer(&b.token)
        .send();
    assert_eq!(r.status, 403);
    assert_eq!(
        s.req("DELETE", &s.storage_url(&a.pk, path))
            .bearer(&a.token)
            .send()
            .status,
        204
    );
    assert_eq!(
        s.req("GET", &s.storage_url(&b.pk, path)).send().text(),
        b.pk.to_z32()
    );
    // writing outside /pub/ and /priv/
    let r = s
        .req("PUT", &s.storage_url(&a.pk, "/other/x"))
        .bearer(&a.token)
        .body("x")
        .send();
    assert_eq!(r.status, 403);
    let r = s.req("GET", &s.storage_url(&a.pk, "/other/x")).send();
    assert_eq!(r.status, 403);
}

#[test]
fn private_storage_rules() {
    let s = Server::start("");
    let u = new_user(&s);
    let url = s.storage_url(&u.pk, "/priv/secret.txt");
    assert_eq!(
        s.req("PUT", &url)
            .bearer(&u.token)
            .body("s3cret")
            .send()
            .status,
        201
    );
    for (m, p) in [
        ("GET", url.clone()),
        ("HEAD", url.clone()),
        ("GET", s.storage_url(&u.pk, "/priv/")),
        ("GET", s.storage_url(&u.pk, "/priv/missing")),
    ] {
        let r = s.req(m, &p).send();
        assert_eq!(r.status, 401, "{m} {p}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r.header("etag").is_none());
    }
    let ok = s.req("GET", &url).bearer(&u.token).send();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "s3cret");
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    assert!(ok.header("vary").unwrap().contains("Authorization, Cookie"));
    // anonymous with the right ETag still gets 401, not 304
    let r = s
        .req("GET", &url)
        .header("if-none-match", ok.header("etag").unwrap())
        .send();
    assert_eq!(r.status, 401);
    // a write-only session cannot read
    let wo = signin(&s, &u.key, "/priv/:w");
    let r = s.req("GET", &url).bearer(&wo).send();
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "Session does not have read access to path");
    // another user's session
    let other = new_user(&s);
    let r = s.req("GET", &url).bearer(&other.token).send();
    assert_eq!(r.status, 403);
    // legacy private errors vary on pubky-host too
    let r = s
        .req("GET", "/priv/secret.txt")
        .header("pubky-host", &u.pk.to_z32())
        .send();
    assert_eq!(r.status, 401);
    assert!(r
        .header("vary")
        .unwrap()
        .contains("pubky-host, Authorization, Cookie"));
}

#[test]
fn conditional_get() {
    let s = Server::start("");
    let u = new_user(&s);
    let url = s.storage_url(&u.pk, "/pub/c.txt");
    s.req("PUT", &url).bearer(&u.token).body("one").send();
    let first = s.req("GET", &url).send();
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();
    let r = s.req("GET", &url).header("if-none-match", &etag).send();
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = s.req("GET", &url).header("if-modified-since", &lm).send();
    assert_eq!(r.status, 304);
    s.req("PUT", &url).bearer(&u.token).body("two").send();
    let r = s
        .req("GET", &url)
        .header("if-none-match", &etag)
        .header("if-modified-since", "Sun, 06 Nov 2094 08:49:37 GMT")
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "two");
}

fn put_all(s: &Server, u: &User, paths: &[&str]) {
    for p in paths {
        let r = s
            .req("PUT", &s.storage_url(&u.pk, p))
            .bearer(&u.token)
            .body(p.as_bytes().to_vec())
            .send();
        assert_eq!(r.status, 201, "{p}");
    }
}

#[test]
fn listing_deep_with_limit_and_cursor() {
    let s = Server::start("");
    let u = new_user(&s);
    put_all(
        &s,
        &u,
        &[
            "/pub/example.com/d.txt",
            "/pub/z.wrong/a.txt",
            "/pub/example.com/cc-nested/z.txt",
            "/pub/a.wrong/a.txt",
            "/pub/example.com/b.txt",
            "/pub/example.wrong/a.txt",
            "/pub/example.com/a.txt",
            "/pub/example.com/c.txt",
        ],
    );
    let pre = format!("pubky://{}/pub/example.com/", u.pk);
    let list = |q: &str| {
        let r = s
            .req(
                "GET",
                &format!("{}{q}", s.storage_url(&u.pk, "/pub/example.com/")),
            )
            .send();
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert!(!r.text().ends_with('\n'));
        r.lines()
            .into_iter()
            .map(|l| l.strip_prefix(&pre).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(""),
        ["a.txt", "b.txt", "c.txt", "cc-nested/z.txt", "d.txt"]
    );
    assert_eq!(list("?limit=2"), ["a.txt", "b.txt"]);
    let c = format!("{}/pub/example.com/a.txt", u.pk);
    assert_eq!(list(&format!("?limit=2&cursor={c}")), ["b.txt", "c.txt"]);
    assert_eq!(
        list(&format!("?limit=2&cursor=pubky://{c}")),
        ["b.txt", "c.txt"]
    );
    assert_eq!(
        list("?reverse"),
        ["d.txt", "cc-nested/z.txt", "c.txt", "b.txt", "a.txt"]
    );
    assert!(list("?limit=0").is_empty());
    // bad parameters
    let base = s.storage_url(&u.pk, "/pub/example.com/");
    let r = s
        .req("GET", &format!("{base}?cursor=/pub/example.com/a.txt"))
        .send();
    assert_eq!((r.status, r.text().as_str()), (400, "Invalid cursor"));
    let r = s.req("GET", &format!("{base}?reverse=perhaps")).send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Invalid boolean parameter")
    );
    let r = s
        .req("GET", &s.storage_url(&u.pk, "/pub/nothing-here/"))
        .send();
    assert_eq!((r.status, r.text().as_str()), (404, "Directory Not Found"));
    assert_eq!(s.req("HEAD", &base).send().status, 404);
}

#[test]
fn listing_shallow() {
    let s = Server::start("");
    let u = new_user(&s);
    put_all(
        &s,
        &u,
        &[
            "/pub/file2",
            "/pub/example.con/d.txt",
            "/pub/a.com/a.txt",
            "/pub/example.com/a.txt",
            "/pub/z.com/a.txt",
            "/pub/example.com/b.txt",
            "/pub/example.con-file",
            "/pub/file",
        ],
    );
    let pre = format!("pubky://{}/pub/", u.pk);
    let list = |q: &str| {
        let r = s
            .req(
                "GET",
                &format!("{}?shallow{q}", s.storage_url(&u.pk, "/pub/")),
            )
            .send();
        assert_eq!(r.status, 200);
        r.lines()
            .into_iter()
            .map(|l| l.strip_prefix(&pre).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let all = [
        "a.com/",
        "example.com/",
        "example.con-file",
        "example.con/",
        "file",
        "file2",
        "z.com/",
    ];
    assert_eq!(list(""), all);
    assert_eq!(list("&limit=2"), all[..2]);
    let c = format!("{}/pub/example.com/", u.pk);
    assert_eq!(
        list(&format!("&limit=2&cursor={c}")),
        ["example.con-file", "example.con/"]
    );
    let c2 = format!("{}/pub/example.com/a.txt", u.pk);
    assert_eq!(
        list(&format!("&limit=2&cursor={c2}")),
        ["example.con-file", "example.con/"]
    );
    assert_eq!(
        list(&format!("&limit=3&cursor={c}")),
        ["example.con-file", "example.con/", "file"]
    );
    let mut rev = all.to_vec();
    rev.reverse();
    assert_eq!(list("&reverse=true"), rev);
}

#[test]
fn quota_accounting() {
    let s = Server::start("[storage]\ndefault_quota_mb = 1\n");
    let u = new_user(&s);
    let put = |p: &str, n: usize| {
        s.req("PUT", &s.storage_url(&u.pk, p))
            .bearer(&u.token)
            .body(vec![7u8; n])
            .send()
    };
    assert_eq!(put("/pub/a", 600_000).status, 201);
    assert_eq!(put("/pub/a", 600_000).status, 201);
    let r = put("/pub/b", 600_000);
    assert_eq!(
        (r.status, r.text().as_str()),
        (507, "Disk space quota exceeded")
    );
    assert_eq!(put("/pub/a", 1_100_000).status, 507);
    // the rejected overwrite left the old content in place
    assert_eq!(
        s.req("GET", &s.storage_url(&u.pk, "/pub/a"))
            .send()
            .body
            .len(),
        600_000
    );
    assert_eq!(
        s.req("DELETE", &s.storage_url(&u.pk, "/pub/a"))
            .bearer(&u.token)
            .send()
            .status,
        204
    );
    assert_eq!(put("/pub/c", 1025 * 1024 - 256).status, 507);
    assert_eq!(put("/pub/c", 1024 * 1024 - 256).status, 201);
}

#[test]
fn large_bodies_stream_and_survive_restart() {
    let s = Server::start("");
    let u = new_user(&s);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let url = s.storage_url(&u.pk, "/pub/big.bin");
    assert_eq!(
        s.req("PUT", &url)
            .bearer(&u.token)
            .body(big.clone())
            .send()
            .status,
        201
    );
    let small_url = s.storage_url(&u.pk, "/pub/small.json");
    assert_eq!(
        s.req("PUT", &small_url)
            .bearer(&u.token)
            .body("{\"a\":1}")
            .send()
            .status,
        201
    );
    let r = s.req("GET", &url).send();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big);
    let dir = s.data_dir.clone();
    let pk = u.pk;
    let hs = s.pk;
    let tmp = s.stop();
    let s2 = Server::start_in(&dir, "");
    assert_eq!(s2.pk, hs, "the identity must survive a restart");
    let r = s2.req("GET", &s2.storage_url(&pk, "/pub/big.bin")).send();
    assert!(r.body == big);
    let r = s2
        .req("GET", &s2.storage_url(&pk, "/pub/small.json"))
        .send();
    assert_eq!(r.text(), "{\"a\":1}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    // the session survived too
    let r = s2
        .req("PUT", &s2.storage_url(&pk, "/pub/after"))
        .bearer(&u.token)
        .body("x")
        .send();
    assert_eq!(r.status, 201);
    drop(s2);
    drop(tmp);
}

/// A body whose first bytes are a zstd skippable frame with a length near `u32::MAX` (it
/// hung `infer`'s sniffer on 32-bit targets, pinning an executor thread): the PUT is stored
/// as an octet stream and the server keeps answering. CI runs this under qemu-user for armv7.
#[test]
fn a_zstd_skippable_frame_with_a_wrapping_length_is_stored_and_the_server_answers() {
    let s = Server::start("");
    let u = new_user(&s);
    let url = s.storage_url(&u.pk, "/pub/frame");
    let mut body = vec![0x50, 0x2A, 0x4D, 0x18, 0xF8, 0xFF, 0xFF, 0xFF];
    body.extend_from_slice(&[0; 8]);
    for _ in 0..3 {
        let r = s
            .req("PUT", &url)
            .bearer(&u.token)
            .body(body.clone())
            .send();
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let r = s.req("GET", &url).send();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(s.req("GET", "/info").send().status, 200);
}

/// An "unlimited" storage quota (set by the admin) lets a file be written and overwritten:
/// the allowance sums saturate instead of wrapping to a 507.
#[test]
fn an_unlimited_quota_allows_overwrites() {
    let s = Server::start("[storage]\ndefault_quota_mb = 1\n");
    let u = new_user(&s);
    let r = s
        .admin("PATCH", &format!("/users/{}/quota", u.pk))
        .header("content-type", "application/json")
        .body(br#"{"storage_quota_mb": "unlimited"}"#.to_vec())
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let url = s.storage_url(&u.pk, "/pub/big.bin");
    for size in [2 << 20, 3 << 20, 1024] {
        let r = s
            .req("PUT", &url)
            .bearer(&u.token)
            .body(vec![7u8; size])
            .send();
        assert_eq!(r.status, 201, "{size}: {}", r.text());
    }
    assert_eq!(s.req("GET", &url).send().body.len(), 1024);
}

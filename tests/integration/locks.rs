//! WebDAV write locks over real sockets: LOCK, refresh, UNLOCK, writes with and without the
//! token on both addressings, the reference's statuses and bodies, disabled accounts.

use crate::support as common;

use common::{new_user, put_file, Resp, Server, User};

fn lock(s: &Server, u: &User, path: &str, extra: &[(&str, &str)]) -> Resp {
    let mut r = s.req("LOCK", &s.storage_url(&u.pk, path)).bearer(&u.token);
    for (k, v) in extra {
        r = r.header(k, v);
    }
    r.send()
}

fn token_of(r: &Resp) -> String {
    let t = r.header("lock-token").expect("a new lock has a Lock-Token");
    let t = t
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap();
    assert!(t.starts_with("opaquelocktoken:"), "{t}");
    t.to_string()
}

fn write(s: &Server, u: &User, method: &str, url: &str, r#if: Option<&str>) -> Resp {
    let mut r = s.req(method, url).bearer(&u.token).body("v2");
    if let Some(v) = r#if {
        r = r.header("if", v);
    }
    r.send()
}

#[test]
fn a_lock_keeps_other_writers_out_until_it_is_released() {
    let s = Server::start("");
    let u = new_user(&s);
    put_file(&s, &u, "/pub/doc.txt", b"v1");
    let url = s.storage_url(&u.pk, "/pub/doc.txt");

    let r = lock(&s, &u, "/pub/doc.txt", &[("timeout", "Second-20")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("timeout"), Some("Second-20"));
    assert_eq!(
        r.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    let token = token_of(&r);
    let body = r.text();
    assert!(
        body.contains(&format!("<D:href>{token}</D:href>")),
        "{body}"
    );
    assert!(body.contains("<D:exclusive/>") && body.contains("<D:depth>0</D:depth>"));
    assert!(
        body.contains(&format!("/storage/{}/pub/doc.txt", u.pk)),
        "{body}"
    );

    // A second LOCK, a write without the token (both addressings), a wrong token.
    let again = lock(&s, &u, "/pub/doc.txt", &[]);
    assert_eq!(
        (again.status, again.text().as_str()),
        (423, "Resource is locked")
    );
    assert_eq!(write(&s, &u, "PUT", &url, None).status, 423);
    assert_eq!(write(&s, &u, "DELETE", &url, None).status, 423);
    let legacy = s
        .req("PUT", "/pub/doc.txt")
        .header("pubky-host", &u.pk.to_string())
        .bearer(&u.token)
        .body("v2")
        .send();
    assert_eq!(legacy.status, 423, "legacy writes respect locks too");
    let stale = write(&s, &u, "PUT", &url, Some("(<opaquelocktoken:nope>)"));
    assert_eq!(stale.status, 412);
    assert_eq!(
        stale.text(),
        "The If header does not name the live lock on this path"
    );
    assert_eq!(s.req("GET", &url).send().text(), "v1", "nothing landed");

    // The holder writes with its token; the lock stays.
    let with = format!("(<{token}>)");
    assert_eq!(write(&s, &u, "PUT", &url, Some(&with)).status, 201);
    assert_eq!(s.req("GET", &url).send().text(), "v2");
    assert_eq!(write(&s, &u, "PUT", &url, None).status, 423);

    // Refresh: no new Lock-Token, the same token in the body.
    let r = lock(
        &s,
        &u,
        "/pub/doc.txt",
        &[("if", &with), ("timeout", "Infinite")],
    );
    assert_eq!(r.status, 200);
    assert!(r.header("lock-token").is_none());
    assert_eq!(r.header("timeout"), Some("Second-60"));
    assert!(r.text().contains(&token));

    // UNLOCK: the token (brackets optional), then the path is free.
    let unlock = |t: &str| {
        s.req("UNLOCK", &url)
            .bearer(&u.token)
            .header("lock-token", t)
            .send()
    };
    assert_eq!(unlock("").status, 400);
    let r = unlock("<opaquelocktoken:other>");
    assert_eq!(
        (r.status, r.text().as_str()),
        (409, "No lock with this token on this path")
    );
    assert_eq!(unlock(&token).status, 204);
    assert_eq!(write(&s, &u, "PUT", &url, None).status, 201);
    // A token that was live is now stale: 412, so its holder learns the lock is gone.
    assert_eq!(write(&s, &u, "PUT", &url, Some(&with)).status, 412);
}

#[test]
fn locks_need_a_writer_and_a_file() {
    let s = Server::start("");
    let u = new_user(&s);
    let other = new_user(&s);
    let url = s.storage_url(&u.pk, "/pub/x");
    let r = s.req("LOCK", &url).send();
    assert_eq!((r.status, r.text().as_str()), (401, "Unauthorized"));
    let r = s.req("LOCK", &url).bearer(&other.token).send();
    assert_eq!(r.status, 403);
    assert_eq!(lock(&s, &u, "/pub/dir/", &[]).status, 400);
    assert_eq!(lock(&s, &u, "/elsewhere/x", &[]).status, 403);
    // A free path may be locked: nothing is created.
    let r = lock(&s, &u, "/pub/x", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("timeout"),
        Some("Second-30"),
        "the default lifetime"
    );
    assert_eq!(s.req("GET", &url).send().status, 404);
    // Only exclusive write locks, from a small lockinfo.
    let shared = "<D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:shared/></D:lockscope>\
                  <D:locktype><D:write/></D:locktype></D:lockinfo>";
    let r = s
        .req("LOCK", &s.storage_url(&u.pk, "/pub/y"))
        .bearer(&u.token)
        .body(shared)
        .send();
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "Only exclusive write locks are supported");
    let huge = format!(
        "<lockinfo><exclusive/><write/>{}</lockinfo>",
        " ".repeat(17_000)
    );
    let r = s
        .req("LOCK", &s.storage_url(&u.pk, "/pub/y"))
        .bearer(&u.token)
        .body(huge)
        .send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (413, "lockinfo body too large")
    );
    // Legacy routes cannot take locks.
    let r = s
        .req("LOCK", "/pub/x")
        .header("pubky-host", &u.pk.to_string())
        .bearer(&u.token)
        .send();
    assert_eq!(r.status, 405);
    let info = s.req("GET", "/info").send().text();
    assert!(info.contains("\"webdav-locks\""), "{info}");
}

#[test]
fn a_disabled_account_may_release_but_not_lock() {
    let s = Server::start("");
    let u = new_user(&s);
    let token = token_of(&lock(&s, &u, "/pub/a", &[]));
    let r = s.admin("POST", &format!("/users/{}/disable", u.pk)).send();
    assert!(r.status < 300, "{}", r.text());
    assert_eq!(lock(&s, &u, "/pub/b", &[]).status, 403);
    let r = s
        .req("UNLOCK", &s.storage_url(&u.pk, "/pub/a"))
        .bearer(&u.token)
        .header("lock-token", &format!("<{token}>"))
        .send();
    assert_eq!(r.status, 204, "{}", r.text());
}

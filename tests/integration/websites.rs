//! Users' static websites by `Host`, over real sockets: indexes, redirects, the site's own
//! 404 page, label sites, proxy domains, HEAD and conditional requests, web file types, API
//! paths that stay the API, cookies that stay out, disabled owners and the switch.

use crate::support as common;

use common::{new_user, put_file, Server};

fn get(s: &Server, host: &str, path: &str) -> common::Resp {
    s.req("GET", path).header("host", host).send()
}

#[test]
fn indexes_redirects_and_the_sites_own_404_page() {
    let s = Server::start("");
    let u = new_user(&s);
    let key = u.pk.to_string();
    put_file(&s, &u, "/pub/website/_/index.html", b"home");
    put_file(&s, &u, "/pub/website/_/docs/index.html", b"docs");
    put_file(&s, &u, "/pub/website/_/404.html", b"missing");
    put_file(&s, &u, "/pub/website/blog/index.html", b"blog");

    let r = get(&s, &key, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "home"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r.header("set-cookie").is_none());

    assert_eq!(get(&s, &key, "/docs/").text(), "docs");
    let r = get(&s, &key, "/docs?lang=en");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/?lang=en"));

    let r = get(&s, &key, "/nope.html");
    assert_eq!((r.status, r.text().as_str()), (404, "missing"));
    assert!(r.header("etag").is_none(), "a missing page has no version");
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    // A folder without an index never lists its files.
    put_file(&s, &u, "/pub/website/_/assets/logo.svg", b"<svg/>");
    assert_eq!(get(&s, &key, "/assets/").text(), "missing");
    // `..` cannot climb out of the site's folder.
    assert_eq!(get(&s, &key, "/a/%2e%2e/docs/").text(), "docs");
    assert_eq!(get(&s, &key, "/..%2F..%2Fpub/x").status, 400);

    // A label site is its own folder and never falls back to another site's pages.
    let blog = format!("blog.{key}");
    assert_eq!(get(&s, &blog, "/").text(), "blog");
    let r = get(&s, &blog, "/docs/");
    assert_eq!(r.status, 404);
    assert_ne!(r.text(), "missing");
    // The port and a trailing dot are part of how browsers spell Hosts.
    assert_eq!(get(&s, &format!("{key}.:6286"), "/").text(), "home");
}

#[test]
fn head_and_conditional_requests_match_get() {
    let s = Server::start("");
    let u = new_user(&s);
    let key = u.pk.to_string();
    put_file(&s, &u, "/pub/website/_/index.html", b"home");
    let got = get(&s, &key, "/");
    let head = s.req("HEAD", "/").header("host", &key).send();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("4"));
    assert!(head.body.is_empty());
    let etag = got.header("etag").expect("a page has an ETag").to_string();
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    for method in ["GET", "HEAD"] {
        let r = s
            .req(method, "/")
            .header("host", &key)
            .header("if-none-match", &etag)
            .send();
        assert_eq!(r.status, 304, "{method}");
        assert_eq!(r.header("cache-control"), Some("no-cache"));
    }
    let r = s.req("HEAD", "/missing").header("host", &key).send();
    assert_eq!(r.status, 404);
}

#[test]
fn web_file_types_are_served_as_browsers_need_them() {
    let s = Server::start("");
    let u = new_user(&s);
    let key = u.pk.to_string();
    let files: [(&str, &[u8], &str); 5] = [
        ("page.html", b"<!doctype html><p>hi</p>", "text/html"),
        ("style.css", b"body { color: red; }", "text/css"),
        ("app.js", b"console.log(1);", "text/javascript"),
        ("app.wasm", b"\0asm\x01\0\0\0", "application/wasm"),
        (
            "logo.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            "image/svg+xml",
        ),
    ];
    for (name, body, _) in files {
        put_file(&s, &u, &format!("/pub/website/_/{name}"), body);
    }
    for (name, _, ty) in files {
        let r = get(&s, &key, &format!("/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(ty), "{name}");
    }
}

#[test]
fn api_paths_other_hosts_cookies_and_disabled_owners() {
    let s = Server::start("");
    let u = new_user(&s);
    let key = u.pk.to_string();
    put_file(&s, &u, "/pub/website/_/index.html", b"home");
    put_file(&s, &u, "/pub/data.txt", b"data");

    // Legacy API reads stay the API on the user's Host, also through the SDK's `_pubky`.
    for host in [key.clone(), format!("_pubky.{key}")] {
        let r = get(&s, &host, "/pub/data.txt");
        assert_eq!(r.text(), "data", "{host}");
        assert_eq!(r.header("vary"), Some("pubky-host"));
    }
    let info = get(&s, &key, "/info");
    assert!(info.text().contains("\"websites\""), "{}", info.text());
    // The homeserver's own key and other names are not sites.
    assert_eq!(get(&s, &s.pk.to_string(), "/").text(), "Pubky Homeserver");
    assert_eq!(get(&s, "localhost", "/").text(), "Pubky Homeserver");
    // The owner comes from Host alone; pubky-host cannot redirect a page.
    let other = new_user(&s);
    put_file(&s, &other, "/pub/website/_/index.html", b"other's");
    let r = s
        .req("GET", "/")
        .header("host", &key)
        .header("pubky-host", &other.pk.to_string())
        .send();
    assert_eq!(r.text(), "home");
    // Writes on a site Host are the API's (and need a session), never a page.
    let r = s.req("PUT", "/index.html").header("host", &key).send();
    assert_ne!(r.status, 200);
    // A key with no account has no site.
    let stranger = common::pk_of(&common::random_key()).to_string();
    assert_eq!(get(&s, &stranger, "/").status, 404);

    let r = s.admin("POST", &format!("/users/{key}/disable")).send();
    assert!(r.status < 300, "{} {}", r.status, r.text());
    let r = get(&s, &key, "/");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn proxy_domains_name_sites_too() {
    let s = Server::start("[drive]\nwebsite_domains = [\"sites.example.org\"]\n");
    let u = new_user(&s);
    let key = u.pk.to_string();
    put_file(&s, &u, "/pub/website/_/index.html", b"home");
    put_file(&s, &u, "/pub/website/blog/index.html", b"blog");
    assert_eq!(
        get(&s, &format!("{key}.sites.example.org"), "/").text(),
        "home"
    );
    let blog = format!("blog.{key}.sites.example.org:443");
    assert_eq!(get(&s, &blog, "/").text(), "blog");
    // Another domain does not name a site.
    let r = get(&s, &format!("{key}.elsewhere.example"), "/");
    assert_eq!(r.text(), "Pubky Homeserver");
}

#[test]
fn switched_off_websites_keep_the_api_answers() {
    let s = Server::start("[drive]\nwebsites = false\n");
    let u = new_user(&s);
    let key = u.pk.to_string();
    put_file(&s, &u, "/pub/website/_/index.html", b"home");
    assert_eq!(get(&s, &key, "/").text(), "Pubky Homeserver");
    assert_eq!(get(&s, &key, "/index.html").status, 403);
    let info = s.req("GET", "/info").send().text();
    assert!(!info.contains("websites"), "{info}");
}

/// A page on a user's site cannot read that user's private files with a cookie: a
/// same-origin request without `Origin` comes from a page served from this Host.
#[test]
fn a_site_page_cannot_spend_a_cookie_on_private_reads() {
    let s = Server::start("");
    let key = common::random_key();
    let pk = common::pk_of(&key).to_string();
    let now_us = common::now() * 1_000_000;
    let token = pubky_edge::auth::auth_token::sign(&key, now_us, "/:rw");
    let r = s
        .req("POST", "/signup")
        .header("host", &pk)
        .body(token)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let put = s
        .req("PUT", "/priv/secret.txt")
        .header("host", &pk)
        .header("cookie", &cookie)
        .body("secret")
        .send();
    assert_eq!(put.status, 201, "{}", put.text());
    let read = |site: Option<&str>| {
        let mut r = s
            .req("GET", "/priv/secret.txt")
            .header("host", &pk)
            .header("cookie", &cookie);
        if let Some(v) = site {
            r = r.header("sec-fetch-site", v);
        }
        r.send().status
    };
    assert_eq!(read(None), 200, "no browser headers: a native client");
    assert_eq!(read(Some("none")), 200, "typed into the address bar");
    assert_eq!(read(Some("same-origin")), 401, "a page of the site");
    assert_eq!(read(Some("cross-site")), 401);
}

//! Cookie sessions (AuthToken sign-in) against a real server: signup, session create/get/
//! delete, cookie attributes, the time window, replay protection, and the cookie acting as
//! a credential on storage routes and private event streams.

use crate::support as common;

use common::sse::Sse;
use common::*;
use pubky_edge::auth::auth_token;

/// Microseconds, so two tokens signed in a row differ (the replay id is timestamp + key).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn token(key: &ed25519_dalek::SigningKey, caps: &str) -> Vec<u8> {
    auth_token::sign(key, now_us(), caps)
}

/// `(cookie name=value, response)`
fn cookie_of(r: &Resp) -> String {
    let c = r.header("set-cookie").expect("set-cookie");
    c.split(';').next().unwrap().to_string()
}

#[test]
fn signup_session_and_storage_with_a_cookie() {
    let s = Server::start("");
    let key = random_key();
    let pk = pk_of(&key).to_z32();
    let r = s.req("POST", "/signup").body(token(&key, "/:rw")).send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body[0], 0);
    assert_eq!(&r.body[1..33], pk_of(&key).as_bytes());
    assert!(r.body.ends_with(&[1, 4, b'/', b':', b'r', b'w']));
    let set = r.header("set-cookie").unwrap();
    assert!(set.starts_with(&format!("{pk}=")));
    assert!(set.contains("; Path=/; HttpOnly; Max-Age=31536000; Expires="));
    assert!(!set.contains("Secure"), "localhost is not secure: {set}");
    let cookie = cookie_of(&r);
    assert_eq!(cookie.len(), 52 + 1 + 26);

    // the cookie writes like a bearer, on both addressing forms
    let put = s
        .req("PUT", "/pub/hello.txt")
        .header("pubky-host", &pk)
        .header("cookie", &cookie)
        .body(b"hi".to_vec())
        .send();
    assert_eq!(put.status, 201, "{}", put.text());
    let put = s
        .req("PUT", &format!("/storage/{pk}/priv/x"))
        .header("cookie", &format!("other=1; {cookie}"))
        .body(b"hi".to_vec())
        .send();
    assert_eq!(put.status, 201);

    let get = s
        .req("GET", "/session")
        .header("pubky-host", &pk)
        .header("cookie", &cookie)
        .send();
    assert_eq!(get.status, 200);
    assert_eq!(&get.body[1..33], pk_of(&key).as_bytes());
    assert_eq!(
        s.req("GET", "/session")
            .header("pubky-host", &pk)
            .send()
            .status,
        401
    );
    assert_eq!(s.req("GET", "/session").send().status, 400);

    // a second sign-in with a fresh token works; the replayed first token does not
    let t = token(&key, "/pub/app/:rw");
    let r = s.req("POST", "/session").body(t.clone()).send();
    assert_eq!(r.status, 200);
    let narrow = cookie_of(&r);
    let r = s.req("POST", "/session").body(t).send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "AuthToken already used")
    );
    let put = s
        .req("PUT", "/pub/other.txt")
        .header("pubky-host", &pk)
        .header("cookie", &narrow)
        .body(b"x".to_vec())
        .send();
    assert_eq!(put.status, 403);

    // sign out: the cookie is cleared and no longer works
    let del = s
        .req("DELETE", "/session")
        .header("pubky-host", &pk)
        .header("cookie", &cookie)
        .send();
    assert_eq!(del.status, 200);
    assert!(del.header("set-cookie").unwrap().contains("Max-Age=0"));
    let put = s
        .req("PUT", "/pub/hello.txt")
        .header("pubky-host", &pk)
        .header("cookie", &cookie)
        .body(b"x".to_vec())
        .send();
    assert_eq!(put.status, 401);
    assert_eq!(
        s.req("DELETE", "/session")
            .header("pubky-host", &pk)
            .send()
            .status,
        200
    );
    assert_eq!(s.req("DELETE", "/session").send().status, 400);
}

#[test]
fn bad_tokens_and_account_rules() {
    let s = Server::start("");
    let key = random_key();
    let old = auth_token::sign(&key, now_us() - 200_000_000, "/:rw");
    let r = s.req("POST", "/signup").body(old).send();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("more than 3 minutes in the past"));
    let future = auth_token::sign(&key, now_us() + 200_000_000, "/:rw");
    assert_eq!(s.req("POST", "/signup").body(future).send().status, 400);
    assert_eq!(
        s.req("POST", "/signup").body(vec![0u8; 40]).send().status,
        400
    );
    let mut forged = token(&key, "/:rw");
    forged[5] ^= 1;
    let r = s.req("POST", "/signup").body(forged).send();
    assert_eq!((r.status, r.text().as_str()), (400, "Invalid Signature"));
    let r = s.req("POST", "/session").body(token(&key, "/:rw")).send();
    assert_eq!(r.status, 404);
    assert_eq!(
        s.req("POST", "/signup")
            .body(token(&key, "/:rw"))
            .send()
            .status,
        200
    );
    let r = s.req("POST", "/signup").body(token(&key, "/:rw")).send();
    assert_eq!((r.status, r.text().as_str()), (409, "User already exists"));
    let r = s
        .req("POST", "/signup?signup_token=bad")
        .body(token(&random_key(), "/:rw"))
        .send();
    assert_eq!(r.status, 400);
    assert_eq!(s.req("PUT", "/session").send().status, 405);
    let big = vec![0u8; 200_000];
    assert_eq!(s.req("POST", "/session").body(big).send().status, 413);
}

#[test]
fn token_required_signup_and_cookie_precedence() {
    let s = Server::start("[general]\nsignup_mode = \"token_required\"\n");
    let key = random_key();
    let r = s.req("POST", "/signup").body(token(&key, "/:rw")).send();
    assert_eq!((r.status, r.text().as_str()), (400, "Token required"));
    let t = s.admin("GET", "/generate_signup_token").send().text();
    let r = s
        .req("POST", &format!("/signup?signup_token={t}"))
        .body(token(&key, "/:rw"))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = cookie_of(&r);
    let pk = pk_of(&key);
    // another user's cookie is never selected
    let other = random_key();
    let t2 = s.admin("GET", "/generate_signup_token").send().text();
    let r2 = s
        .req("POST", &format!("/signup?signup_token={t2}"))
        .body(token(&other, "/:rw"))
        .send();
    let other_cookie = cookie_of(&r2);
    let put = s
        .req("PUT", &format!("/storage/{pk}/pub/x"))
        .header("cookie", &other_cookie)
        .body(b"x".to_vec())
        .send();
    assert_eq!(put.status, 401);
    // private event stream: the cookie authenticates a single-user stream …
    let q = format!("/events-stream?user={pk}&path=/priv/");
    let ok = Sse::open(s.addr, &q, &[("cookie", cookie.as_str())]);
    assert_eq!(ok.status, 200);
    // … but any bearer, even an invalid one, disables it
    let bearer = "Bearer abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let no = Sse::open(
        s.addr,
        &q,
        &[("cookie", cookie.as_str()), ("authorization", bearer)],
    );
    assert_eq!(no.status, 401);
    // on storage an invalid bearer falls back to the cookie
    let put = s
        .req("PUT", &format!("/storage/{pk}/pub/y"))
        .header("cookie", &cookie)
        .header("authorization", bearer)
        .body(b"x".to_vec())
        .send();
    assert_eq!(put.status, 201);
}

#[test]
fn secure_cookie_for_domains() {
    let s = Server::start("");
    let key = random_key();
    let r = s
        .req("POST", "/signup")
        .header("host", "example.com")
        .body(token(&key, "/:rw"))
        .send();
    assert_eq!(r.status, 200);
    assert!(r
        .header("set-cookie")
        .unwrap()
        .ends_with("; Secure; SameSite=None"));
}

/// A token for the identity key (a small-order point) signed with R = identity and s = 0
/// passes a non-strict check; it must neither create an account nor sign in, and the key
/// is no tenant in a URL either.
#[test]
fn a_forged_small_order_token_creates_nothing() {
    let s = Server::start("");
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut t = vec![0u8; 64];
    t[0] = 1;
    t.extend_from_slice(auth_token::NAMESPACE);
    t.push(0);
    t.extend_from_slice(&now_us().to_be_bytes());
    t.extend_from_slice(&identity);
    t.push(4);
    t.extend_from_slice(b"/:rw");
    let r = s.req("POST", "/signup").body(t.clone()).send();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.header("set-cookie").is_none());
    let mut again = t;
    again[75..83].copy_from_slice(&(now_us() + 1).to_be_bytes());
    assert_eq!(s.req("POST", "/session").body(again).send().status, 400);
    let z32 = pubky_edge::pubkey::encode_z32(&identity);
    let r = s.req("GET", &format!("/storage/{z32}/pub/x")).send();
    assert_eq!(r.status, 400, "{}", r.text());
    let users = s.admin("GET", "/info").send();
    assert!(users.text().contains("\"num_users\":0"), "{}", users.text());
}

/// Signs up with a cookie from `origin` (or none); returns the `name=secret` cookie.
fn cookie_signup(s: &Server, key: &ed25519_dalek::SigningKey, origin: Option<&str>) -> String {
    let mut req = s.req("POST", "/signup").body(token(key, "/:rw"));
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let r = req.send();
    assert_eq!(r.status, 200, "{}", r.text());
    cookie_of(&r)
}

#[test]
fn a_cookie_works_only_for_the_origin_that_signed_in() {
    let s = Server::start("");
    let key = random_key();
    let pk = pk_of(&key).to_z32();
    let app = "http://127.0.0.1:7001";
    let cookie = cookie_signup(&s, &key, Some(app));
    let url = format!("/storage/{pk}/priv/diary.txt");
    let put = |origin: Option<&str>, site: Option<&str>| {
        let mut r = s
            .req("PUT", &url)
            .header("cookie", &cookie)
            .body("dear diary");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(v) = site {
            r = r.header("sec-fetch-site", v);
        }
        r.send().status
    };
    let get = |origin: &str| {
        s.req("GET", &url)
            .header("cookie", &cookie)
            .header("origin", origin)
            .send()
    };
    assert_eq!(put(Some(app), Some("cross-site")), 201);
    let r = get(app);
    assert_eq!((r.status, r.text().as_str()), (200, "dear diary"));
    // another page: the cookie is not a credential there
    let evil = "http://127.0.0.1:7002";
    assert_eq!(get(evil).status, 401);
    assert_eq!(put(Some(evil), Some("cross-site")), 401);
    assert_eq!(put(Some("null"), None), 401);
    // a tag or link on another site carries no origin but says where it comes from
    assert_eq!(put(None, Some("cross-site")), 401);
    let r = s
        .req("GET", &url)
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .send();
    assert_eq!(r.status, 401);
    // another page cannot sign the user out either
    let out = s
        .req("DELETE", "/session")
        .header("pubky-host", &pk)
        .header("cookie", &cookie)
        .header("origin", evil)
        .send();
    assert_eq!(out.status, 200);
    assert_eq!(
        get(app).status,
        200,
        "the session survived a foreign sign-out"
    );
    // a native client (no browser headers) holding the secret still works
    assert_eq!(put(None, None), 201);
}

#[test]
fn a_native_clients_cookie_is_no_use_to_a_web_page() {
    let s = Server::start("");
    let key = random_key();
    let pk = pk_of(&key).to_z32();
    let cookie = cookie_signup(&s, &key, None);
    let url = format!("/storage/{pk}/priv/x");
    let put = |origin: Option<&str>| {
        let mut r = s.req("PUT", &url).header("cookie", &cookie).body("x");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send().status
    };
    assert_eq!(put(None), 201);
    assert_eq!(put(Some("http://127.0.0.1:7001")), 401);
}

#[test]
fn the_database_holds_no_working_cookie() {
    let s = Server::start("");
    let key = random_key();
    let cookie = cookie_signup(&s, &key, None);
    let secret = cookie.split_once('=').unwrap().1.to_string();
    let dir = s.data_dir.clone();
    let _kept = s.stop();
    let mut found = Vec::new();
    for entry in walk(&dir) {
        let bytes = std::fs::read(&entry).unwrap();
        if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            found.push(entry);
        }
    }
    assert!(found.is_empty(), "secret found in {found:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

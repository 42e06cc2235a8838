//! Grant authentication against a real server: signup in both modes, sessions, sign-out in
//! both forms, grant management, and every rejection the spec names (forged, expired,
//! replayed, wrong audience, out-of-scope writes).

use crate::support as common;

use common::*;

fn json_of(r: &Resp) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

#[test]
fn signup_session_revalidate_signout() {
    let s = Server::start("");
    let key = random_key();
    let g = GrantSpec::new(&key, s.pk, "pubky.signup", "/:rw", 300);
    let r = s.req("POST", "/auth/grant/signup").json(&g.body()).send();
    assert_eq!(r.status, 204, "{}", r.text());
    // signing up twice is a conflict
    let g2 = GrantSpec::new(&key, s.pk, "pubky.signup", "/:rw", 300);
    let r = s.req("POST", "/auth/grant/signup").json(&g2.body()).send();
    assert_eq!((r.status, r.text().as_str()), (409, "User already exists"));

    let g = GrantSpec::new(&key, s.pk, "test.app", "/pub/app/:rw,/priv/app/:r", 86400);
    let r = s.req("POST", "/auth/grant/session").json(&g.body()).send();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json_of(&r);
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 43);
    assert_eq!(v["session"]["pubky"], pk_of(&key).to_z32());
    assert_eq!(v["session"]["homeserver"], s.pk.to_z32());
    assert_eq!(v["session"]["client_id"], "test.app");
    assert_eq!(v["session"]["grant_id"], g.jti);
    assert_eq!(
        v["session"]["capabilities"],
        serde_json::json!(["/pub/app/:rw", "/priv/app/:r"])
    );
    let exp = v["session"]["token_expires_at"].as_u64().unwrap();
    assert!(exp <= now() + 3600 && exp > now());

    let r = s.req("GET", "/auth/grant/session").bearer(&token).send();
    assert_eq!(r.status, 200);
    assert_eq!(json_of(&r)["grant_id"], g.jti);

    // the session's capabilities are enforced
    let pk = pk_of(&key);
    let ok = s
        .req("PUT", &s.storage_url(&pk, "/pub/app/x"))
        .bearer(&token)
        .body("1")
        .send();
    assert_eq!(ok.status, 201);
    let r = s
        .req("PUT", &s.storage_url(&pk, "/pub/other/x"))
        .bearer(&token)
        .body("1")
        .send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "Session does not have write access to path")
    );
    let r = s
        .req("PUT", &s.storage_url(&pk, "/priv/app/x"))
        .bearer(&token)
        .body("1")
        .send();
    assert_eq!(r.status, 403);
    let r = s
        .req("PUT", &s.storage_url(&pk, "/pub/app-evil/x"))
        .bearer(&token)
        .body("1")
        .send();
    assert_eq!(r.status, 403);

    // bearer sign-out, then the token is dead; repeating is a 200 no-op
    let r = s.req("DELETE", "/auth/grant/session").bearer(&token).send();
    assert_eq!(r.status, 200);
    assert_eq!(
        s.req("GET", "/auth/grant/session")
            .bearer(&token)
            .send()
            .status,
        401
    );
    assert_eq!(
        s.req("DELETE", "/auth/grant/session")
            .bearer(&token)
            .send()
            .status,
        200
    );
    let r = s
        .req("PUT", &s.storage_url(&pk, "/pub/app/y"))
        .bearer(&token)
        .body("1")
        .send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "No authenticated session found")
    );
    // a revoked grant cannot mint a new session
    let r = s.req("POST", "/auth/grant/session").json(&g.body()).send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Grant has been revoked")
    );
}

#[test]
fn proof_signout_and_grant_management() {
    let s = Server::start("");
    let u = new_user(&s);
    let app = GrantSpec::new(&u.key, s.pk, "chat.app", "/pub/chat/:rw", 86400);
    let r = s
        .req("POST", "/auth/grant/session")
        .json(&app.body())
        .send();
    assert_eq!(r.status, 200);
    let app_token = json_of(&r)["token"].as_str().unwrap().to_string();
    // a new session on the same grant replaces the previous bearer
    let r = s
        .req("POST", "/auth/grant/session")
        .json(&app.body())
        .send();
    let app_token2 = json_of(&r)["token"].as_str().unwrap().to_string();
    assert_eq!(
        s.req("GET", "/auth/grant/session")
            .bearer(&app_token)
            .send()
            .status,
        401
    );
    assert_eq!(
        s.req("GET", "/auth/grant/session")
            .bearer(&app_token2)
            .send()
            .status,
        200
    );

    let r = s.req("GET", "/auth/grant/sessions").bearer(&u.token).send();
    assert_eq!(r.status, 200);
    let list = json_of(&r);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grant_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&app.jti.as_str()), "{list}");
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grant_id"] == app.jti)
        .unwrap();
    assert_eq!(entry["capabilities"], "/pub/chat/:rw");
    assert_eq!(entry["client_id"], "chat.app");
    // a non-root session may not manage grants
    let r = s
        .req("GET", "/auth/grant/sessions")
        .bearer(&app_token2)
        .send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "Root capability required")
    );
    // revoke by id
    let r = s
        .req("DELETE", &format!("/auth/grant/session/{}", app.jti))
        .bearer(&u.token)
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(
        s.req("GET", "/auth/grant/session")
            .bearer(&app_token2)
            .send()
            .status,
        401
    );
    let r = s
        .req("DELETE", "/auth/grant/session/not.valid")
        .bearer(&u.token)
        .send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Invalid grant ID format")
    );
    let r = s
        .req("DELETE", "/auth/grant/session/AAAAAAAAAAAAAAAAAAAAAA")
        .bearer(&u.token)
        .send();
    assert_eq!(r.status, 404);
    // another user's grant
    let other = new_user(&s);
    let og = GrantSpec::new(&other.key, s.pk, "x.app", "/pub/x/:r", 86400);
    assert_eq!(
        s.req("POST", "/auth/grant/session")
            .json(&og.body())
            .send()
            .status,
        200
    );
    let r = s
        .req("DELETE", &format!("/auth/grant/session/{}", og.jti))
        .bearer(&u.token)
        .send();
    assert_eq!(r.status, 403);

    // proof sign-out (no bearer): revokes, and is idempotent
    let p = GrantSpec::new(&u.key, s.pk, "p.app", "/pub/p/:rw", 86400);
    let r = s.req("POST", "/auth/grant/session").json(&p.body()).send();
    let ptoken = json_of(&r)["token"].as_str().unwrap().to_string();
    let mut proof = p;
    proof.pop_iat = now();
    let r = s
        .req("DELETE", "/auth/grant/session")
        .json(&proof.body())
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        s.req("GET", "/auth/grant/session")
            .bearer(&ptoken)
            .send()
            .status,
        401
    );
    let r = s
        .req("DELETE", "/auth/grant/session")
        .json(&proof.body())
        .send();
    assert_eq!(r.status, 200);
    // no credentials at all: 200 no-op
    assert_eq!(s.req("DELETE", "/auth/grant/session").send().status, 200);
}

#[test]
fn forged_expired_replayed_and_misaddressed_proofs() {
    let s = Server::start("");
    let u = new_user(&s);
    let post = |body: serde_json::Value| s.req("POST", "/auth/grant/session").json(&body).send();

    // grant signed by another key than its issuer
    let g = GrantSpec::new(&u.key, s.pk, "a.app", "/:rw", 3600);
    let forged_jws = {
        let mut f = GrantSpec::new(&u.key, s.pk, "a.app", "/:rw", 3600);
        f.user = random_key();
        let j = f.grant_jws();
        // put the real issuer's claims in front of the forged signature
        let real = g.grant_jws();
        let parts: Vec<&str> = real.split('.').collect();
        let fparts: Vec<&str> = j.split('.').collect();
        format!("{}.{}.{}", parts[0], parts[1], fparts[2])
    };
    let r = post(serde_json::json!({"grant": forged_jws, "pop": g.pop_jws()}));
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Invalid grant: invalid grant signature")
    );

    // expired grant
    let mut e = GrantSpec::new(&u.key, s.pk, "a.app", "/:rw", 3600);
    e.iat = now() - 7200;
    e.exp = now() - 10;
    let r = post(e.body());
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Invalid grant: grant has expired")
    );

    // PoP for another homeserver
    let mut a = GrantSpec::new(&u.key, s.pk, "a.app", "/:rw", 3600);
    a.aud = pk_of(&random_key());
    let r = post(a.body());
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Invalid PoP proof: PoP audience mismatch")
    );

    // stale PoP
    let mut st = GrantSpec::new(&u.key, s.pk, "a.app", "/:rw", 3600);
    st.pop_iat = now() - 181;
    let r = post(st.body());
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Invalid PoP proof: PoP timestamp out of range")
    );

    // PoP signed by a key other than the grant's cnf
    let good = GrantSpec::new(&u.key, s.pk, "a.app", "/:rw", 3600);
    let mut wrong = GrantSpec::new(&u.key, s.pk, "a.app", "/:rw", 3600);
    wrong.jti = good.jti.clone();
    let r = post(serde_json::json!({"grant": good.grant_jws(), "pop": wrong.pop_jws()}));
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Invalid PoP proof: invalid PoP signature")
    );

    // replayed PoP: the same proof twice
    let body = good.body();
    assert_eq!(post(body.clone()).status, 200);
    let r = post(body);
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "PoP nonce already used")
    );

    // session for an unknown user
    let stranger = GrantSpec::new(&random_key(), s.pk, "a.app", "/:rw", 3600);
    assert_eq!(post(stranger.body()).status, 404);

    // body shape errors
    let r = s
        .req("POST", "/auth/grant/session")
        .body("{\"grant\":1}")
        .send();
    assert_eq!(r.status, 415);
    let r = s
        .req("POST", "/auth/grant/session")
        .header("content-type", "application/json")
        .body("{not json")
        .send();
    assert_eq!(r.status, 400);
    let r = post(serde_json::json!({"grant": "abc", "pop": "def"}));
    assert_eq!(r.status, 422);
    let r = post(serde_json::json!({"grant": "a.b.c", "pop": "d.e.f"}));
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Invalid grant: invalid grant format")
    );
    let r = s
        .req("POST", "/auth/grant/session")
        .header("content-type", "application/json")
        .body(vec![b' '; 100_000])
        .send();
    assert_eq!(r.status, 413);
    // garbage and unknown bearers are simply "no session"
    let r = s
        .req("GET", "/auth/grant/session")
        .bearer("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send();
    assert_eq!(r.status, 401);
    let r = s
        .req("GET", "/auth/grant/session")
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send();
    assert_eq!(r.status, 401);
}

#[test]
fn signup_grant_rules() {
    let s = Server::start("");
    let post = |g: &GrantSpec| s.req("POST", "/auth/grant/signup").json(&g.body()).send();
    let k = random_key();
    let r = post(&GrantSpec::new(&k, s.pk, "not.signup", "/:rw", 300));
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "signup grants must use client_id pubky.signup")
    );
    let r = post(&GrantSpec::new(&k, s.pk, "pubky.signup", "/pub/:rw", 300));
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "Root capability required")
    );
    let r = post(&GrantSpec::new(&k, s.pk, "pubky.signup", "/:rw", 301));
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "signup grant lifetime exceeds 5 minutes")
    );
    let r = s
        .req("POST", "/auth/grant/signup?signup_token=nope")
        .json(&GrantSpec::new(&k, s.pk, "pubky.signup", "/:rw", 300).body())
        .send();
    assert_eq!(r.status, 400);
    assert!(
        r.text().starts_with("Invalid signup token format"),
        "{}",
        r.text()
    );
    // none of the rejected attempts created the account
    let g = GrantSpec::new(&k, s.pk, "test.app", "/:rw", 300);
    assert_eq!(
        s.req("POST", "/auth/grant/session")
            .json(&g.body())
            .send()
            .status,
        404
    );
}

#[test]
fn token_required_signup() {
    let s = Server::start("[general]\nsignup_mode = \"token_required\"\n");
    let k = random_key();
    let signup = |q: &str| {
        let g = GrantSpec::new(&k, s.pk, "pubky.signup", "/:rw", 300);
        s.req("POST", &format!("/auth/grant/signup{q}"))
            .json(&g.body())
            .send()
    };
    let r = signup("");
    assert_eq!((r.status, r.text().as_str()), (400, "Token required"));
    let r = signup("?signup_token=AAAA-BBBB-CCCC");
    assert_eq!((r.status, r.text().as_str()), (401, "Invalid token"));
    // a token made by the CLI path (spooled file) while the server runs
    let token = pubky_edge::auth::secrets::new_signup_token();
    pubky_edge::account::spool::enqueue(&s.data_dir, &token).unwrap();
    let st = s.req("GET", &format!("/signup_tokens/{token}")).send();
    assert_eq!(st.status, 200);
    assert_eq!(json_of(&st)["status"], "valid");
    let r = signup(&format!("?signup_token={token}"));
    assert_eq!(r.status, 204, "{}", r.text());
    let st = s.req("GET", &format!("/signup_tokens/{token}")).send();
    assert_eq!(json_of(&st)["status"], "used");
    let k2 = random_key();
    let g = GrantSpec::new(&k2, s.pk, "pubky.signup", "/:rw", 300);
    let r = s
        .req("POST", &format!("/auth/grant/signup?signup_token={token}"))
        .json(&g.body())
        .send();
    assert_eq!((r.status, r.text().as_str()), (401, "Token already used"));
    assert_eq!(
        s.req("GET", "/signup_tokens/AAAA-BBBB-CCCC").send().status,
        404
    );
    assert_eq!(s.req("GET", "/signup_tokens/bad").send().status, 400);
}

#[test]
fn info_root_cors_and_methods() {
    let s = Server::start("");
    let r = s.req("GET", "/info").send();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(
        json_of(&r),
        serde_json::json!({"features": [
            "path-addressed-storage",
            "grant-proof-logout",
            "webdav-locks",
            "websites"
        ]})
    );
    let r = s.req("GET", "/").send();
    assert_eq!((r.status, r.text().as_str()), (200, "Pubky Homeserver"));
    let r = s
        .req("OPTIONS", "/pub/x")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization, pubky-host",
        )
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, pubky-host")
    );
    let r = s.req("PATCH", &s.storage_url(&s.pk, "/pub/x")).send();
    assert_eq!(r.status, 405);
    assert_eq!(
        r.header("allow"),
        Some("GET, HEAD, PUT, DELETE, LOCK, UNLOCK")
    );
    let r = s.req("PATCH", "/pub/x").send();
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT, DELETE"));
    assert_eq!(s.req("POST", "/info").send().status, 405);
}

#[test]
fn a_grant_id_reused_by_someone_else_does_not_touch_the_owners_session() {
    let s = Server::start("");
    let victim = new_user(&s);
    // The victim's app session, under grant id X.
    let g = GrantSpec::new(&victim.key, s.pk, "victim.app", "/pub/:rw", 3600);
    let r = s.req("POST", "/auth/grant/session").json(&g.body()).send();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let bearer = v["token"].as_str().unwrap().to_string();

    // Another user signs a grant of their own with the same id X.
    let attacker = new_user(&s);
    let mut forged = GrantSpec::new(&attacker.key, s.pk, "evil.app", "/pub/:rw", 3600);
    forged.jti = g.jti.clone();
    let r = s
        .req("POST", "/auth/grant/session")
        .json(&forged.body())
        .send();
    assert_eq!(r.status, 403, "{}", r.text());
    // The same user, but another client key, is refused too.
    let mut other_client = GrantSpec::new(&victim.key, s.pk, "victim.app", "/pub/:rw", 3600);
    other_client.jti = g.jti.clone();
    let r = s
        .req("POST", "/auth/grant/session")
        .json(&other_client.body())
        .send();
    assert_eq!(r.status, 403, "{}", r.text());

    // The victim's session is untouched.
    let r = s
        .req("PUT", &s.storage_url(&victim.pk, "/pub/still.txt"))
        .bearer(&bearer)
        .body("mine")
        .send();
    assert_eq!(r.status, 201, "{}", r.text());
}

/// A request that does not concern an account here writes nothing: a session for an
/// unknown user and a signup with a bad token leave the proof's nonce unspent, so the very
/// same body works once the account or the token exists.
#[test]
fn strangers_cause_no_nonce_writes() {
    let s = Server::start("[general]\nsignup_mode = \"token_required\"\n");
    let k = random_key();
    let signup_body = GrantSpec::new(&k, s.pk, "pubky.signup", "/:rw", 300).body();
    let session_body = GrantSpec::new(&k, s.pk, "app", "/:rw", 3600).body();
    let post = |path: &str, body: &serde_json::Value| s.req("POST", path).json(body).send();
    let r = post("/auth/grant/session", &session_body);
    assert_eq!(r.status, 404, "{}", r.text());
    let r = post(
        "/auth/grant/signup?signup_token=AAAA-BBBB-CCCC",
        &signup_body,
    );
    assert_eq!((r.status, r.text().as_str()), (401, "Invalid token"));
    let token = pubky_edge::auth::secrets::new_signup_token();
    pubky_edge::account::spool::enqueue(&s.data_dir, &token).unwrap();
    let r = post(
        &format!("/auth/grant/signup?signup_token={token}"),
        &signup_body,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = post("/auth/grant/session", &session_body);
    assert_eq!(r.status, 200, "{}", r.text());
    // Spent now: a replay is refused.
    let r = post("/auth/grant/session", &session_body);
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "PoP nonce already used")
    );
}

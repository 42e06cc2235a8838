//! The admin API and the metrics listener against a real server on loopback: password,
//! signup tokens, users, disable/enable, quotas and allowed paths, entry deletion, server
//! info, the admin event stream and the Prometheus text.

use crate::support as common;

use std::time::Duration;

use common::sse::Sse;
use common::*;
use serde_json::{json, Value};

fn put(s: &Server, u: &User, path: &str, n: usize) -> Resp {
    s.req("PUT", &s.storage_url(&u.pk, path))
        .bearer(&u.token)
        .body(vec![1u8; n])
        .send()
}

fn js(r: &Resp) -> Value {
    assert!((200..300).contains(&r.status), "{} {}", r.status, r.text());
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn password_is_required_and_checked() {
    let s = Server::start("");
    let r = s.admin_raw("GET", "/").send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Homeserver - Admin Endpoint")
    );
    let r = s.admin_raw("GET", "/info").send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Missing admin password")
    );
    let r = s
        .admin_raw("GET", "/info")
        .header("x-admin-password", "admin")
        .send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Invalid admin password")
    );
    let r = s.admin_raw("GET", "/events-stream").send();
    assert_eq!(r.status, 401);
    assert_eq!(s.admin("GET", "/nope").send().status, 404);
    let r = s.admin("PUT", "/generate_signup_token").send();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, POST")));
}

#[test]
fn signup_tokens_create_list_and_redeem() {
    let s = Server::start("[general]\nsignup_mode = \"token_required\"\n");
    let t1 = s.admin("GET", "/generate_signup_token").send().text();
    assert_eq!(t1.len(), 14, "{t1}");
    let t2 = s
        .admin("POST", "/generate_signup_token")
        .json(&json!({"storage_quota_mb": 1}))
        .send()
        .text();
    let bad = s
        .admin("POST", "/generate_signup_token")
        .json(&json!({"rate_read_burst": 3}))
        .send();
    assert_eq!(bad.status, 422);
    assert_eq!(
        s.admin("POST", "/generate_signup_token")
            .body("{")
            .send()
            .status,
        400
    );
    // redeem the quota token through the ordinary signup
    let key = random_key();
    let g = GrantSpec::new(&key, s.pk, "pubky.signup", "/:rw", 300);
    let r = s
        .req("POST", &format!("/auth/grant/signup?signup_token={t2}"))
        .json(&g.body())
        .send();
    assert_eq!(r.status, 204, "{}", r.text());
    let all = js(&s.admin("GET", "/signup_tokens").send());
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert_eq!(all["next_cursor"], Value::Null);
    let used = js(&s.admin("GET", "/signup_tokens?state=used").send());
    assert_eq!(used["items"][0]["token"], json!(t2));
    assert_eq!(used["items"][0]["used_by"], json!(pk_of(&key).to_z32()));
    assert_eq!(used["items"][0]["quota"], json!({"storage_quota_mb": 1}));
    let unused = js(&s.admin("GET", "/signup_tokens?state=unused").send());
    assert_eq!(unused["items"][0]["token"], json!(t1));
    let page = js(&s.admin("GET", "/signup_tokens?limit=1").send());
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let next = page["next_cursor"].as_str().unwrap().to_string();
    let rest = js(&s
        .admin("GET", &format!("/signup_tokens?cursor={next}"))
        .send());
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    for bad in ["limit=0", "limit=x", "cursor=nope", "state=maybe"] {
        assert_eq!(
            s.admin("GET", &format!("/signup_tokens?{bad}"))
                .send()
                .status,
            400,
            "{bad}"
        );
    }
    // the redeemer got the token's quota
    let u = js(&s
        .admin("GET", &format!("/users/{}/quota", pk_of(&key)))
        .send());
    assert_eq!(u["effective"]["storage_quota_mb"], json!(1));
    let info = js(&s.admin("GET", "/info").send());
    assert_eq!(info["num_users"], json!(1));
    assert_eq!(info["num_signup_codes"], json!(2));
    assert_eq!(info["num_unused_signup_codes"], json!(1));
    assert_eq!(info["public_key"], json!(s.pk.to_z32()));
    // Listen ports are 0 in tests, and no ICANN domain is set: both are null.
    assert_eq!(info["pkarr_pubky_address"], json!(null));
    assert_eq!(info["pkarr_icann_domain"], json!(null));
    let s2 = Server::start(
        "[pkdns]\npublic_ip = \"192.0.2.3\"\npublic_pubky_tls_port = 443\npublic_icann_http_port = 80\nicann_domain = \"hs.example.org\"\n",
    );
    let info = js(&s2.admin("GET", "/info").send());
    assert_eq!(info["pkarr_pubky_address"], json!("192.0.2.3:443"));
    assert_eq!(info["pkarr_icann_domain"], json!("hs.example.org:80"));
}

#[test]
fn users_list_show_disable_enable() {
    let s = Server::start("");
    let a = new_user(&s);
    let b = new_user(&s);
    assert_eq!(put(&s, &a, "/pub/x", 5).status, 201);
    let list = js(&s
        .admin("GET", "/users?sort_by=used_bytes&reverse=true")
        .send());
    assert_eq!(list["items"][0]["pubky"], json!(a.pk.to_z32()));
    assert_eq!(list["items"][0]["used_bytes"], json!(261));
    let page = js(&s.admin("GET", "/users?limit=1").send());
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest = js(&s.admin("GET", &format!("/users?cursor={cursor}")).send());
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_ne!(rest["items"][0]["pubky"], page["items"][0]["pubky"]);
    let stranger = pk_of(&random_key());
    assert_eq!(
        s.admin("GET", &format!("/users?cursor={stranger}"))
            .send()
            .status,
        400
    );
    for bad in ["state=x", "sort_by=name", "reverse=maybe", "limit=0"] {
        assert_eq!(
            s.admin("GET", &format!("/users?{bad}")).send().status,
            400,
            "{bad}"
        );
    }
    let one = js(&s.admin("GET", &format!("/users/{}", b.pk)).send());
    assert_eq!(one["disabled"], json!(false));
    assert_eq!(
        s.admin("GET", &format!("/users/{stranger}")).send().status,
        404
    );
    assert_eq!(s.admin("GET", "/users/notakey").send().status, 400);
    assert_eq!(
        s.admin("POST", &format!("/users/pubky{}/disable", a.pk))
            .send()
            .status,
        400
    );

    let r = s.admin("POST", &format!("/users/{}/disable", a.pk)).send();
    assert_eq!((r.status, r.text().as_str()), (200, "Ok"));
    let r = put(&s, &a, "/pub/y", 1);
    assert_eq!((r.status, r.text().as_str()), (403, "User is disabled"));
    // frozen: public data stays readable by anyone, the old session authorises nothing
    assert_eq!(
        s.req("GET", &s.storage_url(&a.pk, "/pub/x")).send().status,
        200
    );
    let del = s
        .req("DELETE", &s.storage_url(&a.pk, "/pub/x"))
        .bearer(&a.token)
        .send();
    assert_eq!((del.status, del.text().as_str()), (403, "User is disabled"));
    let private = s
        .req("GET", &s.storage_url(&a.pk, "/priv/p"))
        .bearer(&a.token)
        .send();
    assert_eq!(
        (private.status, private.text().as_str()),
        (403, "User is disabled")
    );
    let stream = crate::support::sse::Sse::open(
        s.addr,
        &format!("/events-stream?user={}&path=/priv/", a.pk),
        &[("authorization", &format!("Bearer {}", a.token))],
    );
    assert_eq!(stream.status, 403);
    let g = GrantSpec::new(&a.key, s.pk, "app", "/:rw", 3600);
    assert_eq!(
        s.req("POST", "/auth/grant/session")
            .json(&g.body())
            .send()
            .status,
        403
    );
    let disabled = js(&s.admin("GET", "/users?state=disabled").send());
    assert_eq!(disabled["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        js(&s.admin("GET", "/info").send())["num_disabled_users"],
        json!(1)
    );
    assert_eq!(
        s.admin("POST", &format!("/users/{}/enable", a.pk))
            .send()
            .status,
        200
    );
    // re-enabled: the same session works again
    assert_eq!(put(&s, &a, "/pub/y", 1).status, 201);
    assert_eq!(put(&s, &a, "/priv/p", 1).status, 201);
    assert_eq!(
        s.req("GET", &s.storage_url(&a.pk, "/priv/p"))
            .bearer(&a.token)
            .send()
            .status,
        200
    );
    assert_eq!(
        s.admin("POST", &format!("/users/{stranger}/enable"))
            .send()
            .status,
        404
    );
}

#[test]
fn quotas_and_allowed_paths() {
    let s = Server::start("");
    let a = new_user(&s);
    let b = new_user(&s);
    assert_eq!(put(&s, &a, "/pub/other/bar.json", 3).status, 201);
    let url = format!("/users/{}/quota", a.pk);
    assert_eq!(
        s.admin("PATCH", &url)
            .json(&json!({"storage_quota_mb": 1}))
            .send()
            .status,
        200
    );
    assert_eq!(put(&s, &a, "/pub/big", 1_200_000).status, 507);
    assert_eq!(put(&s, &b, "/pub/big", 1_200_000).status, 201);
    let q = js(&s.admin("GET", &url).send());
    assert_eq!(q["overrides"], json!({"storage_quota_mb": 1}));
    let r = s
        .admin("PATCH", &url)
        .json(&json!({"allowed_write_paths": ["/pub/tokens/"]}))
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(put(&s, &a, "/pub/tokens/foo.json", 3).status, 201);
    let r = put(&s, &a, "/pub/other/x.json", 3);
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "Write to this path is not allowed")
    );
    assert_eq!(
        s.req("GET", &s.storage_url(&a.pk, "/pub/other/bar.json"))
            .send()
            .status,
        200
    );
    let del = |p: &str| {
        s.req("DELETE", &s.storage_url(&a.pk, p))
            .bearer(&a.token)
            .send()
            .status
    };
    assert_eq!(del("/pub/tokens/foo.json"), 204);
    assert_eq!(del("/pub/other/bar.json"), 403);
    assert_eq!(del("/pub/other/missing.json"), 404);
    // null resets, the merged result is validated, unknown users are 404
    let r = s
        .admin("PATCH", &url)
        .json(&json!({"allowed_write_paths": null, "storage_quota_mb": null}))
        .send();
    assert_eq!(r.status, 200);
    assert_eq!(put(&s, &a, "/pub/other/x.json", 3).status, 201);
    assert_eq!(
        s.admin("PATCH", &url)
            .json(&json!({"rate_write_burst": 2}))
            .send()
            .status,
        422
    );
    assert_eq!(
        s.admin("PATCH", &url)
            .json(&json!({"allowed_write_paths": ["/"]}))
            .send()
            .status,
        422
    );
    assert_eq!(s.admin("PATCH", &url).json(&json!([1])).send().status, 422);
    let stranger = pk_of(&random_key());
    assert_eq!(
        s.admin("GET", &format!("/users/{stranger}/quota"))
            .send()
            .status,
        404
    );
}

#[test]
fn delete_entry_and_admin_event_stream() {
    let s = Server::start("");
    let a = new_user(&s);
    assert_eq!(put(&s, &a, "/pub/app/foo", 10).status, 201);
    assert_eq!(put(&s, &a, "/priv/secret", 10).status, 201);
    let url = format!("/webdav/{}/pub/app/foo", a.pk);
    assert_eq!(s.admin("DELETE", &url).send().status, 204);
    assert_eq!(
        s.req("GET", &s.storage_url(&a.pk, "/pub/app/foo"))
            .send()
            .status,
        404
    );
    assert_eq!(s.admin("DELETE", &url).send().status, 404);
    assert_eq!(
        s.admin("DELETE", &format!("/webdav/{}/priv/secret", a.pk))
            .send()
            .status,
        400
    );
    assert_eq!(
        s.admin("DELETE", &format!("/webdav/{}/pub/a//b", a.pk))
            .send()
            .status,
        400
    );
    assert_eq!(s.admin("DELETE", "/webdav/nokey/pub/x").send().status, 400);
    let used = js(&s.admin("GET", &format!("/users/{}", a.pk)).send())["used_bytes"].clone();
    assert_eq!(used, json!(266));

    let addr = s.admin_addr.unwrap();
    let pw = [("x-admin-password", "test-admin")];
    let mut all = Sse::open(addr, "/events-stream", &pw);
    assert_eq!(all.status, 200);
    assert_eq!(all.header("cache-control"), Some("no-store"));
    let ev = all.collect();
    let kinds: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.uri().rsplit('/').next().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("PUT", "foo".into()),
            ("PUT", "secret".into()),
            ("DEL", "foo".into())
        ]
    );
    let c = ev[0].cursor();
    let after = Sse::open(addr, &format!("/events-stream?cursor={c}&path=/priv/"), &pw).collect();
    assert_eq!(after.len(), 1);
    let stranger = pk_of(&random_key());
    assert_eq!(
        Sse::open(addr, &format!("/events-stream?user={stranger}"), &pw).status,
        404
    );
    assert_eq!(Sse::open(addr, "/events-stream?cursor=x", &pw).status, 400);
    assert_eq!(
        Sse::open(addr, "/events-stream?live=true&reverse=true", &pw).status,
        400
    );
    let mut live = Sse::open(
        addr,
        &format!("/events-stream?user={}&live=true", a.pk),
        &pw,
    );
    assert_eq!(live.collect_n(3).len(), 3);
    assert_eq!(put(&s, &a, "/priv/next", 1).status, 201);
    assert_eq!(
        live.next_event(Duration::from_secs(10)).unwrap().kind,
        "PUT"
    );
}

#[test]
fn metrics_text() {
    let s = Server::start("");
    let a = new_user(&s);
    let _b = new_user(&s);
    assert_eq!(put(&s, &a, "/pub/x", 5).status, 201);
    assert_eq!(
        s.req("GET", &s.storage_url(&a.pk, "/pub/x")).send().status,
        200
    );
    let m = s.metrics();
    assert!(
        m.contains("signup_count_total{otel_scope_name=\"pubky_homeserver\"} 2\n"),
        "{m}"
    );
    assert!(
        m.contains("pubky_edge_http_requests_total{route=\"storage_write\",status=\"2xx\"} 1\n")
    );
    assert!(
        m.contains("storage_request_count_total{addressing_mode=\"path\",auth_method=\"grant\"")
    );
    assert!(m.contains("pubky_edge_dht_last_publish_timestamp_seconds 0\n"));
    let gauge = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    assert!(gauge("pubky_edge_process_resident_memory_bytes") > 1 << 20);
    assert!(gauge("pubky_edge_store_disk_bytes") > 0);
    assert!(gauge("pubky_edge_disk_free_bytes") > 0);
    assert_eq!(gauge("pubky_edge_users"), 2);
    let mut stream = Sse::open(
        s.addr,
        &format!("/events-stream?user={}&live=true", a.pk),
        &[],
    );
    assert!(stream.next_event(Duration::from_secs(5)).is_some());
    assert!(s
        .metrics()
        .contains("event_stream_active_connections{otel_scope_name=\"pubky_homeserver\"} 1\n"));
    let r = s.admin_raw("GET", "/").send();
    assert_eq!(r.status, 200);
}

#[test]
fn oversized_and_misdirected_operator_requests() {
    let s = Server::start("[limits]\nmax_json_body_bytes = 1024\n");
    let u = new_user(&s);
    let big = format!(
        "{{\"allowed_write_paths\": [\"/pub/{}/\"]}}",
        "a".repeat(2000)
    );
    let r = s
        .admin("PATCH", &format!("/users/{}/quota", u.pk))
        .header("content-type", "application/json")
        .body(big)
        .send();
    assert_eq!(r.status, 413);
    let metrics = s.metrics_addr.unwrap();
    let r = send_raw(
        metrics,
        b"GET /other HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 404);
    let r = send_raw(
        metrics,
        b"POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 405);
}

/// No browser page can drive the admin API: preflights and requests that carry an
/// `Origin` are refused and get no CORS grant, a `Host` name other than `localhost` is
/// refused (DNS rebinding), and wrong passwords are throttled per address.
#[test]
fn browsers_rebinding_and_guessing_are_refused() {
    let s = Server::start("");
    let r = s
        .admin("OPTIONS", "/generate_signup_token")
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-admin-password")
        .send();
    assert_eq!(r.status, 403);
    assert!(r.header("access-control-allow-origin").is_none());
    let r = s
        .admin("POST", "/generate_signup_token")
        .header("origin", "http://evil.example")
        .send();
    assert_eq!(r.status, 403);
    assert!(r.header("access-control-allow-origin").is_none());
    let r = s
        .admin("GET", "/info")
        .header("host", "rebound.evil.example:6288")
        .send();
    assert_eq!(r.status, 403);
    let addr = s.admin_addr.unwrap().to_string();
    assert_eq!(
        s.admin("GET", "/info").header("host", &addr).send().status,
        200
    );
    assert_eq!(
        s.admin("GET", "/info")
            .header("host", "[::1]:6288")
            .send()
            .status,
        200
    );
    for _ in 0..5 {
        let r = s
            .admin_raw("GET", "/info")
            .header("x-admin-password", "guess")
            .send();
        assert_eq!(r.status, 401);
    }
    let r = s
        .admin_raw("GET", "/info")
        .header("x-admin-password", "guess")
        .send();
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    // Throttled means throttled: even the right password waits out the window.
    assert_eq!(s.admin("GET", "/info").send().status, 429);
}

#[test]
fn disabling_ends_the_accounts_open_private_streams() {
    let s = Server::start("[events]\nkeep_alive_ms = 200\n");
    let a = new_user(&s);
    assert_eq!(put(&s, &a, "/priv/p", 1).status, 201);
    let mut stream = crate::support::sse::Sse::open(
        s.addr,
        &format!("/events-stream?user={}&path=/priv/&live=true", a.pk),
        &[("authorization", &format!("Bearer {}", a.token))],
    );
    assert_eq!(stream.status, 200);
    assert!(matches!(
        stream.next(std::time::Duration::from_secs(5)),
        Some(crate::support::sse::Item::Event(_))
    ));
    let r = s.admin("POST", &format!("/users/{}/disable", a.pk)).send();
    assert_eq!(r.status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !stream.closed && std::time::Instant::now() < deadline {
        let _ = stream.next(std::time::Duration::from_millis(500));
    }
    assert!(
        stream.closed,
        "the stream of a disabled account stayed open"
    );
}

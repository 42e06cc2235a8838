//! Request-rate limits against a real server: per-IP and per-user rules with path globs,
//! 429 with Retry-After, whitelists, and the defaults.

use crate::support as common;

use common::*;

#[test]
fn ip_rule_answers_429_with_retry_after() {
    let s = Server::start(
        "[[drive.rate_limits]]\npath = \"/events/\"\nmethod = \"GET\"\nquota = \"1r/m\"\nkey = \"ip\"\n",
    );
    assert_eq!(s.req("GET", "/events/").send().status, 200);
    let r = s.req("GET", "/events/").send();
    assert_eq!((r.status, r.text().as_str()), (429, "Rate limit exceeded"));
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    // other paths and methods are not limited; /info never is
    assert_eq!(s.req("GET", "/").send().status, 200);
    for _ in 0..3 {
        assert_eq!(s.req("GET", "/info").send().status, 200);
    }
    assert!(s.metrics().contains("pubky_edge_rate_limited_total 1\n"));
}

#[test]
fn user_rules_use_the_target_tenant_and_whitelist() {
    let white = pk_of(&random_key());
    let s = Server::start(&format!(
        "[[drive.rate_limits]]\npath = \"/pub/**\"\nquota = \"2r/h\"\nkey = \"user\"\nburst = 2\nwhitelist = [\"{white}\"]\n"
    ));
    let u = new_user(&s);
    let get = |pk: &str| {
        s.req("GET", &format!("/storage/{pk}/pub/a/b.txt"))
            .send()
            .status
    };
    let pk = u.pk.to_z32();
    assert_eq!(get(&pk), 404);
    assert_eq!(get(&pk), 404);
    assert_eq!(get(&pk), 429);
    // another tenant has its own bucket; the whitelisted one has none
    let other = pk_of(&random_key()).to_z32();
    assert_eq!(get(&other), 404);
    for _ in 0..4 {
        assert_eq!(get(&white.to_z32()), 404);
    }
    // legacy form without a tenant: the rule cannot pick a bucket
    let r = s.req("GET", "/pub/a/b.txt").send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Failed to extract user for rate limiting")
    );
}

#[test]
fn default_rules_cover_token_status() {
    let s = Server::start("[general]\nsignup_mode = \"token_required\"\n");
    let mut last = 0;
    for _ in 0..11 {
        last = s.req("GET", "/signup_tokens/AAAA-BBBB-CCCC").send().status;
    }
    assert_eq!(last, 429);
}

#[test]
fn invalid_rules_stop_start_up() {
    for bad in [
        "[[drive.rate_limits]]\npath = \"/x\"\nquota = \"10kb/s\"\nkey = \"ip\"\n",
        "[[drive.rate_limits]]\npath = \"/x\"\nquota = \"1r/m\"\nkey = \"host\"\n",
        "[[drive.rate_limits]]\npath = \"/x\"\nquota = \"1r/m\"\nkey = \"ip\"\nwhitelist = [\"nope\"]\n",
        "[default_quotas]\nrate_read = \"fast\"\n",
        "[[drive.rate_limits]]\npath = \"/x\"\nquota = \"1r/m\"\nkey = \"ip\"\nmethd = \"GET\"\n",
    ] {
        assert!(
            pubky_edge::config::Config::from_layers(&[("t", bad)]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn bandwidth_overrides_slow_transfers_down() {
    let s = Server::start("[default_quotas]\nunauthenticated_ip_rate_read = \"2kb/s\"\n");
    let u = new_user(&s);
    let body: Vec<u8> = (0..3 * 1024).map(|i| (i % 251) as u8).collect();
    let url = s.storage_url(&u.pk, "/pub/three");
    let r = s
        .admin("PATCH", &format!("/users/{}/quota", u.pk))
        .json(&serde_json::json!({"rate_read": "1kb/s", "rate_write": "1kb/s"}))
        .send();
    assert_eq!(r.status, 200);
    let t = std::time::Instant::now();
    let put = s
        .req("PUT", &url)
        .bearer(&u.token)
        .body(body.clone())
        .send();
    assert_eq!(put.status, 201);
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    let get = s.req("GET", &url).bearer(&u.token).send();
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(get.body, body);
    assert_eq!(get.header("content-length"), Some("3072"));
    // anonymous readers share their IP's budget (2 KiB/s here): still slowed, still whole
    let t = std::time::Instant::now();
    let anon = s.req("GET", &url).send();
    assert_eq!(anon.body, body);
    assert!(t.elapsed() >= std::time::Duration::from_millis(400));
}

/// Legacy-addressed storage requests are counted under their canonical path, whatever the
/// spelling of the URL.
#[test]
fn rules_match_the_canonical_storage_path() {
    let s = Server::start(
        "[[drive.rate_limits]]\npath = \"/pub/**\"\nquota = \"1r/m\"\nkey = \"ip\"\n",
    );
    let u = new_user(&s);
    let host = u.pk.to_z32();
    let get = |path: &str| s.req("GET", path).header("host", &host).send().status;
    assert_eq!(get("/pub/x"), 404);
    for spelling in ["//pub/x", "/%70ub/x", "/pub/./x", "/pub//x"] {
        assert_eq!(get(spelling), 429, "{spelling}");
    }
}

//! `pubky-edge admin …` (the real binary) against an in-process server, and the refusal to
//! start with the default admin password on a non-loopback listener.

use crate::support as common;

use std::process::{Command, Output};

use common::*;

fn admin(s: &Server, password: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .arg("admin")
        .args(args)
        .env("PUBKY_EDGE_ADMIN_ADDR", s.admin_addr.unwrap().to_string())
        .env("PUBKY_EDGE_ADMIN_PASSWORD", password)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cli_calls_the_admin_api() {
    let s = Server::start("");
    let u = new_user(&s);
    let token = stdout(&admin(&s, "test-admin", &["token", "new"]));
    assert_eq!(token.trim().len(), 14);
    let t2 = stdout(&admin(
        &s,
        "test-admin",
        &["token", "new", "--quota-mb", "5"],
    ));
    let list = stdout(&admin(&s, "test-admin", &["token", "list", "unused"]));
    assert!(list.contains(token.trim()) && list.contains(t2.trim()));
    let users = stdout(&admin(&s, "test-admin", &["users", "list"]));
    assert!(users.contains(&u.pk.to_z32()));
    let pk = u.pk.to_z32();
    assert_eq!(
        stdout(&admin(&s, "test-admin", &["users", "disable", &pk])).trim(),
        "Ok"
    );
    assert!(
        stdout(&admin(&s, "test-admin", &["users", "show", &pk])).contains("\"disabled\": true")
    );
    stdout(&admin(&s, "test-admin", &["users", "enable", &pk]));
    stdout(&admin(
        &s,
        "test-admin",
        &["quota", "set", &pk, "{\"storage_quota_mb\": 2}"],
    ));
    assert!(stdout(&admin(&s, "test-admin", &["quota", "get", &pk]))
        .contains("\"storage_quota_mb\": 2"));
    let put = s
        .req("PUT", &s.storage_url(&u.pk, "/pub/f"))
        .bearer(&u.token)
        .body(b"x".to_vec())
        .send();
    assert_eq!(put.status, 201);
    let events = stdout(&admin(&s, "test-admin", &["events"]));
    assert!(
        events.contains("event: PUT") && events.contains("/pub/f"),
        "{events}"
    );
    stdout(&admin(&s, "test-admin", &["delete", &pk, "/pub/f"]));
    let info = stdout(&admin(&s, "test-admin", &["info"]));
    assert!(info.contains("\"num_users\": 1"), "{info}");

    let wrong = admin(&s, "nope", &["info"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"));
    let bad = admin(&s, "test-admin", &["users", "frobnicate"]);
    assert!(!bad.status.success());
}

#[test]
fn default_password_is_refused_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[drive]\nicann_listen_socket = \"127.0.0.1:0\"\npubky_listen_socket = \"127.0.0.1:0\"\n\
         [admin]\nlisten_socket = \"0.0.0.0:0\"\n[metrics]\nenabled = false\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("default admin password is refused"), "{err}");
    assert!(!err.contains("password = "), "{err}");
}

#[test]
fn spooled_tokens_show_up_in_the_admin_api() {
    let s = Server::start("[general]\nsignup_mode = \"token_required\"\n");
    let o = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .arg("--data-dir")
        .arg(&s.data_dir)
        .args(["token", "new"])
        .output()
        .unwrap();
    let token = stdout(&o).trim().to_string();
    let list = stdout(&admin(&s, "test-admin", &["token", "list"]));
    assert!(list.contains(&token), "{list}");
}

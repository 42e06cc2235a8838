//! `pubky-edge admin …` (the real binary) against an in-process server, the generated
//! password it reads, and the refusal to start with the weak one on a non-loopback listener.

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
fn the_weak_password_is_refused_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[drive]\nicann_listen_socket = \"127.0.0.1:0\"\npubky_listen_socket = \"127.0.0.1:0\"\n\
         [pkdns]\ndht = false\n\
         [admin]\nlisten_socket = \"0.0.0.0:0\"\npassword = \"admin\"\n[metrics]\nenabled = false\n[dashboard]\nenabled = false\n",
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
    assert!(err.contains("\"admin\" is refused"), "{err}");
    assert!(!err.contains("password = "), "{err}");
}

/// With no password configured the server generates one into the data directory (0600);
/// the CLI finds it there, and the old sample's "admin" does not work.
#[test]
fn nothing_configured_means_a_generated_password_the_cli_reads() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start("[admin]\npassword = \"\"\n");
    let file = s.data_dir.join("admin-password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let pw = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(pw.len(), 24);
    let r = s
        .admin_raw("GET", "/info")
        .header("x-admin-password", "admin")
        .send();
    assert_eq!(r.status, 401);
    let r = s
        .admin_raw("GET", "/info")
        .header("x-admin-password", &pw)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let o = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .args(["--data-dir", s.data_dir.to_str().unwrap(), "admin", "info"])
        .env("PUBKY_EDGE_ADMIN_ADDR", s.admin_addr.unwrap().to_string())
        .env_remove("PUBKY_EDGE_ADMIN_PASSWORD")
        .output()
        .unwrap();
    assert!(stdout(&o).contains("num_users"), "{}", stdout(&o));
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

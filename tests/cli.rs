//! The real binary: `--version`, `--help`, `info`, `token new`, bad configuration and a
//! refused secret file, each with the exit code and the one-line reason a user sees.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_and_help() {
    let o = run(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("pubky-edge {}", env!("CARGO_PKG_VERSION"))
    );
    let o = run(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("--data-dir"));
    let o = run(&["--bogus"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown option --bogus"));
}

#[test]
fn info_creates_identity_and_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    let o = run(&["--data-dir", d, "info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("public key:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(key.len(), 52);
    assert!(text.contains(d));
    let mode = std::fs::metadata(data.join("secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = stdout(&run(&["--data-dir", d, "info"]));
    assert!(again.contains(&key));
}

#[test]
fn token_new_spools_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run(&["--data-dir", d, "token", "new"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).trim().to_string();
    assert!(pubky_edge::auth::token::is_signup_token(&token), "{token}");
    assert!(dir.path().join("signup-tokens").join(&token).exists());
}

#[test]
fn bad_config_and_secret_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[limits]\nmax_connections = 0\n").unwrap();
    let o = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o).trim(),
        "pubky-edge: limits.max_connections must be greater than 0"
    );
    let o = run(&["--config", "/nonexistent/pubky.toml", "info"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot read config /nonexistent/pubky.toml"));

    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let secret = data.join("secret");
    std::fs::write(&secret, "11".repeat(32)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["--data-dir", data.to_str().unwrap(), "info"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
}

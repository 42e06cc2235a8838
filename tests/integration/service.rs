//! The real binary as a system service: board overlays layered between the defaults and the
//! config file, and the sd_notify conversation systemd's `Type=notify` unit relies on
//! (READY only once the port answers, watchdog pings, STOPPING on SIGTERM).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pubky-edge"));
    c.env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn board_overlay_sits_between_defaults_and_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let o = run(&["--data-dir", d, "--board", "qemu-virt", "info"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("http:        0.0.0.0:6286"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("board:       board qemu-virt"),
        "{}",
        text(&o)
    );

    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[drive]\nicann_listen_socket = \"127.0.0.1:7000\"\n").unwrap();
    let c = cfg.to_str().unwrap();
    let o = run(&["--board", "pi4", "--config", c, "--data-dir", d, "info"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("http:        127.0.0.1:7000"),
        "{}",
        text(&o)
    );

    let overlay = dir.path().join("mine.toml");
    std::fs::write(
        &overlay,
        "[drive]\nicann_listen_socket = \"127.0.0.2:7001\"\n",
    )
    .unwrap();
    let o = run(&[
        "--board",
        overlay.to_str().unwrap(),
        "--data-dir",
        d,
        "info",
    ]);
    assert!(
        text(&o).contains("http:        127.0.0.2:7001"),
        "{}",
        text(&o)
    );

    let o = run(&["--board", "pi9", "--data-dir", d, "info"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown board `pi9`"), "{}", text(&o));
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn notifies_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[drive]\nicann_listen_socket = \"127.0.0.1:{port}\"\npubky_listen_socket = \"127.0.0.1:0\"\n\
             [pkdns]\ndht = false\n[upnp]\nenabled = false\n[mdns]\nenabled = false\n"
        ),
    )
    .unwrap();
    let mut child = bin()
        .args(["--config", cfg.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    assert_eq!(recv(&sock), "READY=1");
    // READY means the listener is bound: the port answers at once.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(recv(&sock), "WATCHDOG=1");
    assert_eq!(recv(&sock), "WATCHDOG=1");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        let msg = recv(&sock);
        if msg != "WATCHDOG=1" {
            assert_eq!(msg, "STOPPING=1");
            break;
        }
    }
    assert!(child.wait().unwrap().success());
}

fn get(port: u16, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{headers}connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// A reference homeserver's data directory (its `config.toml` and its `secret`, written by
/// the reference's own key code) starts pubky-edge as the same homeserver with its settings.
#[test]
fn a_reference_data_directory_starts_as_the_same_homeserver() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reference");
    std::fs::create_dir(&data).unwrap();
    let keypair = pubky::Keypair::random();
    keypair.write_secret_key_file(&data.join("secret")).unwrap();
    let (http, tls, admin) = (
        crate::support::proc::free_port(),
        crate::support::proc::free_port(),
        crate::support::proc::free_port(),
    );
    let config = format!(
        r#"[general]
signup_mode = "open"
user_storage_quota_mb = 100
database_url = "postgres://localhost:5432/pubky_homeserver"

[drive]
pubky_listen_socket = "127.0.0.1:{tls}"
icann_listen_socket = "127.0.0.1:{http}"
websites = false
icann_client_identity = {{ mode = "direct" }}
pubky_client_identity = {{ mode = "direct" }}

[storage]
type = "file_system"

[admin]
enabled = true
listen_socket = "127.0.0.1:{admin}"
admin_password = "a reference operator's password"

[metrics]
enabled = false
listen_socket = "127.0.0.1:0"

[pkdns]
public_ip = "127.0.0.1"
user_keys_republisher_interval = 3600
dht_relay_nodes = ["https://pkarr.pubky.app"]
# Ours, so the test stays on this machine: no DHT, router or LAN announcements.
dht = false

[upnp]
enabled = false

[mdns]
enabled = false

[dashboard]
enabled = false

[logging]
level = "info"
module_levels = ["pubky_homeserver=debug"]
"#
    );
    std::fs::write(data.join("config.toml"), config).unwrap();

    let o = run(&["--data-dir", data.to_str().unwrap(), "info"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let key = keypair.public_key().z32();
    assert!(out.contains(&format!("public key:  {key}")), "{out}");
    assert!(out.contains(&format!(
        "config:      {}",
        data.join("config.toml").display()
    )));
    assert!(
        out.contains(&format!("http:        127.0.0.1:{http}")),
        "{out}"
    );
    assert!(out.contains("general.database_url ignored"), "{out}");

    let mut child = bin()
        .args(["--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let info = get(http, "/info", "");
    assert!(info.starts_with("HTTP/1.1 200"), "{info}");
    assert!(
        !info.contains("websites"),
        "drive.websites = false is kept: {info}"
    );
    let admin_info = get(
        admin,
        "/info",
        "x-admin-password: a reference operator's password\r\n",
    );
    assert!(admin_info.starts_with("HTTP/1.1 200"), "{admin_info}");
    assert!(admin_info.contains(&key), "{admin_info}");
    let refused = get(admin, "/info", "x-admin-password: admin\r\n");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

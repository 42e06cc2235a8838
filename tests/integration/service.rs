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
            "[drive]\nicann_listen_socket = \"127.0.0.1:{port}\"\npubky_listen_socket = \"127.0.0.1:0\"\n"
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

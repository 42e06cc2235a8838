//! `pubky-edge testnet`: the real binary brings up a loopback network on the well-known
//! ports, and the official SDK's unmodified `Pubky::testnet()` preset signs up, writes and
//! reads through it (DHT bootstrap 127.0.0.1:6881, relay 127.0.0.1:15411).
//! This file holds one test so nothing else in its process competes for those ports.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use pubky::{ClientId, Keypair, Pubky, PublicKey};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fixed ports the command needs, each checked free first so that a port held by
/// another process (a DHT node on 6881, a running homeserver) is named as the cause.
fn assert_ports_free() {
    let udp = "127.0.0.1:6881";
    if let Err(e) = std::net::UdpSocket::bind(udp) {
        panic!("UDP {udp} is taken ({e}): stop the other DHT node or testnet and run again");
    }
    for tcp in ["127.0.0.1:6286", "127.0.0.1:6287", "127.0.0.1:15411"] {
        if let Err(e) = std::net::TcpListener::bind(tcp) {
            panic!("TCP {tcp} is taken ({e}): stop the process holding it and run again");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_testnet_preset_works_against_the_testnet_command() {
    let _suite = crate::suite("testnet_cli");
    assert_ports_free();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
            .arg("testnet")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut fields = std::collections::HashMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some((k, v)) = line.trim().split_once(':') {
            fields.insert(k.trim().to_string(), v.trim().to_string());
        }
        if line.trim_start().starts_with("data dir:") {
            break;
        }
    }
    let Some(hs) = fields.get("homeserver") else {
        let status = child.0.wait().unwrap();
        panic!(
            "`pubky-edge testnet` printed no network and exited with {status} (its log is above)"
        );
    };
    let hs = PublicKey::try_from(hs.as_str()).unwrap();
    let token = fields["signup token"].clone();
    assert!(fields["dht bootstrap"].starts_with("127.0.0.1:6881"));
    assert_eq!(
        fields["pkarr relay"].split_whitespace().next(),
        Some("http://127.0.0.1:15411")
    );
    let data_dir = std::path::PathBuf::from(&fields["data dir"]);
    assert!(data_dir.join("secret").exists());

    let pubky = Pubky::testnet().unwrap();
    let user = Keypair::random();
    let signer = pubky.signer(user.clone());
    signer.signup(&hs, Some(&token)).await.expect("signup");
    let session = signer
        .signin_blocking(ClientId::new("testnet.check").unwrap())
        .await
        .expect("signin");
    session
        .storage()
        .put("/pub/t/x.txt", "on the testnet")
        .await
        .unwrap();
    let url = format!("pubky{}/pub/t/x.txt", user.public_key().z32());
    let got = pubky.public_storage().get(url.as_str()).await.unwrap();
    assert_eq!(got.text().await.unwrap(), "on the testnet");

    // SIGTERM: a clean stop that removes the temporary data directory.
    let pid = child.0.id() as i32;
    assert_eq!(sigterm(pid), 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "testnet did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!data_dir.exists(), "temporary data removed");
}

fn sigterm(pid: i32) -> i32 {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| if s.success() { 0 } else { 1 })
        .unwrap_or(1)
}

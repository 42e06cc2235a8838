//! The relay rung on loopback: a relay box and a box that is reached only through it, both
//! real servers on a loopback DHT, and the official SDK resolving the box to the relay's
//! port, checking the box's key through it, signing up, writing and reading. The relay and
//! the box each restart, and the link comes back by itself. The namespace version (a
//! carrier-grade NAT between the box and the internet) is in `tests/system/household.rs`.

use crate::support as common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::proc::free_port;
use common::Server;
use ed25519_dalek::SigningKey;
use pubky::Keypair;
use pubky_edge::tunnel::{LinkState, RelayState, LINK_FILE, RELAY_FILE};

use crate::sdk_e2e::{app, hs_key, net, sdk, server_toml, Net};

/// Writes the box's secret before its first start, so the relay can be told its key.
fn box_identity(dir: &Path) -> pubky_edge::pubkey::PublicKey {
    use std::os::unix::fs::OpenOptionsExt;
    let seed: [u8; 32] = common::random_key().to_bytes();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("secret"))
        .unwrap();
    std::io::Write::write_all(&mut f, hex.as_bytes()).unwrap();
    pubky_edge::pubkey::PublicKey::from(SigningKey::from_bytes(&seed).verifying_key())
}

fn relay_toml(net: &Net, listen: u16, boxes: &str) -> String {
    server_toml(
        net,
        &format!("[tunnel]\nlisten_socket = \"127.0.0.1:{listen}\"\nboxes = [{boxes}]\n"),
    )
}

fn box_toml(net: &Net, relay: &Server, listen: u16) -> String {
    server_toml(
        net,
        &format!(
            "[tunnel]\nvia = \"{}@127.0.0.1:{listen}\"\nuse_relay = \"always\"\n",
            relay.pk
        ),
    )
}

fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn link(s: &Server) -> LinkState {
    s.running().tunnels.link_state.lock().unwrap().clone()
}

fn relay_report(s: &Server) -> RelayState {
    s.running().tunnels.relay_report().unwrap()
}

/// The report file `pubky-edge status` reads.
fn relay_file(s: &Server) -> RelayState {
    let text = std::fs::read_to_string(s.data_dir.join(RELAY_FILE)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `pubky-edge status` of a server's data directory, by the real binary.
fn status(s: &Server, toml: &str) -> String {
    let file = s.data_dir.with_extension("toml");
    std::fs::write(&file, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .arg("-c")
        .arg(&file)
        .arg("-d")
        .arg(&s.data_dir)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the box's record announces the relay's `port`.
fn wait_announced(s: &Server, port: u16) {
    eventually("the record announces the relay", 20, || {
        let st = s.running().probes.publish_status.lock().unwrap().clone();
        (st.pubky_tls_port == port
            && st.published_ip.as_deref() == Some("127.0.0.1")
            && st.last_error.is_none())
        .then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_reached_only_through_its_relay_serves_the_sdk_and_both_restarts_recover() {
    let net = net();
    let (listen, public) = (free_port(), free_port());
    let tmp = tempfile::tempdir().unwrap();
    let (relay_dir, box_dir) = (tmp.path().join("relay"), tmp.path().join("box"));
    let box_key = box_identity(&box_dir);
    let boxes = format!("{{ key = \"{box_key}\", port = {public} }}");
    let relay_cfg = relay_toml(&net, listen, &boxes);
    let relay = Server::start_in(&relay_dir, &relay_cfg);
    let box_cfg = box_toml(&net, &relay, listen);
    let device = Server::start_in(&box_dir, &box_cfg);
    assert_eq!(device.pk, box_key);

    let up = eventually("the link is up", 20, || {
        let l = link(&device);
        (l.state == "connected").then_some(l)
    });
    assert_eq!(
        up.published.as_deref(),
        Some(&*format!("127.0.0.1:{public}"))
    );
    wait_announced(&device, public);
    let report = relay_file(&relay);
    assert_eq!(report.boxes.len(), 1);
    assert!(report.boxes[0].connected, "{report:?}");
    assert_eq!(report.boxes[0].port, public);

    // The SDK resolves the box to the relay's port, checks the box's key through it (the
    // relay holds no key of the box), and signs up, writes and reads.
    let pubky = sdk(&net);
    let hs = hs_key(&device);
    let user = Keypair::random();
    let signer = pubky.signer(user.clone());
    signer
        .signup(&hs, None)
        .await
        .expect("signup through the relay");
    let session = signer.signin_blocking(app()).await.expect("signin");
    let body: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    session
        .storage()
        .put("/pub/relayed/big.bin", body.clone())
        .await
        .expect("put through the relay");
    let got = session.storage().get("/pub/relayed/big.bin").await.unwrap();
    assert!(got.bytes().await.unwrap()[..] == body[..]);
    let relayed = relay_report(&relay).boxes[0].clone();
    assert!(relayed.forwarded >= 1, "{relayed:?}");
    assert!(relayed.bytes >= 2 * body.len() as u64, "{relayed:?}");
    assert!(link(&device).forwarded >= 1);
    // Data written through the relay is in the box's own store.
    let owner = pubky_edge::pubkey::PublicKey::parse_z32(&user.public_key().z32()).unwrap();
    let stored = device
        .req("GET", &device.storage_url(&owner, "/pub/relayed/big.bin"))
        .send();
    assert_eq!(stored.status, 200);
    assert_eq!(stored.body.len(), body.len());

    // `status` on both sides: the link, what the record says, the verdict; the relay's boxes.
    let said = status(&device, &box_cfg);
    assert!(
        said.contains(&format!(
            "relay link:    connected to {}@127.0.0.1:{listen}",
            relay.pk
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("announced as 127.0.0.1:{public}")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "record:        resolves to 127.0.0.1:{public}, the current address"
        )),
        "{said}"
    );
    assert!(
        said.contains("verdict:       Reachable through the relay."),
        "{said}"
    );
    let said = status(&relay, &relay_cfg);
    assert!(
        said.contains(&format!(
            "relaying:      {box_key} on port {public}: linked from 127.0.0.1:"
        )),
        "{said}"
    );

    // And the metrics of both.
    let m = device.metrics();
    assert!(m.contains("pubky_edge_relay_link_up 1\n"), "{m}");
    let m = relay.metrics();
    assert!(
        m.contains(&format!(
            "pubky_edge_relayed_box_linked{{box=\"{box_key}\",port=\"{public}\"}} 1\n"
        )),
        "{m}"
    );

    // The relay restarts: the box dials again (backoff from 1 s) and is reachable again.
    let links = link(&device).links;
    drop(relay.stop());
    eventually("the box notices the relay is gone", 10, || {
        (link(&device).state != "connected").then_some(())
    });
    let relay = Server::start_in(&relay_dir, &relay_cfg);
    eventually("the link is up again", 20, || {
        let l = link(&device);
        (l.state == "connected" && l.links > links).then_some(())
    });
    let url = format!("pubky{}/pub/relayed/big.bin", user.public_key().z32());
    let fresh = sdk(&net);
    let got = fresh
        .public_storage()
        .get(url.as_str())
        .await
        .expect("read after the relay restarted");
    assert_eq!(got.bytes().await.unwrap().len(), body.len());

    // The box restarts: its new link replaces the old one on the relay.
    drop(device.stop());
    eventually("the relay notices the box is gone", 10, || {
        (!relay_report(&relay).boxes[0].connected).then_some(())
    });
    let device = Server::start_in(&box_dir, &box_cfg);
    eventually("the restarted box is linked", 20, || {
        (link(&device).state == "connected").then_some(())
    });
    wait_announced(&device, public);
    let got = sdk(&net)
        .public_storage()
        .get(url.as_str())
        .await
        .expect("read after the box restarted");
    assert_eq!(got.bytes().await.unwrap().len(), body.len());
    let on_disk: LinkState =
        serde_json::from_str(&std::fs::read_to_string(device.data_dir.join(LINK_FILE)).unwrap())
            .unwrap();
    assert_eq!(on_disk.state, "connected");
    drop(device);
    drop(relay);
}

#[test]
fn a_relay_refuses_a_box_it_does_not_serve_and_a_box_refuses_the_wrong_relay() {
    let net = net();
    let listen = free_port();
    let tmp = tempfile::tempdir().unwrap();
    // The relay serves some other key only.
    let other = common::pk_of(&common::random_key());
    let relay = Server::start_in(
        &tmp.path().join("relay"),
        &relay_toml(
            &net,
            listen,
            &format!("{{ key = \"{other}\", port = {} }}", free_port()),
        ),
    );
    let device = Server::start(&box_toml(&net, &relay, listen));
    let refused = eventually("the relay's refusal", 20, || {
        link(&device).last_error.filter(|e| e.contains("refused"))
    });
    assert!(refused.contains("not a box this relay serves"), "{refused}");
    // Nothing was announced: the box's own address reaches nobody.
    let st = device
        .running()
        .probes
        .publish_status
        .lock()
        .unwrap()
        .clone();
    assert_eq!(st.last_success_secs, None, "{st:?}");
    drop(device);

    // A box told another key for the relay stops at the TLS handshake.
    let wrong = common::pk_of(&common::random_key());
    let device = Server::start(&server_toml(
        &net,
        &format!("[tunnel]\nvia = \"{wrong}@127.0.0.1:{listen}\"\nuse_relay = \"always\"\n"),
    ));
    let failed = eventually("the handshake failure", 20, || link(&device).last_error);
    assert!(failed.contains("TLS with the relay"), "{failed}");
    let said = status(
        &device,
        &server_toml(
            &net,
            &format!("[tunnel]\nvia = \"{wrong}@127.0.0.1:{listen}\"\nuse_relay = \"always\"\n"),
        ),
    );
    assert!(
        said.contains("verdict:       Not reachable: the relay does not answer."),
        "{said}"
    );
    assert!(said.contains("relay link:    WAITING to"), "{said}");
    assert!(!relay_report(&relay).boxes[0].connected);
}

#[test]
fn a_relay_on_standby_connects_back_and_leaves_the_record_to_the_box() {
    let net = net();
    let (listen, public) = (free_port(), free_port());
    let tmp = tempfile::tempdir().unwrap();
    let box_dir = tmp.path().join("box");
    let box_key = box_identity(&box_dir);
    let relay = Server::start_in(
        &tmp.path().join("relay"),
        &relay_toml(
            &net,
            listen,
            &format!("{{ key = \"{box_key}\", port = {public} }}"),
        ),
    );
    // The default, use_relay = "when_unreachable": the relay connects back to where the
    // link comes from (127.0.0.1) at the box's own port, and reaches it.
    let box_cfg = server_toml(
        &net,
        &format!("[tunnel]\nvia = \"{}@127.0.0.1:{listen}\"\n", relay.pk),
    );
    let device = Server::start_in(&box_dir, &box_cfg);
    let own = device.tls_addr;
    let checked = eventually("the connect-back", 20, || {
        let l = link(&device);
        l.direct_ok.is_some().then_some(l)
    });
    assert_eq!(checked.direct_ok, Some(true), "{checked:?}");
    assert!(
        checked
            .direct
            .as_deref()
            .unwrap()
            .starts_with(&own.to_string()),
        "{checked:?}"
    );
    assert!(!checked.in_record);
    assert_eq!(device.running().public_address.relayed(), None);
    wait_announced(&device, own.port());
    let said = status(&device, &box_cfg);
    assert!(
        said.contains(&format!(
            "connect-back:  the relay reached this box at {own}"
        )),
        "{said}"
    );
    assert!(
        said.contains("the record names this box's own address"),
        "{said}"
    );
    assert!(
        said.contains("verdict:       Reachable from the internet."),
        "{said}"
    );
    assert!(said.contains("connected back to this box"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_each_box_to_its_connections_and_bandwidth() {
    use std::io::Read;
    let net = net();
    let (listen, public) = (free_port(), free_port());
    let tmp = tempfile::tempdir().unwrap();
    let box_dir = tmp.path().join("box");
    let box_key = box_identity(&box_dir);
    let relay_cfg = format!(
        "{}max_connections_per_box = 2\nmax_kib_per_second_per_box = 128\n",
        relay_toml(
            &net,
            listen,
            &format!("{{ key = \"{box_key}\", port = {public} }}")
        )
    );
    let relay = Server::start_in(&tmp.path().join("relay"), &relay_cfg);
    let device = Server::start_in(&box_dir, &box_toml(&net, &relay, listen));
    wait_announced(&device, public);

    // Two connections are forwarded and held; the third is closed at once.
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", public)).unwrap())
        .collect();
    eventually("two forwarded", 10, || {
        (relay_report(&relay).boxes[0].open == 2).then_some(())
    });
    let mut third = std::net::TcpStream::connect(("127.0.0.1", public)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    match third.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the third connection was not closed: {other:?}"),
    }
    let report = relay_report(&relay).boxes[0].clone();
    assert_eq!((report.open, report.refused), (2, 1), "{report:?}");
    drop(held);
    eventually("the held ones released", 10, || {
        (relay_report(&relay).boxes[0].open == 0).then_some(())
    });

    // 256 KiB through a bucket of 128 KiB/s that holds 128 KiB: at least a second.
    let pubky = sdk(&net);
    let user = Keypair::random();
    let signer = pubky.signer(user.clone());
    signer.signup(&hs_key(&device), None).await.unwrap();
    let session = signer.signin_blocking(app()).await.unwrap();
    let body = vec![5u8; 256 * 1024];
    session
        .storage()
        .put("/pub/paced.bin", body.clone())
        .await
        .unwrap();
    // Let the bucket fill again, so the download alone is measured.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    let got = session.storage().get("/pub/paced.bin").await.unwrap();
    assert_eq!(got.bytes().await.unwrap().len(), body.len());
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "256 KiB in {took:?}");
}

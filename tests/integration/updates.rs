//! Releases published the way Pubky publishes everything: the release key is a user of a
//! homeserver (pubky-edge itself, on a loopback DHT) and PUTs its signed manifests there
//! with the official SDK; `pubky-edge update check` finds them through the DHT, reads them
//! over PubkyTLS and judges them with the release key, and `update download` keeps a
//! binary only when it is the signed one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pubky::Keypair;
use pubky_edge::update::check::{manifest_path, this_target};
use pubky_edge::update::download::binary_path;
use pubky_edge::update::manifest::{sign, Manifest};

use crate::sdk_e2e::{app, hs_key, net, sdk, server_toml};
use crate::support::proc::{bearer, request, Node};
use crate::support::Server;

fn manifest(version: &str, target: &str) -> Manifest {
    let binary = format!("pubky-edge {version}").into_bytes();
    Manifest {
        version: version.into(),
        target: target.into(),
        size: binary.len() as u64,
        blake3: blake3::hash(&binary).to_hex().to_string(),
        min_from: "0.0.1".into(),
        store_format: pubky_edge::store::FORMAT,
        notes: "Faster listings.\nMore below.".into(),
        released_at: 1_800_000_000,
    }
}

/// A homeserver (pubky-edge) on the testnet where the release key (from `seed`) has signed
/// up with the official SDK, and its session for PUTting releases.
async fn release_channel(
    net: &crate::sdk_e2e::Net,
    seed: u8,
) -> (Server, SigningKey, pubky::PubkySession) {
    let server = Server::start(&server_toml(net, ""));
    server.wait_published(20);
    let release = SigningKey::from_bytes(&[seed; 32]);
    let signer = sdk(net).signer(Keypair::from_secret(&[seed; 32]));
    signer.signup(&hs_key(&server), None).await.expect("signup");
    let session = signer.signin_blocking(app()).await.expect("signin");
    (server, release, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_check_finds_a_signed_release_over_pubky_and_refuses_what_is_not_one() {
    let net = net();
    let (_server, release, session) = release_channel(&net, 42).await;
    let release_pk = pubky_edge::pubkey::PublicKey::from(release.verifying_key());
    let st = session.storage();
    let target = this_target();

    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<String> = net.bootstrap.iter().map(|b| format!("{b:?}")).collect();
    let config = |channel: &str| {
        let path = dir.path().join(format!("{channel}.toml"));
        std::fs::write(
            &path,
            format!(
                "[pkdns]\ndht = true\ndht_request_timeout_ms = 1000\ndht_bootstrap_nodes = [{}]\n\
                 [update]\nrelease_key = \"{release_pk}\"\nchannel = \"{channel}\"\n",
                nodes.join(", ")
            ),
        )
        .unwrap();
        path
    };
    let data = dir.path().join("data");
    let run = |channel: &str, command: &'static str| {
        let cfg = config(channel);
        let data = data.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let o = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
                    .arg("-c")
                    .arg(&cfg)
                    .arg("-d")
                    .arg(&data)
                    .args(if command == "info" {
                        vec!["info"]
                    } else {
                        vec!["update", command]
                    })
                    .output()
                    .unwrap();
                let said = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                (o.status.success(), said)
            })
            .await
            .unwrap()
        }
    };

    // Nothing published yet.
    let (ok, said) = run("stable", "check").await;
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("no release for {target} in the channel")),
        "{said}"
    );

    // A newer release, signed with the release key, for this target.
    let path = manifest_path("stable", &target);
    st.put(path.as_str(), sign(&manifest("0.2.0", &target), &release))
        .await
        .unwrap();
    // The server's own daily look, here every 300 ms, records what it finds for `status`.
    let running_box = Server::start(&format!(
        "{}[update]\nrelease_key = \"{release_pk}\"\ncheck_interval_ms = 300\n",
        server_toml(&net, "")
    ));
    let looked = running_box.data_dir.join("update.json");
    let recorded = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let st = std::fs::read_to_string(&looked).unwrap_or_default();
            if st.contains("\"available\"") || std::time::Instant::now() > deadline {
                return st;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!(recorded.contains("\"version\": \"0.2.0\""), "{recorded}");
    running_box.stop();

    let (ok, said) = run("stable", "check").await;
    assert!(ok, "{said}");
    assert!(
        said.contains(
            "available: 0.2.0 (released 2027-01-15T08:00:00Z, 16 bytes): Faster listings."
        ),
        "{said}"
    );

    let (ok, said) = run("stable", "info").await;
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!(
            "update:        0.2.0 is available (this box runs {}) (channel stable, checked ",
            env!("CARGO_PKG_VERSION")
        )),
        "{said}"
    );

    // Its binary, fetched and kept only once its size and hash are the signed ones.
    let downloaded = data.join("update/pubky-edge-0.2.0");
    let (ok, said) = run("stable", "download").await;
    assert!(!ok, "downloaded a binary nobody published: {said}");
    assert!(said.contains("the release's binary is missing"), "{said}");
    st.put(
        binary_path("stable", &target, "0.2.0").as_str(),
        b"pubky-edge 0.2.0".to_vec(),
    )
    .await
    .unwrap();
    let (ok, said) = run("stable", "download").await;
    assert!(ok, "{said}");
    assert!(said.contains("downloaded: "), "{said}");
    assert_eq!(std::fs::read(&downloaded).unwrap(), b"pubky-edge 0.2.0");
    let mode = std::fs::metadata(&downloaded).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    // A truncated binary, then one with a byte changed: refused, and nothing is left.
    st.put(path.as_str(), sign(&manifest("0.2.1", &target), &release))
        .await
        .unwrap();
    let binary_021 = binary_path("stable", &target, "0.2.1");
    for (body, why) in [
        (&b"pubky-edge 0.2"[..], "truncated"),
        (&b"pubky-edge 0.2.2"[..], "BLAKE3"),
    ] {
        st.put(binary_021.as_str(), body.to_vec()).await.unwrap();
        let (ok, said) = run("stable", "download").await;
        assert!(!ok, "{said}");
        assert!(said.contains("the release's binary is refused"), "{said}");
        assert!(said.contains(why), "{said}");
        let left: Vec<_> = std::fs::read_dir(data.join("update"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["pubky-edge-0.2.0".to_string()], "{said}");
    }

    // The running version itself, in another channel: up to date.
    let running = env!("CARGO_PKG_VERSION");
    st.put(
        manifest_path("testing", &target).as_str(),
        sign(&manifest(running, &target), &release),
    )
    .await
    .unwrap();
    let (ok, said) = run("testing", "check").await;
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("up to date: the channel's release is {running}")),
        "{said}"
    );

    // Signed by another key, though stored under the release key: refused, exit 1.
    let stranger = SigningKey::from_bytes(&[7; 32]);
    st.put(path.as_str(), sign(&manifest("0.3.0", &target), &stranger))
        .await
        .unwrap();
    let (ok, said) = run("stable", "check").await;
    assert!(!ok, "{said}");
    assert!(said.contains("refused: signed by"), "{said}");

    // A release key's manifest for another target, at this target's path: refused.
    st.put(
        path.as_str(),
        sign(&manifest("0.3.0", "riscv64gc-unknown-linux-musl"), &release),
    )
    .await
    .unwrap();
    let (ok, said) = run("stable", "check").await;
    assert!(!ok, "{said}");
    assert!(
        said.contains("a release for riscv64gc-unknown-linux-musl"),
        "{said}"
    );
}

/// What systemd does for `pubky-edge.service` (`Restart=on-failure`, `RestartSec=`,
/// `RestartForceExitStatus=75`): start the installed binary, and start it again when it
/// exits with anything but 0. Every exit status is kept.
struct Service {
    pid: Arc<AtomicU32>,
    exits: Arc<Mutex<Vec<i32>>>,
    stopping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start(installed: &Path, node: &Node) -> Service {
        let (pid, exits, stopping) = (
            Arc::new(AtomicU32::new(0)),
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, e, s) = (pid.clone(), exits.clone(), stopping.clone());
        let (bin, config, data, log) = (
            installed.to_path_buf(),
            node.config.clone(),
            node.data.clone(),
            node.log.clone(),
        );
        let thread = std::thread::spawn(move || loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let mut child = Command::new(&bin)
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(&data)
                .arg("run")
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            p.store(child.id(), Ordering::SeqCst);
            let status = child.wait().unwrap();
            let code = status.code().unwrap_or(-1);
            e.lock().unwrap().push(code);
            if code == 0 || s.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        });
        Service {
            pid,
            exits,
            stopping,
            thread: Some(thread),
        }
    }

    /// The binary the service's process runs now.
    fn exe(&self) -> PathBuf {
        let pid = self.pid.load(Ordering::SeqCst);
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default()
    }

    fn exits(&self) -> Vec<i32> {
        self.exits.lock().unwrap().clone()
    }

    fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let pid = self.pid.load(Ordering::SeqCst);
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Waits (up to 60 s) until `what` holds, then returns what `see` says.
fn wait_for(what: &str, mut ok: impl FnMut() -> bool, see: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: {}", see());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_updates_itself_into_a_slot_rolls_back_what_is_not_healthy_and_obeys_the_household() {
    let net = net();
    let (_server, release, session) = release_channel(&net, 43).await;
    let release_pk = pubky_edge::pubkey::PublicKey::from(release.verifying_key());
    let st = session.storage();
    let target = this_target();

    // The box: its installed binary (/usr/bin/pubky-edge on a board) is this build,
    // without its debug sections; newer "builds" are the same program with a stamp after
    // the ELF image, so each has its own hash.
    let tmp = tempfile::tempdir().unwrap();
    let installed = tmp.path().join("usr-bin/pubky-edge");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&installed)
        .arg(env!("CARGO_BIN_EXE_pubky-edge"))
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(env!("CARGO_BIN_EXE_pubky-edge"), &installed).unwrap();
    }
    let build = std::fs::read(&installed).unwrap();
    let data = tmp.path().join("data");
    // At first a health deadline nobody can meet: the first update is not healthy in time.
    let metrics_port = crate::support::proc::free_port();
    let toml = format!(
        "{}[general]\nsignup_mode = \"open\"\n[admin]\nlisten_socket = \"127.0.0.1:{}\"\n\
         password = \"test-admin\"\n[metrics]\nlisten_socket = \"127.0.0.1:{metrics_port}\"\n\
         [update]\nrelease_key = \"{release_pk}\"\n\
         check_interval_ms = 300\nwindow = \"\"\nhealth_deadline_ms = 1\n",
        server_toml(&net, ""),
        crate::support::proc::free_port()
    );
    let metrics = || {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
        request(addr, "GET", "/metrics", "", b"").unwrap().text()
    };
    let port: u16 = toml
        .split("icann_listen_socket = \"127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let node = Node::with_config(tmp.path(), &data, &toml, port);
    let service = Service::start(&installed, &node);
    wait_for(
        "the box answers",
        || std::net::TcpStream::connect(node.addr).is_ok(),
        || node.log_tail(),
    );
    let user = crate::support::proc::random_key();
    let token = node.signup(&user);
    let file = format!(
        "/storage/{}/pub/diary.txt",
        crate::support::pk_of(&user).to_z32()
    );
    let written = b"written before any update".to_vec();
    let r = request(node.addr, "PUT", &file, &bearer(&token), &written).unwrap();
    assert_eq!(r.status, 201);
    let intact = || {
        let r = request(node.addr, "GET", &file, "", b"")?;
        Ok::<_, std::io::Error>(r.status == 200 && r.body == written)
    };
    // Until the box serves that file again, as it was.
    let answers = |what: &str| wait_for(what, || intact().unwrap_or(false), || node.log_tail());

    let manifest_for = |version: &str, binary: &[u8], store_format: u32| Manifest {
        version: version.into(),
        target: target.clone(),
        size: binary.len() as u64,
        blake3: blake3::hash(binary).to_hex().to_string(),
        min_from: "0.0.1".into(),
        store_format,
        notes: String::new(),
        released_at: 1_800_000_000,
    };
    let publish_format = |version: &str, binary: Vec<u8>, store_format: u32| {
        let m = manifest_for(version, &binary, store_format);
        let (st, path, signed) = (
            st.clone(),
            binary_path("stable", &target, version),
            sign(&m, &release),
        );
        let manifest_at = manifest_path("stable", &target);
        async move {
            st.put(path.as_str(), binary).await.unwrap();
            st.put(manifest_at.as_str(), signed).await.unwrap();
        }
    };
    let publish =
        |version: &str, binary: Vec<u8>| publish_format(version, binary, pubky_edge::store::FORMAT);
    let stamped = |version: &str| {
        let mut b = build.clone();
        b.extend_from_slice(format!("\npubky-edge-test-stamp {version}\n").as_bytes());
        b
    };
    let slots = data.join("slots");
    let history = || std::fs::read_to_string(slots.join("history.json")).unwrap_or_default();
    let info = || {
        let o = Command::new(&installed)
            .args(["--config", node.config.to_str().unwrap(), "--data-dir"])
            .arg(&data)
            .arg("info")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let try_cli = |args: &[&str]| {
        let o = Command::new(&installed)
            .args(["--config", node.config.to_str().unwrap(), "--data-dir"])
            .arg(&data)
            .args(args)
            .env(
                "PUBKY_EDGE_BACKUP_PASSPHRASE",
                "correct horse battery staple",
            )
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), said)
    };
    let cli = |args: &[&str]| {
        let (ok, said) = try_cli(args);
        assert!(ok, "{args:?}: {said}");
        said
    };

    // 1. 0.8.0 is installed by the box's own look, started, not healthy within the
    //    deadline (exit 70), started again and rolled back: the installed binary runs.
    publish("0.8.0", stamped("0.8.0")).await;
    wait_for(
        "0.8.0 rolled back",
        || history().contains("\"rolled_back\""),
        || node.log_tail(),
    );
    answers("serving again");
    assert_eq!(service.exe(), installed);
    assert_eq!(service.exits()[..2], [75, 70], "{}", node.log_tail());
    let said = info();
    assert!(said.contains("ROLLED BACK"), "{said}");
    assert!(said.contains("0.8.0 is not tried again"), "{said}");
    assert!(
        said.contains("version:       0.1.0 (the installed binary)"),
        "{said}"
    );
    // The look goes on, and finds 0.8.0 is the one that failed here: nothing is installed.
    wait_for(
        "0.8.0 seen as failed",
        || {
            std::fs::read_to_string(data.join("update.json"))
                .unwrap_or_default()
                .contains("failed_here")
        },
        || node.log_tail(),
    );
    assert!(!slots.join("trial.json").exists());

    // 2. A deadline a healthy build meets; the next start reads it. 0.9.0 is installed,
    //    the server restarts into slot a, reports healthy, and `current` moves there.
    let toml = toml.replace("health_deadline_ms = 1\n", "health_deadline_ms = 20000\n");
    std::fs::write(&node.config, toml).unwrap();
    publish("0.9.0", stamped("0.9.0")).await;
    let slot_a = slots.join("a/pubky-edge");
    wait_for(
        "0.9.0 healthy",
        || history().contains("\"updated\""),
        || node.log_tail(),
    );
    answers("serving 0.9.0");
    assert_eq!(service.exe(), slot_a);
    assert_eq!(
        std::fs::read_link(slots.join("current")).unwrap(),
        Path::new("a")
    );
    let said = info();
    assert!(said.contains("version:       0.9.0 (slot a)"), "{said}");
    assert!(said.contains("last update:   0.1.0 → 0.9.0 at "), "{said}");
    let scraped = metrics();
    assert!(
        scraped.contains("pubky_edge_version_info{version=\"0.9.0\",slot=\"a\"} 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains("pubky_edge_update_last_timestamp_seconds{from=\"0.1.0\",to=\"0.9.0\",outcome=\"updated\"} "),
        "{scraped}"
    );

    // 3. 0.9.1 does not even start (a broken build: it exits 3). The next start rolls it
    //    back to 0.9.0 in slot a, which serves the same data.
    let broken = b"#!/bin/sh\necho 'a broken build' >&2\nexit 3\n".to_vec();
    publish("0.9.1", broken).await;
    wait_for(
        "0.9.1 rolled back",
        || history().contains("0.9.1"),
        || node.log_tail(),
    );
    wait_for(
        "serving 0.9.0 again",
        || service.exe() == slot_a && intact().unwrap_or(false),
        || node.log_tail(),
    );
    let exits = service.exits();
    assert_eq!(exits[exits.len() - 2..], [75, 3], "{}", node.log_tail());
    assert!(node.log_tail().contains("a broken build"));
    let said = info();
    assert!(said.contains("0.9.0 → 0.9.1 ROLLED BACK"), "{said}");
    let scraped = metrics();
    assert!(
        scraped.contains("to=\"0.9.1\",outcome=\"rolled_back\"} "),
        "{scraped}"
    );
    assert!(scraped.contains("pubky_edge_update_held 0"), "{scraped}");
    assert_eq!(
        std::fs::read_link(slots.join("current")).unwrap(),
        Path::new("a")
    );

    // 4. Held: 0.9.2 is found but not installed by the box itself.
    let said = cli(&["update", "hold", "exams", "this", "week"]);
    assert!(said.contains("held until"), "{said}");
    publish("0.9.2", stamped("0.9.2")).await;
    wait_for(
        "0.9.2 seen",
        || {
            std::fs::read_to_string(data.join("update.json"))
                .unwrap_or_default()
                .contains("\"0.9.2\"")
        },
        || node.log_tail(),
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!slots.join("trial.json").exists());
    assert_eq!(service.exe(), slot_a);
    assert!(info().contains("HELD since "), "{}", info());
    let scraped = metrics();
    assert!(scraped.contains("pubky_edge_update_held 1"), "{scraped}");
    assert!(
        scraped.contains("pubky_edge_update_available_info{version=\"0.9.2\"} 1"),
        "{scraped}"
    );
    // "Update now" installs it all the same, and restarts the server through the admin API.
    let said = cli(&["update", "now"]);
    assert!(said.contains("installed: 0.9.2 in slot b"), "{said}");
    assert!(said.contains("The server restarts into 0.9.2"), "{said}");
    let slot_b = slots.join("b/pubky-edge");
    let on_092 = || {
        let h = history();
        service.exe() == slot_b && h.contains("\"to\": \"0.9.2\"") && h.contains("\"updated\"")
    };
    wait_for("serving 0.9.2", on_092, || node.log_tail());
    answers("0.9.2 answers");
    assert_eq!(
        std::fs::read_link(slots.join("current")).unwrap(),
        Path::new("b")
    );

    // 5. Back by hand: slot a's 0.9.0 runs again, the data as it was.
    cli(&["update", "resume"]);
    let said = cli(&["update", "rollback"]);
    assert!(said.contains("switched back: 0.9.0"), "{said}");
    // ... and automatic updates are held, or the box would take 0.9.2 again.
    assert!(said.contains("automatic updates are held"), "{said}");
    wait_for(
        "back on 0.9.0",
        || service.exe() == slot_a && intact().unwrap_or(false),
        || node.log_tail(),
    );
    let said = info();
    assert!(said.contains("version:       0.9.0 (slot a)"), "{said}");
    assert!(said.contains("0.9.2 → 0.9.0 by hand"), "{said}");
    assert!(said.contains("HELD since "), "{said}");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(service.exe(), slot_a);

    // 6. A release that moves the store to a newer format: never installed by the box's
    //    own look, and by `update now` only after a backup point it could restore.
    cli(&["update", "resume"]);
    publish_format("0.9.4", stamped("0.9.4"), pubky_edge::store::FORMAT + 1).await;
    let refused = || std::fs::read_to_string(data.join("update.json")).unwrap_or_default();
    wait_for(
        "0.9.4 not installed by itself",
        || refused().contains("installs only through `pubky-edge update now`"),
        refused,
    );
    assert!(!slots.join("trial.json").exists());
    assert!(info().contains("0.9.4 is available (this box runs 0.9.0) but was NOT INSTALLED"));
    cli(&["update", "hold"]);
    let (ok, said) = try_cli(&["update", "now"]);
    assert!(!ok, "{said}");
    assert!(said.contains("this box has no backup key yet"), "{said}");
    assert!(!slots.join("trial.json").exists());
    cli(&["backup", "init"]);
    let said = cli(&["update", "now"]);
    let set = data.join("update/before-0.9.4");
    assert!(
        said.contains(&format!("written in {}", set.display())),
        "{said}"
    );
    assert!(said.contains("installed: 0.9.4 in slot b"), "{said}");
    let on_094 = || service.exe() == slot_b && history().contains("\"to\": \"0.9.4\"");
    wait_for("serving 0.9.4", on_094, || node.log_tail());
    answers("0.9.4 answers");
    let verified = cli(&["backup", "verify", set.to_str().unwrap()]);
    assert!(verified.contains("backup set is intact"), "{verified}");

    // 7. A release brought as files (a USB disk): judged as one from the channel.
    let brought = tmp.path().join("usb");
    std::fs::create_dir_all(&brought).unwrap();
    let binary_095 = stamped("0.9.5");
    let m = manifest_for("0.9.5", &binary_095, pubky_edge::store::FORMAT);
    let (manifest_file, binary_file) = (brought.join("release.json"), brought.join("pubky-edge"));
    let files = [
        manifest_file.to_str().unwrap(),
        binary_file.to_str().unwrap(),
    ];
    let install = |manifest: &str, binary: &[u8]| {
        std::fs::write(&manifest_file, manifest).unwrap();
        std::fs::write(&binary_file, binary).unwrap();
        try_cli(&["update", "install", files[0], files[1]])
    };
    let mut altered = binary_095.clone();
    altered[1000] ^= 1;
    let stranger = SigningKey::from_bytes(&[7; 32]);
    for (manifest, binary, why) in [
        (sign(&m, &release), &altered, "BLAKE3"),
        (sign(&m, &stranger), &binary_095, "signed by"),
        (
            sign(
                &manifest_for("0.9.3", &binary_095, pubky_edge::store::FORMAT),
                &release,
            ),
            &binary_095,
            "not newer",
        ),
    ] {
        let (ok, said) = install(&manifest, binary);
        assert!(!ok, "{said}");
        assert!(said.contains(why), "{why}: {said}");
        assert!(!slots.join("trial.json").exists(), "{said}");
    }
    let (ok, said) = install(&sign(&m, &release), &binary_095);
    assert!(ok, "{said}");
    assert!(said.contains("installed: 0.9.5 in slot a"), "{said}");
    let on_095 = || service.exe() == slot_a && history().contains("\"to\": \"0.9.5\"");
    wait_for("serving 0.9.5", on_095, || node.log_tail());
    answers("0.9.5 answers");
    service.stop();
}

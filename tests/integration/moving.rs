//! `pubky-edge move` between real servers on a loopback DHT, with the official SDK making
//! the user and their recovery file and checking where the record points afterwards:
//! interrupted and resumed, from an export folder, and out to the reference homeserver
//! (whose whole content then comes back with `pubky-edge import`).

use crate::support as common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{pk_of, Server};
use pubky::Keypair;

use crate::sdk_e2e::{app, hs_key, net, sdk, server_toml, Net};

const PASS: &str = "my pass";

/// Runs the binary; whether it succeeded, and everything it said.
pub(crate) fn edge(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let (ok, said, _) = edge_measured(args, envs);
    (ok, said)
}

/// [`edge`], with the process's peak resident memory (KiB, `VmHWM`, read while it runs).
fn edge_measured(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, u64) {
    use std::process::Stdio;
    let child = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let hwm = std::fs::read_to_string(&status).ok().and_then(|s| {
                    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
                    line.split_whitespace().nth(1)?.parse::<u64>().ok()
                });
                peak = peak.max(hwm.unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said, watcher.join().unwrap())
}

/// The user's side of a move: their recovery file (made by the SDK) and a client config
/// that finds homeservers on the loopback DHT.
struct Mover {
    dir: tempfile::TempDir,
    recovery: PathBuf,
    config: PathBuf,
}

impl Mover {
    fn new(net: &Net, user: &Keypair) -> Mover {
        let dir = tempfile::tempdir().unwrap();
        let recovery = dir.path().join("me.pkarr");
        let file = pubky::recovery_file::create_recovery_file(user, PASS);
        std::fs::write(&recovery, file).unwrap();
        let nodes: Vec<String> = net.bootstrap.iter().map(|b| format!("{b:?}")).collect();
        let config = dir.path().join("client.toml");
        let toml = format!(
            "[pkdns]\ndht_request_timeout_ms = 1000\ndht_bootstrap_nodes = [{}]\n",
            nodes.join(", ")
        );
        std::fs::write(&config, toml).unwrap();
        Mover {
            dir,
            recovery,
            config,
        }
    }

    /// `pubky-edge move --recovery-file … --to <to> <extra…>`.
    fn run(&self, to: &Server, extra: &[&str]) -> (bool, String) {
        let (ok, said, _) = self.run_measured(to, extra);
        (ok, said)
    }

    /// [`Self::run`] with the move's peak resident memory in KiB.
    fn run_measured(&self, to: &Server, extra: &[&str]) -> (bool, String, u64) {
        let to = to.pk.to_string();
        let mut args = vec!["--config", self.config.to_str().unwrap(), "move"];
        args.extend(["--recovery-file", self.recovery.to_str().unwrap()]);
        args.extend(["--to", &to]);
        args.extend_from_slice(extra);
        edge_measured(&args, &[("PUBKY_EDGE_RECOVERY_PASSPHRASE", PASS)])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The SDK's (fresh, so uncached) answer to "where does this user live?".
async fn homeserver_of(net: &Net, user: &Keypair) -> Option<String> {
    let pubky = sdk(net);
    let hs = pubky.get_homeserver_of(&user.public_key()).await;
    hs.unwrap().map(|k| k.z32())
}

/// A public file as the SDK reads it, wherever the user's record points.
async fn public(net: &Net, user: &Keypair, path: &str) -> (Vec<u8>, String) {
    let url = format!("pubky{}{path}", user.public_key().z32());
    let got = sdk(net).public_storage().get(url).await.unwrap();
    let ct = got.headers()["content-type"].to_str().unwrap().to_string();
    (got.bytes().await.unwrap().to_vec(), ct)
}

/// A new user of `s` with the given public files, written by the SDK.
async fn user_with_files(net: &Net, s: &Server, files: &[(&str, &[u8])]) -> Keypair {
    let user = Keypair::random();
    let signer = sdk(net).signer(user.clone());
    signer.signup(&hs_key(s), None).await.expect("signup");
    let session = signer.signin_blocking(app()).await.expect("signin");
    for (path, body) in files {
        session.storage().put(*path, body.to_vec()).await.unwrap();
    }
    user
}

/// An old and a new homeserver on the loopback DHT, both published; `new_extra` is the new
/// one's extra config.
fn two_servers(net: &Net, new_extra: &str) -> (Server, Server) {
    let old = Server::start(&server_toml(net, ""));
    let new = Server::start(&server_toml(net, new_extra));
    old.wait_published(20);
    new.wait_published(20);
    (old, new)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_moves_to_another_homeserver_interrupted_and_resumed() {
    let net = net();
    // one MiB of quota on the new one: the large file does not fit until the operator
    // raises it
    let (old, new) = two_servers(&net, "[storage]\ndefault_quota_mb = 1\n");
    // 48 MiB: more than the move may hold in memory
    let big: Vec<u8> = (0..48u32 << 20).map(|i| (i % 251) as u8).collect();
    let files: [(&str, &[u8]); 2] = [("/pub/a.txt", b"first post"), ("/pub/photos/big.bin", &big)];
    let user = user_with_files(&net, &old, &files).await;
    // a private file, through the server's own API (the SDK writes only /pub/)
    let key = ed25519_dalek::SigningKey::from_bytes(&user.secret_key());
    let pk = pk_of(&key);
    let bearer = common::signin(&old, &key, "/:rw");
    let r = old
        .req("PUT", &old.storage_url(&pk, "/priv/diary.txt"))
        .bearer(&bearer)
        .body(b"dear diary".to_vec())
        .send();
    assert_eq!(r.status, 201);

    let mover = Mover::new(&net, &user);
    let (ok, said) = mover.run(&new, &[]);
    assert!(!ok && said.contains("PUT /pub/photos/big.bin"), "{said}");
    assert!(
        mover.path(&format!(".pubky-move-{pk}.json")).exists(),
        "journal kept"
    );
    assert_eq!(
        homeserver_of(&net, &user).await,
        Some(old.pk.to_string()),
        "the record is not touched before every file is across"
    );

    let raised = new
        .admin("PATCH", &format!("/users/{pk}/quota"))
        .json(&serde_json::json!({ "storage_quota_mb": 100 }))
        .send();
    assert_eq!(raised.status, 200);
    let (ok, said, peak_kib) = mover.run_measured(&new, &["--delete-old"]);
    assert!(ok, "{said}");
    // Files stream through a part file, so the 48 MiB one is never in memory: the move
    // peaks at about 38 MiB with small files alone (19 of them Argon2's, opening the
    // recovery file), and would pass 86 MiB holding one copy of this file.
    assert!(
        peak_kib > 0 && peak_kib < 64 << 10,
        "peak RSS {peak_kib} KiB"
    );
    eprintln!("the move's peak RSS: {peak_kib} KiB");
    assert!(
        said.contains("3 files on the old homeserver: 2 copied now"),
        "{said}"
    );
    assert!(said.contains("deleted 3 files"), "{said}");
    assert!(
        !mover.path(&format!(".pubky-move-{pk}.json")).exists(),
        "journal removed"
    );

    // the SDK follows the record to the new server
    assert_eq!(homeserver_of(&net, &user).await, Some(new.pk.to_string()));
    assert!(public(&net, &user, "/pub/photos/big.bin").await.0 == big);
    let signer = sdk(&net).signer(user.clone());
    let session = signer
        .signin_blocking(app())
        .await
        .expect("signin on the new server");
    let a = session.storage().get("/pub/a.txt").await.unwrap();
    assert_eq!(a.text().await.unwrap(), "first post");
    let bearer = common::signin(&new, &key, "/:rw");
    let r = new
        .req("GET", &new.storage_url(&pk, "/priv/diary.txt"))
        .bearer(&bearer)
        .send();
    assert_eq!(r.body, b"dear diary");
    // the old server no longer holds the files
    let gone = old.req("GET", &old.storage_url(&pk, "/pub/a.txt")).send();
    assert_eq!(gone.status, 404);
}

/// The box is dying: the operator exports the user's files, and the user moves from that
/// folder (`--from-export`) to another homeserver; the SDK then reads them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_moves_from_an_export_folder() {
    let net = net();
    let (old, new) = two_servers(&net, "");
    let files: [(&str, &[u8]); 2] = [
        ("/pub/notes/one.txt", b"one"),
        ("/pub/two.json", br#"{"n":2}"#),
    ];
    let user = user_with_files(&net, &old, &files).await;
    let mover = Mover::new(&net, &user);
    let export = mover.path("export");
    let data = old.data_dir.to_str().unwrap();
    let pk = user.public_key().z32();
    let admin = old.admin_addr.unwrap().to_string();
    let (ok, said) = edge(
        &[
            "--data-dir",
            data,
            "export",
            "--user",
            &pk,
            export.to_str().unwrap(),
        ],
        &[
            ("PUBKY_EDGE_ADMIN_ADDR", &admin),
            ("PUBKY_EDGE_ADMIN_PASSWORD", "test-admin"),
        ],
    );
    assert!(ok, "{said}");
    drop(old); // the old box is gone

    let (ok, said) = mover.run(&new, &["--from-export", export.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(
        said.contains("2 files on the old homeserver: 2 copied now"),
        "{said}"
    );
    let (body, ct) = public(&net, &user, "/pub/two.json").await;
    assert_eq!(
        (body.as_slice(), ct.as_str()),
        (&br#"{"n":2}"#[..], "application/json")
    );
    assert_eq!(public(&net, &user, "/pub/notes/one.txt").await.0, b"one");
}

/// The reference homeserver, killed on drop.
struct Reference(std::process::Child);

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary` on loopback ports with `db`, on the loopback DHT; returns it with its
/// admin address once that accepts.
fn reference(binary: &str, db: &str, dir: &Path, net: &Net) -> (Reference, String) {
    let port = common::proc::free_port;
    let admin = format!("127.0.0.1:{}", port());
    let nodes: Vec<String> = net.bootstrap.iter().map(|b| format!("{b:?}")).collect();
    std::fs::create_dir_all(dir).unwrap();
    let config = format!(
        "[general]\ndatabase_url = \"{db}\"\nsignup_mode = \"token_required\"\n\
         [drive]\npubky_listen_socket = \"127.0.0.1:{}\"\nicann_listen_socket = \"127.0.0.1:{}\"\n\
         [admin]\nlisten_socket = \"{admin}\"\nadmin_password = \"ref-admin\"\n\
         [metrics]\nenabled = false\n[dashboard]\nenabled = false\n\
         [pkdns]\npublic_ip = \"127.0.0.1\"\ndht_bootstrap_nodes = [{}]\n",
        port(),
        port(),
        nodes.join(", ")
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let child = Command::new(binary)
        .arg("--data-dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let r = Reference(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&admin).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reference did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (r, admin)
}

/// Moving out to the reference homeserver and back in from it: a user leaves this box for a
/// real `pubky-homeserver` 0.17.1 with `pubky-edge move` (the SDK then reads their files
/// there), and the reference's whole content comes back into a fresh box with `pubky-edge
/// import` over its admin WebDAV, under its identity. Runs when `PUBKY_EDGE_REFERENCE`
/// names the reference's binary and `PUBKY_EDGE_REFERENCE_DB` an empty PostgreSQL
/// database (`scripts/reference-peer` sets both up, inside a network namespace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_out_to_the_reference_homeserver_and_importing_it_back() {
    let (Ok(binary), Ok(db)) = (
        std::env::var("PUBKY_EDGE_REFERENCE"),
        std::env::var("PUBKY_EDGE_REFERENCE_DB"),
    ) else {
        eprintln!("note: PUBKY_EDGE_REFERENCE is not set; scripts/reference-peer runs this test");
        return;
    };
    let net = net();
    let edge_server = Server::start(&server_toml(&net, ""));
    edge_server.wait_published(20);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let files: [(&str, &[u8]); 2] = [
        ("/pub/posts/1.json", br#"{"t":"hi"}"#),
        ("/pub/media/clip.bin", &big),
    ];
    let user = user_with_files(&net, &edge_server, &files).await;
    let mover = Mover::new(&net, &user);
    let refdir = mover.path("reference");
    let (reference, admin) = reference(&binary, &db, &refdir, &net);
    let ref_key = pubky_edge::identity::Identity::load_existing(&refdir)
        .unwrap()
        .public_key();
    let token = {
        use pubky_edge::runtime::http1;
        let call = http1::Call {
            method: "GET",
            path: "/generate_signup_token",
            headers: &[("x-admin-password", "ref-admin")],
            body: b"",
        };
        let r = http1::call(
            admin.parse().unwrap(),
            &admin,
            &call,
            Duration::from_secs(10),
        );
        String::from_utf8(r.unwrap().read_all().unwrap()).unwrap()
    };

    // its record on the DHT, once it has published it
    let dht =
        pubky_edge::announce::dht::DhtClient::start(&pubky_edge::announce::dht::DhtSettings {
            bootstrap: net.bootstrap.clone(),
            request_timeout: Duration::from_secs(1),
            port: Some(0),
        })
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dht.get(&ref_key).await.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reference never published its record"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // moving out, to the reference (it wants a signup token)
    let to = ref_key.to_string();
    let mut args = vec!["--config", mover.config.to_str().unwrap(), "move"];
    args.extend([
        "--recovery-file",
        mover.recovery.to_str().unwrap(),
        "--to",
        &to,
    ]);
    args.extend(["--signup-token", token.trim()]);
    let (ok, said) = edge(&args, &[("PUBKY_EDGE_RECOVERY_PASSPHRASE", PASS)]);
    assert!(ok, "{said}");
    assert!(public(&net, &user, "/pub/media/clip.bin").await.0 == big);
    assert_eq!(homeserver_of(&net, &user).await, Some(to));

    // and the whole reference comes back into a fresh box, under its identity
    let target = mover.path("box");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(refdir.join("secret"), target.join("secret")).unwrap();
    let url = format!("http://{admin}/dav/");
    let (ok, said) = edge(
        &[
            "--data-dir",
            target.to_str().unwrap(),
            "import",
            "--from-webdav",
            &url,
        ],
        &[],
    );
    assert!(
        !ok && said.contains("usage"),
        "the password is required: {said}"
    );
    let (ok, said) = edge(
        &[
            "--data-dir",
            target.to_str().unwrap(),
            "import",
            "--from-webdav",
            &url,
            "--admin-password",
            "ref-admin",
        ],
        &[],
    );
    assert!(ok && said.contains("2 files copied"), "{said}");
    drop(reference);
    let imported = Server::start_in(&target, "");
    assert_eq!(imported.pk, ref_key);
    let user_pk = pubky_edge::pubkey::PublicKey::parse_z32(&user.public_key().z32()).unwrap();
    let r = imported
        .req(
            "GET",
            &imported.storage_url(&user_pk, "/pub/media/clip.bin"),
        )
        .send();
    assert_eq!(r.body, big);
    let r = imported
        .req("GET", &imported.storage_url(&user_pk, "/pub/posts/1.json"))
        .send();
    assert_eq!(r.body, br#"{"t":"hi"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

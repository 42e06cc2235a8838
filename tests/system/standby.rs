//! A standby box as real processes: killed with SIGKILL again and again while the primary
//! takes writes, it catches up with nothing missing or applied twice; and on a loopback
//! DHT, with the official SDK as the client: the primary dies, the standby is promoted,
//! the SDK's reads and new sign-ins reach it by the homeserver's key, the old primary
//! comes back, sees the newer record, refuses writes and reports the writes the standby
//! never read, and is paired again as the new primary's standby (three boxes' worth of
//! roles, two data directories). A standby allowed to take over, with
//! `standby.auto_promote_after_ms`, promotes itself when the primary is gone, and one that
//! was unpaired (the primary answers it) never does.
//!
//! `STANDBY_KILLS` (default 4) sets the number of SIGKILLs of the standby.

use crate::support as common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proc::{bearer, free_port, request, Node, Rng};
use common::replica::fingerprint;
use pubky_edge::store::{Store, StoreConfig};

/// A box: its config (fixed ports, so a restart keeps its addresses), its data and its
/// PubkyTLS and admin addresses.
struct Box_ {
    node: Node,
    tls: std::net::SocketAddr,
    admin: std::net::SocketAddr,
}

fn make_box(dir: &Path, name: &str, dht: Option<&[String]>, extra: &str) -> Box_ {
    let (http, tls, admin) = (free_port(), free_port(), free_port());
    let pkdns = match dht {
        None => "dht = false\n".to_string(),
        Some(nodes) => {
            let nodes: Vec<String> = nodes.iter().map(|n| format!("{n:?}")).collect();
            format!(
                "dht = true\npublic_ip = \"127.0.0.1\"\ndht_request_timeout_ms = 1000\n\
                 publish_retry_min_ms = 100\ndht_bootstrap_nodes = [{}]\n",
                nodes.join(", ")
            )
        }
    };
    let toml = format!(
        "[general]\nsignup_mode = \"open\"\n[drive]\nicann_listen_socket = \"127.0.0.1:{http}\"\n\
         pubky_listen_socket = \"127.0.0.1:{tls}\"\n[pkdns]\n{pkdns}[admin]\n\
         listen_socket = \"127.0.0.1:{admin}\"\npassword = \"test-admin\"\n[metrics]\n\
         listen_socket = \"127.0.0.1:0\"\n[dashboard]\nlisten_socket = \"127.0.0.1:0\"\n\
         [upnp]\nenabled = false\n[mdns]\nenabled = false\n[standby]\ncheck_interval_ms = 300\n\
         retry_min_ms = 100\n{extra}\n[logging]\nlevel = \"info\"\n"
    );
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let node = Node::with_config(&home, &home.join("data"), &toml, http);
    Box_ {
        node,
        tls: format!("127.0.0.1:{tls}").parse().unwrap(),
        admin: format!("127.0.0.1:{admin}").parse().unwrap(),
    }
}

impl Box_ {
    fn admin(&self, method: &str, path: &str) -> serde_json::Value {
        let r = request(
            self.admin,
            method,
            path,
            "x-admin-password: test-admin\r\n",
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    fn code(&self, takeover: bool) -> String {
        let q = if takeover { "?takeover=true" } else { "" };
        self.admin("POST", &format!("/standby/code{q}"))["code"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `pubky-edge … <args>` on this box's config and data; whether it succeeded, and
    /// what it said.
    fn edge(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(common::proc::bin())
            .arg("--config")
            .arg(&self.node.config)
            .arg("--data-dir")
            .arg(&self.node.data)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    }

    fn pair(&self, code: &str, extra: &[&str]) {
        let mut args = vec!["standby", "pair", code];
        args.extend_from_slice(extra);
        let (ok, said) = self.edge(&args);
        assert!(ok, "pair: {said}");
    }

    /// The primary's view: its last event, and how far its standby holds.
    fn lag(&self) -> (u64, u64) {
        let v = self.admin("GET", "/standby");
        let s = &v["standby"];
        (s["head"].as_u64().unwrap(), s["position"].as_u64().unwrap())
    }
}

/// Waits until `primary`'s standby holds everything it has.
fn wait_caught_up(primary: &Box_, standby: &Box_, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (head, position) = primary.lag();
        if position >= head {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby holds {position} of {head} after {secs} s: {}",
            standby.node.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn open(data: &Path) -> Store {
    Store::open(
        data,
        StoreConfig {
            cache_capacity_bytes: 8 << 20,
            inline_max: 16384,
            durability: pubky_edge::store::Durability::Strict,
            default_quota_bytes: None,
        },
    )
    .unwrap()
}

/// Writes of `workers` users until `stop`: new files (inline and blob-sized, public and
/// private), overwrites and deletes. Returns the threads and the acknowledged count.
fn load(
    node: &Node,
    workers: usize,
    stop: &Arc<AtomicBool>,
) -> (Vec<std::thread::JoinHandle<()>>, Arc<AtomicU64>) {
    let acked = Arc::new(AtomicU64::new(0));
    let threads = (0..workers)
        .map(|w| {
            let key = common::proc::random_key();
            let token = node.signup(&key);
            let pk = common::pk_of(&key);
            let (addr, stop, acked) = (node.addr, stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(77 + w as u64);
                let auth = bearer(&token);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let dir = if i % 2 == 0 { "pub" } else { "priv" };
                    let path = format!("/storage/{pk}/{dir}/w/f{}", rng.range(0, 40));
                    let r = if rng.range(0, 5) == 0 {
                        request(addr, "DELETE", &path, &auth, b"")
                    } else {
                        let n = if rng.range(0, 4) == 0 { 30_000 } else { 300 };
                        request(addr, "PUT", &path, &auth, &rng.bytes(n))
                    };
                    if r.is_ok_and(|r| r.status < 300) {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    (threads, acked)
}

#[test]
fn a_standby_killed_again_and_again_catches_up_with_nothing_missing_or_doubled() {
    let _s = crate::suite("standby");
    let kills: usize = std::env::var("STANDBY_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let tmp = tempfile::tempdir().unwrap();
    let mut primary = make_box(tmp.path(), "primary", None, "");
    let mut standby = make_box(tmp.path(), "standby", None, "");
    primary.node.start();
    let stop = Arc::new(AtomicBool::new(false));
    let (threads, acked) = load(&primary.node, 3, &stop);
    std::thread::sleep(Duration::from_millis(300));
    // Paired while the primary takes writes: the copy is one point in time, the log
    // carries on from it.
    let tls = primary.tls.to_string();
    standby.pair(&primary.code(false), &["--at", &tls]);
    standby.node.start();
    let mut rng = Rng::new(common::proc::seed_from_env("STANDBY_SEED"));
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.range(200, 900)));
        standby.node.kill();
        std::thread::sleep(Duration::from_millis(rng.range(0, 300)));
        standby.node.start();
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    wait_caught_up(&primary, &standby, 60);
    let writes = acked.load(Ordering::Relaxed);
    primary.node.stop();
    standby.node.stop();
    let (p, s) = (open(&primary.node.data), open(&standby.node.data));
    let (fp, fs) = (fingerprint(&p), fingerprint(&s));
    assert!(writes > 100, "only {writes} writes were acknowledged");
    assert_eq!(fs.events.len(), fp.events.len());
    assert_eq!(fs.events, fp.events, "the event logs differ");
    assert_eq!(fs.files, fp.files, "the files differ");
    assert_eq!(fs.users, fp.users, "the accounts or their usage differ");
    assert_eq!(s.check().unwrap().problems, Vec::<String>::new());
    eprintln!(
        "standby: {kills} SIGKILLs during {writes} acknowledged writes; {} events and {} \
         files identical",
        fp.events.len(),
        fp.files.len()
    );
}

/// The official SDK on the loopback DHT.
fn sdk(bootstrap: &[String]) -> pubky::Pubky {
    pubky::Pubky::with_client(common::sdk_client(bootstrap))
}

/// A user signed up on homeserver `hs` with the SDK (which publishes the user's record).
async fn sdk_user(
    pubky: &pubky::Pubky,
    hs: &pubky_edge::pubkey::PublicKey,
) -> (pubky::Keypair, pubky::PubkySession) {
    let hs_key = pubky::PublicKey::try_from(hs.to_string().as_str()).unwrap();
    let user = pubky::Keypair::random();
    let signer = pubky.signer(user.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    // The homeserver's first record may still be on its way.
    while let Err(e) = signer.signup(&hs_key, None).await {
        assert!(Instant::now() < deadline, "signup: {e}");
        smol::Timer::after(Duration::from_millis(200)).await;
    }
    let app = pubky::ClientId::new("standby.test").unwrap();
    let session = signer.signin_blocking(app).await.unwrap();
    (user, session)
}

/// Reads `url` through a fresh SDK until it answers `want`, up to `secs`.
async fn read_until(bootstrap: &[String], url: &str, want: &str, secs: u64) -> Duration {
    let started = Instant::now();
    loop {
        let got = sdk(bootstrap).public_storage().get(url).await;
        if let Ok(r) = got {
            if r.text().await.is_ok_and(|t| t == want) {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "{url} never read back"
        );
        smol::Timer::after(Duration::from_millis(100)).await;
    }
}

fn data_dir_entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_takes_over_and_the_old_primary_stands_down() {
    let _s = crate::suite("standby");
    let (_nodes, bootstrap) = pubky_edge::announce::dht::local_testnet(0, 4).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut primary = make_box(tmp.path(), "primary", Some(&bootstrap), "");
    let mut standby = make_box(tmp.path(), "standby", Some(&bootstrap), "");
    let hs = primary.node.hs;
    primary.node.start();

    // A user of the primary, with the SDK: signed up through the DHT record.
    let pubky = sdk(&bootstrap);
    let (user, session) = sdk_user(&pubky, &hs).await;
    let st = session.storage();
    for i in 0..20 {
        st.put(format!("/pub/notes/{i}.txt"), format!("note {i}"))
            .await
            .unwrap();
    }
    st.put("/priv/diary", "private before").await.unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    st.put("/pub/photo.bin", big.clone()).await.unwrap();

    // The standby pairs through the DHT (no address given) with takeover allowed.
    let code = primary.code(true);
    standby.pair(&code, &[]);
    standby.node.start();
    st.put("/pub/notes/after-pairing.txt", "followed")
        .await
        .unwrap();
    wait_caught_up(&primary, &standby, 30);

    // The standby is offline while the primary takes two more writes: those are the
    // writes a takeover cannot have. Then the primary dies.
    standby.node.stop();
    st.put("/pub/notes/unseen.txt", "the standby never read this")
        .await
        .unwrap();
    st.delete("/pub/notes/0.txt").await.unwrap();
    let lost_at = Instant::now();
    primary.node.kill();

    // Promote (the standby's server stopped): open the sealed key, start again.
    let (ok, said) = standby.edge(&["standby", "promote"]);
    assert!(ok, "promote: {said}");
    assert!(said.contains(&hs.to_string()), "{said}");
    let (ok, said) = standby.edge(&["standby", "promote"]);
    assert!(!ok && said.contains("promoted already"), "{said}");
    standby.node.start();
    let url = format!(
        "pubky{}/pub/notes/after-pairing.txt",
        user.public_key().z32()
    );
    let took = read_until(&bootstrap, &url, "followed", 60).await;
    eprintln!(
        "takeover: first SDK read through the promoted standby {:.1} s after the primary \
         died ({:.1} s after its restart)",
        lost_at.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
    // Every write the standby had read is there, through the SDK.
    let fresh = sdk(&bootstrap);
    let owner = user.public_key().z32();
    for i in 1..20 {
        let got = fresh
            .public_storage()
            .get(format!("pubky{owner}/pub/notes/{i}.txt"))
            .await
            .unwrap();
        assert_eq!(got.text().await.unwrap(), format!("note {i}"));
    }
    let got = fresh
        .public_storage()
        .get(format!("pubky{owner}/pub/photo.bin"))
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), &big[..]);
    // A new sign-in (an SDK client that has not cached the old record) reaches the new
    // homeserver, reads the private file, and writes.
    let again = fresh
        .signer(user.clone())
        .signin_blocking(pubky::ClientId::new("standby.test").unwrap())
        .await
        .expect("sign-in through the promoted standby");
    let s2 = again.storage();
    assert_eq!(
        s2.get("/priv/diary").await.unwrap().text().await.unwrap(),
        "private before"
    );
    s2.put("/pub/notes/after-takeover.txt", "on the new primary")
        .await
        .unwrap();
    // The write it never read is not there (it is reported by the old primary below).
    assert!(!s2.exists("/pub/notes/unseen.txt").await.unwrap());

    // The old primary comes back: it sees the newer record before it publishes, fences
    // itself, refuses writes and lists what the standby never read.
    primary.node.start();
    let fenced = primary.node.data.join("standby/fenced.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fenced.exists() {
        assert!(
            Instant::now() < deadline,
            "not fenced: {}",
            primary.node.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&fenced).unwrap()).unwrap();
    assert_eq!(f["unconfirmed_total"], 2, "{f}");
    assert_eq!(f["unconfirmed"][0]["path"], "/pub/notes/unseen.txt", "{f}");
    assert_eq!(f["unconfirmed"][1]["kind"], "DEL", "{f}");
    let token_user = common::proc::random_key();
    let g = common::GrantSpec::new(&token_user, hs, "pubky.signup", "/:rw", 300);
    let signup = |node: &Node| {
        let body = serde_json::to_vec(&g.body()).unwrap();
        let ct = "content-type: application/json\r\n";
        request(node.addr, "POST", "/auth/grant/signup", ct, &body).unwrap()
    };
    let r = signup(&primary.node);
    assert_eq!(r.status, 503, "{}", r.text());
    let (_, said) = primary.edge(&["standby", "status"]);
    assert!(
        said.contains("TAKEN OVER") && said.contains("2 event(s)"),
        "{said}"
    );
    // It did not publish over the new record: the SDK still reads the new primary.
    read_until(
        &bootstrap,
        &format!("pubky{owner}/pub/notes/after-takeover.txt"),
        "on the new primary",
        10,
    )
    .await;
    let v = primary.admin("GET", "/standby");
    assert_eq!(v["mode"], "fenced");
    // A restart does not lift the fence (it is a file, read before anything starts).
    primary.node.stop();
    primary.node.start();
    assert_eq!(primary.admin("GET", "/standby")["mode"], "fenced");
    let r = signup(&primary.node);
    assert_eq!(r.status, 503, "{}", r.text());

    // Paired again as the new primary's standby: its data is set aside, not dropped.
    primary.node.stop();
    let code = standby.code(false);
    let (ok, said) = primary.edge(&["standby", "pair", &code]);
    assert!(!ok && said.contains("--set-aside"), "{said}");
    primary.pair(&code, &["--set-aside"]);
    let aside = data_dir_entries(&primary.node.data.join("set-aside"));
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].join("standby/fenced.json").exists());
    assert!(aside[0].join("secret").exists());
    primary.node.start();
    s2.put("/pub/notes/third.txt", "followed by the old box")
        .await
        .unwrap();
    wait_caught_up(&standby, &primary, 30);
    let r = request(
        primary.node.addr,
        "GET",
        &format!("/storage/{owner}/pub/notes/third.txt"),
        "",
        b"",
    )
    .unwrap();
    assert_eq!(r.body, b"followed by the old box");
    // Its own key is new: it no longer holds the homeserver's.
    let (_, said) = primary.edge(&["info"]);
    let own = said.lines().find_map(|l| l.strip_prefix("public key:"));
    assert!(own.is_some_and(|k| k.trim() != hs.to_string()), "{said}");
    assert!(said.contains(&format!("following {hs}")), "{said}");
}

/// Waits for the process to end by itself; its exit code.
fn exit_code(node: &mut Node, secs: u64) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let child = node.child.as_mut().expect("running");
        if let Some(status) = child.try_wait().unwrap() {
            node.child = None;
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "still running: {}",
            node.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_allowed_to_take_over_promotes_itself_when_the_primary_is_gone_not_when_unpaired()
{
    let _s = crate::suite("standby");
    let (_nodes, bootstrap) = pubky_edge::announce::dht::local_testnet(0, 4).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let auto = "auto_promote_after_ms = 1500";
    let mut primary = make_box(tmp.path(), "primary", Some(&bootstrap), "");
    let mut standby = make_box(tmp.path(), "standby", Some(&bootstrap), auto);
    let mut other = make_box(tmp.path(), "other", Some(&bootstrap), auto);
    primary.node.start();
    let (user, session) = sdk_user(&sdk(&bootstrap), &primary.node.hs).await;
    let owner = user.public_key().z32();
    session
        .storage()
        .put("/pub/a.txt", "before the primary went")
        .await
        .unwrap();
    let tls = primary.tls.to_string();
    // One standby without takeover, unpaired while it runs: the primary answers it (401),
    // so it never promotes itself, whatever its setting.
    other.pair(&primary.code(false), &["--at", &tls]);
    other.node.start();
    primary.admin("DELETE", "/standby");
    standby.pair(&primary.code(true), &["--at", &tls]);
    standby.node.start();
    wait_caught_up(&primary, &standby, 30);

    let gone = Instant::now();
    primary.node.kill();
    // It promotes itself and asks to be started again (75, as systemd's unit expects).
    assert_eq!(exit_code(&mut standby.node, 30), Some(75));
    let promoted_after = gone.elapsed();
    standby.node.start();
    let url = format!("pubky{owner}/pub/a.txt");
    read_until(&bootstrap, &url, "before the primary went", 30).await;
    eprintln!(
        "automatic takeover: promoted {:.1} s after the primary died (setting 1.5 s); first \
         SDK read {:.1} s after it died",
        promoted_after.as_secs_f64(),
        gone.elapsed().as_secs_f64()
    );
    // The unpaired one is still a standby, still running.
    assert!(other
        .node
        .child
        .as_mut()
        .unwrap()
        .try_wait()
        .unwrap()
        .is_none());
    let (_, said) = other.edge(&["standby", "status"]);
    assert!(
        said.contains("following") && !said.contains("promoted"),
        "{said}"
    );
}

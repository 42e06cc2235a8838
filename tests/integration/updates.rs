//! Releases published the way Pubky publishes everything: the release key is a user of a
//! homeserver (pubky-edge itself, on a loopback DHT) and PUTs its signed manifests there
//! with the official SDK; `pubky-edge update check` finds them through the DHT, reads them
//! over PubkyTLS and judges them with the release key, and `update download` keeps a
//! binary only when it is the signed one.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use ed25519_dalek::SigningKey;
use pubky::Keypair;
use pubky_edge::update::check::{manifest_path, this_target};
use pubky_edge::update::download::binary_path;
use pubky_edge::update::manifest::{sign, Manifest};

use crate::sdk_e2e::{app, hs_key, net, sdk, server_toml};
use crate::support::Server;

fn manifest(version: &str, target: &str) -> Manifest {
    let binary = format!("pubky-edge {version}").into_bytes();
    Manifest {
        version: version.into(),
        target: target.into(),
        size: binary.len() as u64,
        blake3: blake3::hash(&binary).to_hex().to_string(),
        min_from: "0.0.1".into(),
        store_format: 1,
        notes: "Faster listings.\nMore below.".into(),
        released_at: 1_800_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_check_finds_a_signed_release_over_pubky_and_refuses_what_is_not_one() {
    let net = net();
    let server = Server::start(&server_toml(&net, ""));
    server.wait_published(20);
    let release = SigningKey::from_bytes(&[42; 32]);
    let release_pk = pubky_edge::pubkey::PublicKey::from(release.verifying_key());
    let signer = sdk(&net).signer(Keypair::from_secret(&[42; 32]));
    signer.signup(&hs_key(&server), None).await.expect("signup");
    let session = signer.signin_blocking(app()).await.expect("signin");
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

//! The OCI image (images/container) run with podman on host networking: it starts as the
//! unprivileged user, reads the config in its data volume, idles in a few MiB, publishes to
//! a loopback DHT, and the official SDK signs up and round-trips a file through it; a stop is
//! graceful.
//!
//! Runs when `PUBKY_EDGE_IMAGE` names a built image (`.ci/container` builds one and sets
//! it); otherwise it says it skipped.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pubky::{ClientId, Keypair, Pubky, PublicKey as SdkKey};
use pubky_edge::announce::dht::local_testnet;

/// podman as it works on this kind of machine: runc, cgroupfs, no default ulimits.
fn podman(conf: &Path, args: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .output()
        .expect("podman runs")
}

/// Removes the container however the test ends.
struct Container<'a> {
    name: String,
    conf: &'a Path,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = podman(self.conf, &["rm", "-f", "-t", "2", &self.name]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_the_sdk_on_host_networking() {
    let Some(image) = std::env::var("PUBKY_EDGE_IMAGE").ok() else {
        eprintln!("note: PUBKY_EDGE_IMAGE is not set (.ci/container builds the image): skipped");
        return;
    };
    let _suite = crate::suite("container");
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();

    let (_nodes, bootstrap) = local_testnet(0, 4).unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (http, tls, admin, metrics) = (
        crate::support::proc::free_port(),
        crate::support::proc::free_port(),
        crate::support::proc::free_port(),
        crate::support::proc::free_port(),
    );
    let nodes: Vec<String> = bootstrap.iter().map(|b| format!("{b:?}")).collect();
    std::fs::write(
        data.join("config.toml"),
        format!(
            "[general]\nsignup_mode = \"open\"\n\
             [drive]\nicann_listen_socket = \"127.0.0.1:{http}\"\n\
             pubky_listen_socket = \"127.0.0.1:{tls}\"\n\
             [admin]\nlisten_socket = \"127.0.0.1:{admin}\"\n\
             [metrics]\nlisten_socket = \"127.0.0.1:{metrics}\"\n[dashboard]\nenabled = false\n\
             [pkdns]\npublic_ip = \"127.0.0.1\"\ndht_request_timeout_ms = 1000\n\
             publish_retry_min_ms = 100\ndht_bootstrap_nodes = [{}]\n",
            nodes.join(", ")
        ),
    )
    .unwrap();
    // The image's user owns the data directory, as a named volume would give it.
    let chown = Command::new("chown")
        .args(["-R", "65532:65532", data.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());

    let name = format!("pubky-edge-test-{}", std::process::id());
    let volume = format!("{}:/data", data.display());
    let run = podman(
        &conf,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network=host",
            "-v",
            &volume,
            &image,
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let container = Container {
        name: name.clone(),
        conf: &conf,
    };
    let logs = || {
        let o = podman(&conf, &["logs", &name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // It runs as the image's user, not root.
    let top = podman(&conf, &["top", &name, "user", "comm"]);
    let top = String::from_utf8_lossy(&top.stdout).into_owned();
    assert!(top.contains("65532") && top.contains("pubky-edge"), "{top}");

    let deadline = Instant::now() + Duration::from_secs(60);
    while !logs().contains("pubky-edge is serving") {
        assert!(Instant::now() < deadline, "did not start:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The board build idles small: sled's unused metric buffers stay untouched (25.3 MiB
    // before that was fixed, about 5 MiB after; the bound leaves room for the machine).
    let pid = podman(&conf, &["inspect", "--format", "{{.State.Pid}}", &name]);
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    eprintln!("container idle RSS: {rss_kib} KiB");
    assert!(rss_kib < 12 * 1024, "idle RSS {rss_kib} KiB");
    let hs = logs()
        .split("public_key=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the start line names the key")
        .to_string();
    let hs = SdkKey::try_from(hs.as_str()).unwrap();

    let client = crate::support::sdk_client(&bootstrap);
    let pubky = Pubky::with_client(client);
    let signer = pubky.signer(Keypair::random());
    // The record reaches the DHT shortly after start: retry the first request a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match signer.signup(&hs, None).await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "signup: {e}\n{}", logs());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let session = signer
        .signin_blocking(ClientId::new("container.test").unwrap())
        .await
        .expect("signin");
    let st = session.storage();
    st.put("/pub/container/hello.txt", "from a container")
        .await
        .expect("put");
    let got = st.get("/pub/container/hello.txt").await.unwrap();
    assert_eq!(got.text().await.unwrap(), "from a container");

    // The data lives in the volume, owned by the image's user.
    let meta = std::fs::metadata(data.join("secret")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), 65532);

    let stop = podman(&conf, &["stop", "-t", "20", &name]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let code = podman(
        &conf,
        &["inspect", "--format", "{{.State.ExitCode}}", &name],
    );
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "{}",
        logs()
    );
    drop(container);
}

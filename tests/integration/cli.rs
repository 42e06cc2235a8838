//! The real binary: `--version`, `--help`, `info`, `token new`, `check`, `memory-budget`,
//! bad configuration and a refused secret file, each with the exit code and the one-line
//! reason a user sees.

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
    // `testnet` takes one option, and says what a bad one should have been (nothing starts).
    for (args, said) in [
        (
            &["testnet", "--bind", "localhost"][..],
            "--bind needs an IPv4 address",
        ),
        (&["testnet", "--bind"][..], "--bind needs a value"),
        (&["testnet", "--port", "1"][..], "takes only --bind IPV4"),
    ] {
        let o = run(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(said), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn memory_budget_reports_the_ceiling_and_touches_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let o = run(&["--data-dir", d, "--board", "pi-zero", "memory-budget"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("memory budget: 160 MiB (limits.memory_budget_mb)\n"),
        "{out}"
    );
    assert!(out.contains("\nceiling in force: "), "{out}");
    assert!(out.contains("swap: "), "{out}");
    let o = run(&["--data-dir", d, "memory-budget"]);
    assert!(
        stdout(&o).starts_with("memory budget: 256 MiB"),
        "{}",
        stdout(&o)
    );
    let o = run(&["--data-dir", d, "memory-budget", "--bogus"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("usage: pubky-edge memory-budget [--apply]"));
    // `--apply` outside a systemd service says there is nothing to apply it to. (Where these
    // tests themselves run as a systemd service it would set that service's MemoryHigh=,
    // so it is not run there.)
    use pubky_edge::runtime::memory::{parse_cgroup_v2, service_unit};
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let in_a_service = parse_cgroup_v2(&cgroup).and_then(service_unit).is_some();
    if !in_a_service {
        let o = run(&["--data-dir", d, "memory-budget", "--apply"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stderr(&o).contains("nothing to apply"), "{}", stderr(&o));
    }
    // It runs as root before each start: it must not create the data directory.
    assert!(!data.exists());
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
    assert!(
        pubky_edge::auth::secrets::is_signup_token(&token),
        "{token}"
    );
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

/// A store with one inline file and one blob-sized file, written through the library.
fn store_with_two_files(data: &std::path::Path) -> pubky_edge::pubkey::PublicKey {
    use pubky_edge::store::{Durability, Store, StoreConfig};
    let store = Store::open(
        data,
        StoreConfig {
            cache_capacity_bytes: 4 << 20,
            inline_max: 1024,
            durability: Durability::Strict,
            default_quota_bytes: None,
        },
    )
    .unwrap();
    let user = pubky_edge::pubkey::PublicKey::from(
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key(),
    );
    smol::block_on(async {
        store.create_user(&user, None, 0).await.unwrap();
        for (path, len) in [("/pub/a/small", 10usize), ("/pub/a/big", 50_000)] {
            let mut up = store.upload();
            up.write(&vec![b'x'; len]).await.unwrap();
            let staged = up.finish().await.unwrap();
            let path = pubky_edge::storage_path::StoragePath::strict(path).unwrap();
            store
                .put(&user, &path, staged, "text/plain", 1)
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    });
    user
}

#[test]
fn check_reports_a_consistent_store_and_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let o = run(&["--data-dir", d, "check"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no store in"), "{}", stderr(&o));

    let user = store_with_two_files(&data);
    let o = run(&["--data-dir", d, "check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("files:       2"), "{text}");
    assert!(text.contains("blob files:  1"), "{text}");
    // quota usage: both bodies plus 256 bytes of per-file overhead each
    let used = 10 + 50_000 + 2 * 256;
    assert!(
        text.contains(&format!("user {user}: {used} bytes used")),
        "{text}"
    );
    assert!(text.contains("store is consistent"), "{text}");

    // While something holds the store open, check refuses with the likely reason.
    let held = pubky_edge::store::Store::open(
        &data,
        pubky_edge::store::StoreConfig {
            cache_capacity_bytes: 4 << 20,
            inline_max: 1024,
            durability: pubky_edge::store::Durability::Strict,
            default_quota_bytes: None,
        },
    )
    .unwrap();
    for command in ["check", "compact"] {
        let o = run(&["--data-dir", d, command]);
        assert!(!o.status.success(), "{command}");
        assert!(
            stderr(&o).contains("is in use by another process (is the server running?)"),
            "{command}: {}",
            stderr(&o)
        );
    }
    smol::block_on(held.close()).unwrap();
    drop(held);

    // The store's own compaction keeps every file, and the check still passes.
    let o = run(&["--data-dir", d, "compact"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("MiB after"), "{}", stdout(&o));
    assert!(!data.join("db.new").exists() && !data.join("db.old").exists());
    let o = run(&["--data-dir", d, "check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("files:       2"), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("user {user}: {used} bytes used")));

    // A blob file whose bytes changed on disk.
    let blob = walk_files(&data.join("blobs"))
        .pop()
        .expect("one blob file");
    std::fs::write(&blob, b"not the stored bytes").unwrap();
    let o = run(&["--data-dir", d, "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("content does not match its name"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("1 problem(s) found"), "{}", stderr(&o));
}

fn walk_files(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// `release keygen`, `sign` and `verify` as a release manager runs them: the signed manifest
/// of a binary verifies with the release key and matches that binary; another key, an
/// altered manifest, a truncated binary and a changed byte are each refused with the reason.
#[test]
fn release_sign_and_verify_refuse_what_was_not_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (key, other_key, bin, manifest) = (
        path("release.key"),
        path("other.key"),
        path("pubky-edge-next"),
        path("manifest.json"),
    );
    let o = run(&["release", "keygen", &key]);
    assert!(o.status.success(), "{}", stderr(&o));
    let public = stdout(&o).lines().last().unwrap().trim().to_string();
    assert_eq!(public.len(), 52, "{}", stdout(&o));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second keygen never overwrites a key.
    let o = run(&["release", "keygen", &key]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("exists already"), "{}", stderr(&o));

    // `release verify` of a manifest against a release key (and a binary).
    let verify = |key: &str, manifest: &str, binary: Option<&str>| {
        let mut args = vec!["release", "verify", "--release-key", key, manifest];
        args.extend(binary);
        run(&args)
    };
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&bin, &binary).unwrap();
    let sign = |extra: &[&str]| {
        let mut args = vec![
            "release",
            "sign",
            "--key",
            &key,
            "--binary",
            &bin,
            "--version",
            "0.2.0",
            "--target",
            "aarch64-unknown-linux-musl",
            "--min-from",
            "0.1.0",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let o = sign(&["--out", &manifest]);
    assert!(!o.status.success(), "signed without --store-format");
    assert!(stderr(&o).contains("--store-format"), "{}", stderr(&o));
    let o = sign(&["--store-format", "1", "--out", &manifest]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = verify(&public, &manifest, Some(&bin));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("signature:    ok"), "{out}");
    assert!(
        out.contains("version:      0.2.0 (upgrades from 0.1.0 on)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("binary:       {} bytes", binary.len())),
        "{out}"
    );
    assert!(out.contains("matches the manifest"), "{out}");

    // Signed by a key this box does not trust, made as a release manager would type it: a
    // bare file name in the current directory.
    let o = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .args(["release", "keygen", "other.key"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::path::Path::new(&other_key).exists());
    let other_public = stdout(&o).lines().last().unwrap().trim().to_string();
    let o = verify(&other_public, &manifest, None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not by the release key this box trusts"),
        "{}",
        stderr(&o)
    );
    // The manifest altered after signing (another version).
    let text = std::fs::read_to_string(&manifest).unwrap();
    let altered = path("altered.json");
    std::fs::write(&altered, text.replace("0.2.0", "0.9.0")).unwrap();
    let o = verify(&public, &altered, None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("altered or forged"), "{}", stderr(&o));
    // A truncated download, and one byte changed.
    let mut changed = binary.clone();
    changed[1000] ^= 1;
    for (bytes, why) in [
        (&binary[..binary.len() / 2], "truncated"),
        (&changed[..], "BLAKE3"),
    ] {
        std::fs::write(&bin, bytes).unwrap();
        let o = verify(&public, &manifest, Some(&bin));
        assert!(!o.status.success());
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
    }
}

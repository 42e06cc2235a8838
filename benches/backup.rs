//! Backup benchmark: how fast a box is backed up and restored, against what its disk can
//! write, and what an incremental backup costs after a small change.
//!
//! Fills a data directory through the store's own API with `--small` files of 1 KiB and
//! `--large` files of `--large-kib` KiB (random bytes, so nothing compresses), then runs the
//! release binary: `backup init`, `backup create` (the server stopped: the CLI takes the
//! snapshot itself), one small change (a new large file and ten small ones) and a second
//! `backup create`, `backup verify`, `backup restore` and `check`. It also times a plain
//! sequential write of the same size with an fsync at the end on the same filesystem.
//!
//! `cargo bench --bench backup -- [--small 20000] [--large 200] [--large-kib 1024]
//!  [--dir DIR] [--binary PATH]`

mod common;

use common::disk_bytes;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pubky_edge::pubkey::PublicKey;
use pubky_edge::storage_path::StoragePath;
use pubky_edge::store::Store;

struct Opts {
    small: usize,
    large: usize,
    large_kib: usize,
    dir: Option<PathBuf>,
    binary: PathBuf,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        small: 20_000,
        large: 200,
        large_kib: 1024,
        dir: None,
        binary: PathBuf::from(env!("CARGO_BIN_EXE_pubky-edge")),
    };
    for (a, v) in common::options() {
        match a.as_str() {
            "--small" => o.small = v.parse().expect("small"),
            "--large" => o.large = v.parse().expect("large"),
            "--large-kib" => o.large_kib = v.parse().expect("large-kib"),
            "--dir" => o.dir = Some(v.into()),
            "--binary" => o.binary = v.into(),
            _ => panic!("unknown option {a}"),
        }
    }
    o
}

fn random(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    getrandom::fill(&mut b).expect("random");
    b
}

/// Adds files through the store API; returns the payload bytes.
fn fill(data: &Path, small: usize, large: usize, large_len: usize, tag: &str) -> u64 {
    let cfg = common::fill_config();
    let user: PublicKey = ed25519_dalek::SigningKey::from_bytes(&[7; 32])
        .verifying_key()
        .into();
    let mut payload = 0u64;
    smol::block_on(async {
        let store = Store::open(data, cfg).expect("open store");
        if store.user(&user).expect("user").is_none() {
            store.create_user(&user, None, 0).await.expect("user");
        }
        let mut put = |path: String, body: Vec<u8>| {
            payload += body.len() as u64;
            let store = store.clone();
            async move {
                let mut up = store.upload();
                up.write(&body).await.expect("write");
                let staged = up.finish().await.expect("finish");
                let path = StoragePath::strict(&path).expect("path");
                store
                    .put(&user, &path, staged, "application/octet-stream", 1)
                    .await
                    .expect("put");
            }
        };
        for i in 0..small {
            put(format!("/pub/{tag}/small/{}/{i}", i / 1000), random(1024)).await;
        }
        for i in 0..large {
            put(format!("/pub/{tag}/large/{i}.jpg"), random(large_len)).await;
        }
        store.close().await.expect("close");
    });
    payload
}

/// Runs the binary; returns the seconds it took.
fn run(o: &Opts, data: &Path, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = Command::new(&o.binary)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("PUBKY_EDGE_BACKUP_PASSPHRASE", "benchmark passphrase")
        .env("PUBKY_EDGE_ADMIN_ADDR", "127.0.0.1:9") // nothing there: the store is opened here
        .env("PUBKY_EDGE_ADMIN_PASSWORD", "x")
        .output()
        .expect("run pubky-edge");
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64()
}

/// A sequential write of `bytes` in 1 MiB blocks, then fsync: the disk's own pace.
fn sequential_write(dir: &Path, bytes: u64) -> f64 {
    let path = dir.join("sequential.bin");
    let block = random(1 << 20);
    let started = Instant::now();
    let mut f = std::fs::File::create(&path).expect("create");
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).expect("write");
        left -= n as u64;
    }
    f.sync_all().expect("sync");
    let took = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).expect("remove");
    took
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() {
    let o = parse_opts();
    let tmp = tempfile::tempdir_in(o.dir.clone().unwrap_or_else(std::env::temp_dir)).expect("tmp");
    let data = tmp.path().join("data");
    let dest = tmp.path().join("backups");
    let restored = tmp.path().join("restored");
    std::fs::create_dir_all(&data).expect("data");
    pubky_edge::identity::Identity::load_or_create(&data).expect("identity");
    let payload = fill(&data, o.small, o.large, o.large_kib << 10, "a");
    let store_disk = disk_bytes(&data);
    println!(
        "store: {} small + {} large files, payload {:.1} MiB, {:.1} MiB on disk",
        o.small,
        o.large,
        mib(payload),
        mib(store_disk)
    );
    let d = dest.to_str().expect("utf-8");
    run(&o, &data, &["backup", "init"]);
    let first = run(&o, &data, &["backup", "create", d]);
    let full = disk_bytes(&dest);
    let change = fill(&data, 10, 1, o.large_kib << 10, "b");
    let second = run(&o, &data, &["backup", "create", d]);
    let incremental = disk_bytes(&dest) - full;
    let verify = run(&o, &data, &["backup", "verify", d]);
    let restore = run(
        &o,
        &data,
        &["backup", "restore", d, restored.to_str().expect("utf-8")],
    );
    let check = run(&o, &restored, &["check"]);
    let seq = sequential_write(tmp.path(), full);
    let total = payload + change;
    println!("| | seconds | MiB/s of payload |");
    println!("|---|---|---|");
    println!(
        "| full backup ({:.1} MiB written) | {first:.2} | {:.1} |",
        mib(full),
        mib(payload) / first
    );
    println!(
        "| incremental backup after {:.1} MiB of changes ({:.2} MiB written) | {second:.2} | |",
        mib(change),
        mib(incremental)
    );
    println!(
        "| verify (both points) | {verify:.2} | {:.1} |",
        mib(total) / verify
    );
    println!(
        "| restore (verify, then write) | {restore:.2} | {:.1} |",
        mib(total) / restore
    );
    println!("| check of the restored store | {check:.2} | |");
    println!(
        "| sequential write of {:.1} MiB + fsync, same filesystem | {seq:.2} | {:.1} |",
        mib(full),
        mib(full) / seq
    );
}

//! The nightly backup's disk handling, for real: a filesystem labelled like the household's
//! USB disk (an ext4 image on a loop device; this kernel has no FAT driver), mounted and
//! unmounted by `systemd/pubky-edge-backup-disk` around `backup create --scheduled`, and a
//! night without the disk recorded as a failed backup. Needs root (losetup, mount).

use crate::support as common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/pubky-edge-backup-disk"
);

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn disk(label: &str, mnt: &Path, action: &str) -> String {
    let out = run(Command::new("sh")
        .arg(SCRIPT)
        .arg(action)
        .env("PUBKY_EDGE_BACKUP_LABEL", label)
        .env("PUBKY_EDGE_BACKUP_MOUNT", mnt)
        .env("PUBKY_EDGE_BACKUP_USER", "root"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn edge(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("PUBKY_EDGE_BACKUP_PASSPHRASE", "correct horse battery")
        // nothing listens there: the server is stopped and the store is opened directly
        .env(
            "PUBKY_EDGE_ADMIN_ADDR",
            format!("127.0.0.1:{}", proc::free_port()),
        )
        .env("PUBKY_EDGE_ADMIN_PASSWORD", "x")
        .output()
        .unwrap()
}

/// A loop device detached on drop.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn the_nightly_backup_mounts_the_labelled_disk_and_records_a_missing_one() {
    let _suite = crate::suite("backup_disk");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n");
    if is_root.ok() != Some(true) || !installed("losetup", "--version") {
        eprintln!("backup_disk: skipped (needs root and losetup)");
        return;
    }
    let s = Server::start("");
    let u = new_user(&s);
    put_file(&s, &u, "/pub/photo.jpg", &vec![7u8; 100_000]);
    let data = s.data_dir.clone();
    let tmp = s.stop().unwrap();
    let label = format!("PKT{:06X}", std::process::id() & 0xFF_FFFF);
    let img = tmp.path().join("usb.img");
    let mnt = tmp.path().join("mnt");
    run(Command::new("truncate").args(["-s", "64M"]).arg(&img));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-L", &label])
        .arg(&img));
    let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&img));
    let dev = Loop(String::from_utf8_lossy(&dev.stdout).trim().to_string());
    let dest = mnt.join("pubky-edge");
    let dest = dest.to_str().unwrap();

    // not set up: nothing to do, nothing recorded
    let out = edge(&data, &["backup", "create", dest, "--scheduled"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not set up"));
    assert!(!data.join("backup/last.json").exists());
    assert!(edge(&data, &["backup", "init"]).status.success());

    for night in 1..=3 {
        let said = disk(&label, &mnt, "mount");
        assert!(
            said.contains(&format!("mounted {} (ext4)", dev.0)),
            "{said}"
        );
        let out = edge(
            &data,
            &["backup", "create", dest, "--keep", "2", "--scheduled"],
        );
        assert!(
            out.status.success(),
            "night {night}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(disk(&label, &mnt, "unmount").contains("can be unplugged"));
        assert!(
            !mnt.join("pubky-edge").exists(),
            "unmounted after the backup"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100)); // one point a second
    }
    disk(&label, &mnt, "mount");
    let list = edge(&data, &["backup", "list", dest]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).lines().count(),
        2,
        "kept 2"
    );
    let verify = edge(&data, &["backup", "verify", dest]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    disk(&label, &mnt, "unmount");
    let info = String::from_utf8_lossy(&edge(&data, &["info"]).stdout).into_owned();
    assert!(info.contains("backup:        last good"), "{info}");
    assert!(!info.contains("backup problem"), "{info}");

    // the disk is not plugged in: a failed backup, said where the household looks
    drop(dev);
    assert!(disk(&label, &mnt, "mount").contains("no disk labelled"));
    let out = edge(
        &data,
        &["backup", "create", dest, "--keep", "2", "--scheduled"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plug in the backup disk"), "{err}");
    let info = String::from_utf8_lossy(&edge(&data, &["info"]).stdout).into_owned();
    assert!(
        info.contains("backup problem: the last backup failed"),
        "{info}"
    );
    assert!(
        info.contains("backup:        last good"),
        "the last success is kept: {info}"
    );
}

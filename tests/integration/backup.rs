//! `pubky-edge backup …` (the real binary) against a server that keeps accepting writes:
//! the point is one moment (each writer's acknowledged files up to some point, nothing
//! half), incremental backups copy only new large files, a restore serves the same data
//! under the same key and passes `check`; damage is named by `verify` and refused by
//! `restore`; the standard `age` tool reads a backup.

use crate::support as common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;

const PASS: &str = "correct horse battery";

fn cli(data: &Path, admin: Option<&Server>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pubky-edge"));
    c.arg("--data-dir")
        .arg(data)
        .args(args)
        .env("PUBKY_EDGE_BACKUP_PASSPHRASE", PASS)
        .env("PUBKY_EDGE_ADMIN_PASSWORD", "test-admin");
    match admin {
        Some(s) => c.env("PUBKY_EDGE_ADMIN_ADDR", s.admin_addr.unwrap().to_string()),
        // nothing listens there: the CLI finds the server stopped and opens the store
        None => c.env(
            "PUBKY_EDGE_ADMIN_ADDR",
            format!("127.0.0.1:{}", common::proc::free_port()),
        ),
    };
    c.output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed(o: Output) -> String {
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A body that says where it belongs; `large` ones are blob files (over inline_max).
fn body(tag: &str, large: bool) -> Vec<u8> {
    let mut b = tag.as_bytes().to_vec();
    if large {
        b.resize(40_000, b'.');
        b.extend_from_slice(tag.as_bytes());
    }
    b
}

fn get(s: &Server, u: &User, path: &str) -> Option<Vec<u8>> {
    let r = s
        .req("GET", &s.storage_url(&u.pk, path))
        .bearer(&u.token)
        .send();
    match r.status {
        200 => Some(r.body),
        404 => None,
        other => panic!("GET {path}: {other}"),
    }
}

fn points(dest: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dest.join("points"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
        .collect();
    v.sort();
    v
}

fn blob_files(dest: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(dest.join("blobs")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn a_backup_under_write_load_restores_one_consistent_moment() {
    let s = Server::start("");
    let (alice, bob) = (new_user(&s), new_user(&s));
    let before: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let path = format!("/pub/before/{i}");
            (path.clone(), body(&path, i % 3 == 0))
        })
        .collect();
    for (p, b) in &before {
        put_file(&s, &alice, p, b);
    }
    put_file(&s, &bob, "/priv/diary", b"private words");
    // a large file deleted while the backup runs: its blob must stay for the point
    put_file(&s, &bob, "/pub/doomed", &body("doomed", true));

    let dest = s.data_dir.parent().unwrap().join("usb/pubky-edge");
    let out = failed(cli(
        &s.data_dir,
        Some(&s),
        &["backup", "create", dest.to_str().unwrap()],
    ));
    assert!(out.contains("backup init"), "{out}");
    ok(cli(&s.data_dir, Some(&s), &["backup", "init"]));

    // writers keep going while the backup is made; each records what was acknowledged
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::new(s);
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (s, stop, u) = (s.clone(), stop.clone(), alice.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) || i < 5 {
                    let path = format!("/pub/during/{w}/{i:05}");
                    put_file(&s, &u, &path, &body(&path, i % 4 == 0));
                    acked.push(path);
                    i += 1;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let deleter = {
        let (s, b) = (s.clone(), bob.clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            let r = s
                .req("DELETE", &s.storage_url(&b.pk, "/pub/doomed"))
                .bearer(&b.token)
                .send();
            assert_eq!(r.status, 204);
        })
    };
    let made = ok(cli(
        &s.data_dir,
        Some(&s),
        &["backup", "create", dest.to_str().unwrap()],
    ));
    stop.store(true, Ordering::Relaxed);
    deleter.join().unwrap();
    let acked: Vec<Vec<String>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(made.contains("point "), "{made}");
    assert_eq!(points(&dest).len(), 1);
    let status = ok(cli(&s.data_dir, None, &["info"]));
    assert!(status.contains("backup:        last good"), "{status}");
    let metrics = s.metrics();
    assert!(
        metrics.contains("pubky_edge_backup_last_success_timestamp_seconds"),
        "{metrics}"
    );

    // a backup after a small change copies only the new large file (the one before it
    // catches up with what the writers added after the first snapshot)
    ok(cli(
        &s.data_dir,
        Some(&s),
        &["backup", "create", dest.to_str().unwrap()],
    ));
    let first_blobs = blob_files(&dest).len();
    put_file(&s, &bob, "/pub/new-photo", &body("new-photo", true));
    let again = ok(cli(
        &s.data_dir,
        Some(&s),
        &["backup", "create", dest.to_str().unwrap()],
    ));
    assert!(again.contains("(1 new, 40009 bytes)"), "{again}");
    assert_eq!(blob_files(&dest).len(), first_blobs + 1);
    let list = ok(cli(
        &s.data_dir,
        None,
        &["backup", "list", dest.to_str().unwrap()],
    ));
    assert_eq!(list.lines().count(), 3, "{list}");

    // restore the first point into a new data directory and serve it
    let first = points(&dest)[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let target = s.data_dir.parent().unwrap().join("restored");
    let restored = ok(cli(
        &s.data_dir,
        None,
        &[
            "backup",
            "restore",
            dest.to_str().unwrap(),
            target.to_str().unwrap(),
            "--point",
            &first,
        ],
    ));
    assert!(restored.contains(&s.pk.to_string()), "{restored}");
    ok(cli(&target, None, &["check"]));
    let r = Server::start_in(&target, "");
    assert_eq!(r.pk, s.pk, "same identity");
    for (p, b) in &before {
        assert_eq!(get(&r, &alice, p).as_deref(), Some(&b[..]), "{p}");
    }
    assert_eq!(
        get(&r, &bob, "/priv/diary").as_deref(),
        Some(&b"private words"[..])
    );
    let doomed = get(&r, &bob, "/pub/doomed");
    assert!(doomed.is_none() || doomed == Some(body("doomed", true)));
    assert!(
        get(&r, &bob, "/pub/new-photo").is_none(),
        "not in the first point"
    );
    // one moment: for each writer, the files present are a prefix of what it wrote
    let mut during = 0;
    for paths in &acked {
        let present: Vec<bool> = paths.iter().map(|p| get(&r, &alice, p).is_some()).collect();
        let n = present.iter().take_while(|x| **x).count();
        assert!(present[n..].iter().all(|x| !x), "a gap in {:?}", &paths[..]);
        for p in &paths[..n] {
            let i: u32 = p[p.len() - 5..].parse().unwrap();
            assert_eq!(get(&r, &alice, p), Some(body(p, i % 4 == 0)));
        }
        during += n;
    }
    eprintln!("the point holds {during} of the writes made during the backup");
    drop(r);

    // prune keeps the newest point and drops blobs only the old one needed
    let pruned = ok(cli(
        &s.data_dir,
        None,
        &["backup", "prune", dest.to_str().unwrap(), "--keep", "1"],
    ));
    assert!(pruned.contains("pruned 2 point(s)"), "{pruned}");
    assert_eq!(points(&dest).len(), 1);
    let verified = ok(cli(
        &s.data_dir,
        None,
        &["backup", "verify", dest.to_str().unwrap()],
    ));
    assert!(verified.contains("backup set is intact"), "{verified}");
}

/// A stopped server's store, backed up offline: three files, one of them large.
fn stopped_server_with_a_backup() -> (tempfile::TempDir, PathBuf, PathBuf, User) {
    let s = Server::start("");
    let u = new_user(&s);
    put_file(&s, &u, "/pub/photo.jpg", &body("photo", true));
    put_file(&s, &u, "/pub/note", b"small");
    put_file(&s, &u, "/priv/secret-note", b"only mine");
    let data = s.data_dir.clone();
    let tmp = s.stop().unwrap();
    ok(cli(&data, None, &["backup", "init"]));
    let dest = tmp.path().join("backups");
    let made = ok(cli(
        &data,
        None,
        &["backup", "create", dest.to_str().unwrap()],
    ));
    assert!(made.contains("1 large files (1 new"), "{made}");
    (tmp, data, dest, u)
}

#[test]
fn damage_is_named_by_verify_and_refused_by_restore() {
    let (tmp, data, dest, u) = stopped_server_with_a_backup();
    let d = dest.to_str().unwrap();
    let target = tmp.path().join("restored");
    let t = target.to_str().unwrap();

    let out = failed(cli(
        &data,
        None,
        &["backup", "verify", d, "--passphrase-file", "/dev/null"],
    ));
    assert!(out.contains("wrong backup passphrase"), "{out}");

    // one flipped byte in the large file's blob
    let blob = blob_files(&dest).pop().unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    std::fs::write(&blob, &bytes).unwrap();
    let out = failed(cli(&data, None, &["backup", "verify", d]));
    let rel = blob
        .strip_prefix(&dest)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        out.contains(&format!("damaged:  blob file {rel} is damaged")),
        "{out}"
    );
    assert!(
        out.contains(&format!("needed by {}/pub/photo.jpg", u.pk)),
        "{out}"
    );
    let out = failed(cli(&data, None, &["backup", "restore", d, t]));
    assert!(
        out.contains("the backup is damaged; nothing was restored"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "nothing written"
    );

    // missing, then put back: the set verifies and restores again
    bytes[at] ^= 0x40;
    std::fs::remove_file(&blob).unwrap();
    let out = failed(cli(&data, None, &["backup", "verify", d]));
    assert!(out.contains("is missing"), "{out}");
    std::fs::write(&blob, &bytes).unwrap();
    ok(cli(&data, None, &["backup", "verify", d]));

    // a damaged point
    let point = points(&dest).pop().unwrap();
    let saved = std::fs::read(&point).unwrap();
    let mut p = saved.clone();
    let mid = p.len() / 2;
    p[mid] ^= 1;
    std::fs::write(&point, &p).unwrap();
    let out = failed(cli(&data, None, &["backup", "verify", d]));
    assert!(out.contains("damaged:  point "), "{out}");
    failed(cli(&data, None, &["backup", "restore", d, t]));
    std::fs::write(&point, &saved).unwrap();

    // an occupied target needs --force, which moves what is there aside
    std::fs::write(target.join("keep-me"), b"x").unwrap();
    let out = failed(cli(&data, None, &["backup", "restore", d, t]));
    assert!(out.contains("is not empty"), "{out}");
    let out = ok(cli(&data, None, &["backup", "restore", d, t, "--force"]));
    assert!(out.contains("is now in"), "{out}");
    let aside: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("replaced-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(target.join(&aside[0]).join("keep-me").exists());
    ok(cli(&target, None, &["check"]));
    let r = Server::start_in(&target, "");
    assert_eq!(
        get(&r, &u, "/priv/secret-note").as_deref(),
        Some(&b"only mine"[..])
    );
    assert_eq!(get(&r, &u, "/pub/photo.jpg"), Some(body("photo", true)));
}

#[test]
fn an_unfinished_restore_stops_the_server_from_starting() {
    let (tmp, data, dest, _) = stopped_server_with_a_backup();
    let target = tmp.path().join("half");
    ok(cli(
        &data,
        None,
        &[
            "backup",
            "restore",
            dest.to_str().unwrap(),
            target.to_str().unwrap(),
        ],
    ));
    std::fs::write(target.join("RESTORING"), b"x").unwrap();
    // loopback only, no DHT: if the check were missing, the server would start and be killed
    let config = tmp.path().join("test.toml");
    std::fs::write(&config, OPEN).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&target)
        .arg("run")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("a restore into"),
        "{err}"
    );
}

#[test]
fn the_age_tool_reads_a_backup() {
    if !installed("age", "--version") || !installed("script", "--version") {
        return;
    }
    let (tmp, data, dest, _) = stopped_server_with_a_backup();
    let point = points(&dest).pop().unwrap();
    let tar = tmp.path().join("point.tar");
    // age asks for the key file's passphrase on the terminal: `script` gives it one
    let cmd = format!(
        "age -d -i {} -o {} {}",
        dest.join("key.age").display(),
        tar.display(),
        point.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    use std::io::Write;
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(format!("{PASS}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let listing = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for part in ["manifest.json", "secret", "store.dump"] {
        assert!(listing.contains(part), "{listing}");
    }
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read(unpacked.join("secret")).unwrap(),
        std::fs::read(data.join("secret")).unwrap()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "pubky-edge-backup/1");
    assert_eq!(manifest["blobs"].as_array().unwrap().len(), 1);
}

#[test]
fn one_user_is_exported_as_plain_files_while_the_server_runs() {
    let s = Server::start("");
    let (u, other) = (new_user(&s), new_user(&s));
    let photo = body("photo", true);
    put_file(&s, &u, "/pub/photos/2026/beach.jpg", &photo);
    put_file(&s, &u, "/pub/profile.json", br#"{"name":"Ana"}"#);
    put_file(&s, &u, "/priv/notes/todo.txt", b"call grandma");
    put_file(&s, &other, "/pub/not-hers", b"x");
    let dir = s.data_dir.parent().unwrap().join("export");
    let out = ok(cli(
        &s.data_dir,
        Some(&s),
        &["export", "--user", &u.pk.to_string(), dir.to_str().unwrap()],
    ));
    assert!(out.contains("exported 3 files"), "{out}");
    assert_eq!(
        std::fs::read(dir.join("files/pub/photos/2026/beach.jpg")).unwrap(),
        photo
    );
    assert_eq!(
        std::fs::read(dir.join("files/priv/notes/todo.txt")).unwrap(),
        b"call grandma"
    );
    assert!(!dir.join("files/pub/not-hers").exists());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["format"], "pubky-edge-export/1");
    assert_eq!(m["user"], u.pk.to_string());
    assert_eq!(m["homeserver"], s.pk.to_string());
    let files = m["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/priv/notes/todo.txt",
            "/pub/photos/2026/beach.jpg",
            "/pub/profile.json"
        ]
    );
    let profile = &files[2];
    assert_eq!(profile["content_type"], "application/json");
    assert_eq!(profile["size"], 14);
    assert_eq!(
        profile["blake3"],
        blake3::hash(br#"{"name":"Ana"}"#).to_hex().as_str()
    );
    // the file's time is the entry's modification time (the server's Last-Modified)
    let head = s
        .req("HEAD", &s.storage_url(&u.pk, "/pub/profile.json"))
        .send();
    let stored = httpdate::parse_http_date(head.header("last-modified").unwrap()).unwrap();
    let local = std::fs::metadata(dir.join("files/pub/profile.json"))
        .unwrap()
        .modified()
        .unwrap();
    let drift = local
        .duration_since(stored)
        .unwrap_or_else(|e| e.duration());
    assert!(drift < std::time::Duration::from_secs(1), "{drift:?}");

    let again = failed(cli(
        &s.data_dir,
        Some(&s),
        &["export", "--user", &u.pk.to_string(), dir.to_str().unwrap()],
    ));
    assert!(again.contains("is not empty"), "{again}");
    let stranger = pk_of(&random_key()).to_string();
    let nobody = s.data_dir.parent().unwrap().join("nobody");
    let out = failed(cli(
        &s.data_dir,
        Some(&s),
        &["export", "--user", &stranger, nobody.to_str().unwrap()],
    ));
    assert!(out.contains("has no account on this homeserver"), "{out}");
}

#[test]
fn a_whole_homeserver_moves_in_through_its_admin_webdav() {
    let src = Server::start("");
    let (a, b) = (new_user(&src), new_user(&src));
    let photo = body("photo", true);
    let files: Vec<(&User, &str, Vec<u8>)> = vec![
        (&a, "/pub/photos/beach.jpg", photo.clone()),
        (
            &a,
            "/pub/notes/a%20b%26c.txt",
            b"spaces and an ampersand".to_vec(),
        ),
        (&a, "/pub/profile.json", br#"{"name":"Ana"}"#.to_vec()),
        (&b, "/pub/blog/2026/first-post.md", b"# hello".to_vec()),
    ];
    for (u, p, bytes) in &files {
        put_file(&src, u, p, bytes);
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("box");
    let url = format!("http://{}/dav/", src.admin_addr.unwrap());
    let import = |pw: &str| {
        cli(
            &target,
            None,
            &["import", "--from-webdav", &url, "--admin-password", pw],
        )
    };
    let out = failed(import("test-admin"));
    assert!(
        out.contains("copy the reference homeserver's `secret`"),
        "{out}"
    );
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(src.data_dir.join("secret"), target.join("secret")).unwrap();
    let out = failed(import("wrong"));
    assert!(out.contains("refused the admin password"), "{out}");

    let out = ok(import("test-admin"));
    assert!(out.contains("2 users (2 new), 4 files copied"), "{out}");
    // run again (as after an interruption): nothing is copied twice
    let out = ok(import("test-admin"));
    assert!(
        out.contains("0 files copied (0 bytes), 4 already here"),
        "{out}"
    );
    ok(cli(&target, None, &["check"]));

    let dst = Server::start_in(&target, "");
    assert_eq!(dst.pk, src.pk, "the same homeserver identity");
    for (u, p, bytes) in &files {
        let theirs = src.req("GET", &src.storage_url(&u.pk, p)).send();
        let ours = dst.req("GET", &dst.storage_url(&u.pk, p)).send();
        assert_eq!(ours.status, 200, "{p}");
        assert_eq!(&ours.body, bytes, "{p}");
        assert_eq!(
            ours.header("content-type"),
            theirs.header("content-type"),
            "{p}"
        );
    }
}

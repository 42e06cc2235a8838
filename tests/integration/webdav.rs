//! The admin's WebDAV at `/dav/` with real clients: rclone (listing, upload, server-side
//! move, recursive copy and check, purge) and cadaver (lock, put, unlock, move as a user at a
//! terminal does), plus the protocol's edges by hand: Basic auth, PROPFIND depths, MKCOL,
//! Overwrite, quotas and events. The client parts are skipped with a note when the clients
//! are not installed; `.ci/run` installs them and sets `PUBKY_EDGE_REQUIRE_PEERS=1`,
//! which makes their absence a failure.

use crate::support as common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{new_user, put_file, Resp, Server, User};

/// `Authorization` for `admin:test-admin`.
const BASIC: &str = "Basic YWRtaW46dGVzdC1hZG1pbg==";

fn dav(s: &Server, method: &str, path: &str) -> common::Req {
    s.admin_raw(method, path).header("authorization", BASIC)
}

/// Runs rclone against the server's `/dav/` with its own empty config.
fn rclone(s: &Server, home: &Path, args: &[&str]) -> Output {
    let remote = format!(
        ":webdav,url='http://{}/dav/',user=admin,pass='{}':",
        s.admin_addr.unwrap(),
        obscured("test-admin")
    );
    let args: Vec<String> = args.iter().map(|a| a.replace("R:", &remote)).collect();
    Command::new("rclone")
        .args(&args)
        .args(["--config", home.join("rclone.conf").to_str().unwrap()])
        .args(["--retries", "1", "--low-level-retries", "1"])
        .env("HOME", home)
        .output()
        .unwrap()
}

fn obscured(pw: &str) -> String {
    let o = Command::new("rclone")
        .args(["obscure", pw])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn read(s: &Server, u: &User, path: &str) -> Resp {
    s.req("GET", &s.storage_url(&u.pk, path))
        .bearer(&u.token)
        .send()
}

#[test]
fn rclone_lists_uploads_moves_copies_and_purges() {
    if !common::installed("rclone", "--version") {
        return;
    }
    let s = Server::start("");
    let u = new_user(&s);
    let pk = u.pk.to_string();
    put_file(&s, &u, "/pub/hello.txt", b"hello");
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    let users = ok(&rclone(&s, h, &["lsf", "R:"]));
    assert!(users.lines().any(|l| l == format!("{pk}/")), "{users}");
    let roots = ok(&rclone(&s, h, &["lsf", &format!("R:{pk}")]));
    assert_eq!(
        roots.lines().collect::<Vec<_>>(),
        ["priv/", "pub/"],
        "{roots}"
    );
    assert_eq!(
        ok(&rclone(&s, h, &["cat", &format!("R:{pk}/pub/hello.txt")])),
        "hello"
    );

    // Upload a file and a tree; the store has them with their bytes.
    let local = h.join("local");
    std::fs::create_dir_all(local.join("tree/sub")).unwrap();
    std::fs::write(local.join("note.md"), "# note\n").unwrap();
    std::fs::write(local.join("tree/a.txt"), "a".repeat(40_000)).unwrap();
    std::fs::write(local.join("tree/sub/b b.txt"), "b").unwrap();
    let note = local.join("note.md");
    ok(&rclone(
        &s,
        h,
        &[
            "copyto",
            note.to_str().unwrap(),
            &format!("R:{pk}/pub/docs/note.md"),
        ],
    ));
    assert_eq!(read(&s, &u, "/pub/docs/note.md").text(), "# note\n");
    let tree = local.join("tree");
    ok(&rclone(
        &s,
        h,
        &[
            "copy",
            tree.to_str().unwrap(),
            &format!("R:{pk}/priv/backup"),
        ],
    ));
    assert_eq!(
        read(&s, &u, "/priv/backup/a.txt").text(),
        "a".repeat(40_000)
    );
    assert_eq!(read(&s, &u, "/priv/backup/sub/b%20b.txt").text(), "b");
    ok(&rclone(
        &s,
        h,
        &[
            "check",
            "--size-only",
            tree.to_str().unwrap(),
            &format!("R:{pk}/priv/backup"),
        ],
    ));

    // An empty folder, then a server-side move of a file.
    ok(&rclone(&s, h, &["mkdir", &format!("R:{pk}/pub/empty")]));
    let pubs = ok(&rclone(&s, h, &["lsf", &format!("R:{pk}/pub")]));
    assert!(pubs.lines().any(|l| l == "empty/"), "{pubs}");
    ok(&rclone(
        &s,
        h,
        &[
            "moveto",
            &format!("R:{pk}/pub/docs/note.md"),
            &format!("R:{pk}/pub/docs/moved.md"),
        ],
    ));
    assert_eq!(read(&s, &u, "/pub/docs/note.md").status, 404);
    assert_eq!(read(&s, &u, "/pub/docs/moved.md").text(), "# note\n");

    // Purge a folder; the events say what happened, in order.
    ok(&rclone(&s, h, &["purge", &format!("R:{pk}/priv/backup")]));
    assert_eq!(read(&s, &u, "/priv/backup/a.txt").status, 404);
    let feed = s.req("GET", "/events/").send().text();
    let put = feed
        .find(&format!("PUT pubky://{pk}/pub/docs/moved.md"))
        .expect("moved PUT");
    let del = feed
        .find(&format!("DEL pubky://{pk}/pub/docs/note.md"))
        .expect("old DEL");
    assert!(put < del, "a move lands before its source goes:\n{feed}");

    // A wrong password gets nothing.
    let bad = format!(
        ":webdav,url='http://{}/dav/',user=admin,pass='{}':",
        s.admin_addr.unwrap(),
        obscured("wrong")
    );
    let o = Command::new("rclone")
        .args([
            "lsf",
            &bad,
            "--config",
            h.join("rclone.conf").to_str().unwrap(),
        ])
        .args(["--retries", "1", "--low-level-retries", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn cadaver_locks_puts_and_moves() {
    if !common::installed("cadaver", "--version") {
        return;
    }
    let s = Server::start("");
    let u = new_user(&s);
    let pk = u.pk.to_string();
    put_file(&s, &u, "/pub/site/index.html", b"<p>old</p>");
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let addr = s.admin_addr.unwrap();
    std::fs::write(
        h.join(".netrc"),
        format!("machine {} login admin password test-admin\n", addr.ip()),
    )
    .unwrap();
    std::fs::write(h.join("new.html"), "<p>new</p>").unwrap();
    let script = "ls\nlock index.html\nput new.html index.html\nunlock index.html\n\
                  move index.html home.html\nls\nquit\n";
    let mut child = Command::new("cadaver")
        .arg(format!("http://{addr}/dav/{pk}/pub/site/"))
        .current_dir(h)
        .env("HOME", h)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("index.html"), "{out}");
    assert!(out.contains("Locking `index.html': succeeded"), "{out}");
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(
        read(&s, &u, "/pub/site/home.html").text(),
        "<p>new</p>",
        "{out}"
    );
    assert_eq!(read(&s, &u, "/pub/site/index.html").status, 404, "{out}");
}

#[test]
fn the_protocol_by_hand() {
    let s = Server::start("[storage]\ndefault_quota_mb = 1\n");
    let u = new_user(&s);
    let pk = u.pk.to_string();
    put_file(&s, &u, "/pub/a/x.txt", b"x");

    // Basic auth, and nothing for a browser's other origins.
    let r = s.admin_raw("PROPFIND", "/dav/").header("depth", "0").send();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"pubky-edge\"")
    );
    let r = s
        .admin_raw("PROPFIND", "/dav/")
        .header("authorization", "Basic YWRtaW46bm9wZQ==")
        .send();
    assert_eq!(r.status, 401);
    let r = dav(&s, "OPTIONS", "/dav/").send();
    assert_eq!((r.status, r.header("dav")), (200, Some("1, 2")));
    assert_eq!(
        dav(&s, "OPTIONS", "/dav/")
            .header("origin", "http://x")
            .send()
            .status,
        403
    );

    // PROPFIND: depth 0 is the node, 1 adds its children, infinity is refused.
    let folder = format!("/dav/{pk}/pub/a/");
    let r = dav(&s, "PROPFIND", &folder).header("depth", "0").send();
    assert_eq!(r.status, 207, "{}", r.text());
    assert_eq!(r.text().matches("<D:response>").count(), 1);
    let r = dav(&s, "PROPFIND", &folder).header("depth", "1").send();
    let t = r.text();
    assert_eq!(t.matches("<D:response>").count(), 2, "{t}");
    assert!(
        t.contains(&format!("<D:href>/dav/{pk}/pub/a/x.txt</D:href>")),
        "{t}"
    );
    assert!(
        t.contains("<D:getcontentlength>1</D:getcontentlength>"),
        "{t}"
    );
    assert_eq!(
        dav(&s, "PROPFIND", &folder)
            .header("depth", "infinity")
            .send()
            .status,
        403
    );
    let missing = format!("/dav/{pk}/pub/nope/");
    assert_eq!(
        dav(&s, "PROPFIND", &missing)
            .header("depth", "0")
            .send()
            .status,
        404
    );

    // PUT creates (201) then replaces (204); a PUT over the quota is refused.
    let f = format!("/dav/{pk}/pub/a/y.txt");
    assert_eq!(dav(&s, "PUT", &f).body("1").send().status, 201);
    assert_eq!(dav(&s, "PUT", &f).body("22").send().status, 204);
    assert_eq!(read(&s, &u, "/pub/a/y.txt").text(), "22");
    let big = vec![7u8; 2 << 20];
    assert_eq!(
        dav(&s, "PUT", &format!("/dav/{pk}/priv/big"))
            .body(big)
            .send()
            .status,
        507
    );
    assert_eq!(
        dav(&s, "PUT", &format!("/dav/{pk}/etc/x"))
            .body("1")
            .send()
            .status,
        404
    );

    // MKCOL: a new folder once, then 405; a file in the way is a conflict.
    let col = format!("/dav/{pk}/pub/new/");
    assert_eq!(dav(&s, "MKCOL", &col).send().status, 201);
    assert_eq!(dav(&s, "MKCOL", &col).send().status, 405);
    assert_eq!(
        dav(&s, "PROPFIND", &col).header("depth", "0").send().status,
        207
    );
    let under_file = format!("/dav/{pk}/pub/a/x.txt/sub/");
    assert_eq!(dav(&s, "MKCOL", &under_file).send().status, 409);

    // COPY and MOVE with Overwrite.
    let dest = |p: &str| format!("http://{}/dav/{pk}{p}", s.admin_addr.unwrap());
    let r = dav(&s, "COPY", &f)
        .header("destination", &dest("/pub/a/x.txt"))
        .header("overwrite", "F")
        .send();
    assert_eq!(r.status, 412);
    // A body past the inline size lives in a blob file: copying streams it.
    let blob: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let big_file = format!("/dav/{pk}/pub/a/blob.bin");
    assert_eq!(
        dav(&s, "PUT", &big_file).body(blob.clone()).send().status,
        201
    );
    let r = dav(&s, "COPY", &folder)
        .header("destination", &dest("/priv/copy/"))
        .send();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(read(&s, &u, "/priv/copy/blob.bin").body, blob);
    assert_eq!(read(&s, &u, "/priv/copy/y.txt").text(), "22");
    let r = dav(&s, "MOVE", &folder)
        .header("destination", &dest("/pub/b/"))
        .send();
    assert_eq!(r.status, 201);
    assert_eq!(read(&s, &u, "/pub/a/x.txt").status, 404);
    assert_eq!(read(&s, &u, "/pub/b/x.txt").text(), "x");

    // DELETE of a folder removes what is under it.
    assert_eq!(
        dav(&s, "DELETE", &format!("/dav/{pk}/priv/copy/"))
            .send()
            .status,
        204
    );
    assert_eq!(read(&s, &u, "/priv/copy/y.txt").status, 404);
    assert_eq!(
        dav(&s, "DELETE", &format!("/dav/{pk}/pub/")).send().status,
        403
    );
    let moved_blob = format!("/dav/{pk}/pub/b/blob.bin");
    assert_eq!(dav(&s, "DELETE", &moved_blob).send().status, 204);
    let r = s.admin("GET", &format!("/users/{pk}")).send();
    let used: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert!(used["used_bytes"].as_u64().unwrap() < 2000, "{used}");
}

//! What the real binary gives away: its log keeps private paths and signup tokens out and
//! logs users' 507s below ERROR, a 500's body carries no internal text, and the data
//! directory is made private even when it already existed.

use std::os::unix::fs::PermissionsExt;

use crate::support::proc::{self, bearer, request, Node};

#[test]
fn logs_and_error_bodies_keep_private_things_in() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::new(tmp.path(), &data, "[storage]\ndefault_quota_mb = 1\n");
    node.start_with(|mut c| {
        c.env("RUST_LOG", "info");
        c
    });
    let key = proc::random_key();
    let token = node.signup(&key);
    let user = format!("/storage/{}", crate::support::pk_of(&key).to_z32());
    let auth = bearer(&token);
    let put = |path: &str, body: &[u8]| {
        request(node.addr, "PUT", &format!("{user}{path}"), &auth, body).unwrap()
    };
    assert_eq!(put("/priv/diary-of-alpha.txt", b"dear diary").status, 201);
    let r = request(node.addr, "GET", "/signup_tokens/ABCD-EFGH-JKMN", "", b"").unwrap();
    assert_eq!(r.status, 400);
    // A user's own quota: a 507, the answer to the request, not a server fault.
    assert_eq!(put("/pub/too-big.bin", &vec![1u8; 2 << 20]).status, 507);
    // A blob whose file vanished: the server's fault, a 500 without internals.
    assert_eq!(put("/pub/blob.bin", &vec![2u8; 64 << 10]).status, 201);
    for name in proc::blob_files(&data) {
        std::fs::remove_file(data.join("blobs").join(&name[..2]).join(&name)).unwrap();
    }
    let url = format!("{user}/pub/blob.bin");
    let r = request(node.addr, "GET", &url, "", b"").unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "Internal server error")
    );
    node.stop();

    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("/priv/…"), "{log}");
    assert!(!log.contains("diary-of-alpha"), "{log}");
    assert!(!log.contains("ABCD-EFGH-JKMN"), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "only the 500 is an error: {errors:?}");
    assert!(errors[0].contains("status=500"), "{errors:?}");
}

#[test]
fn an_existing_data_directory_is_made_private() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .args(["--data-dir", data.to_str().unwrap(), "info"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

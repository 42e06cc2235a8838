//! A data directory written by an earlier release opens with this build, as it is.
//!
//! Each `tests/fixtures/data-<version>.tar.gz` is a whole data directory that release
//! wrote through its HTTP and admin APIs, and `data-<version>.json` is what it held then.
//! It holds accounts, public and private files, inline and blob-sized bodies (one
//! deduplicated across two accounts), overwrites and deletes, a disabled account, a quota
//! override, an unused signup token and a session per account. This build must then read
//! every file back byte for byte, serve the same event feed, keep each account's settings
//! and usage, let the accounts sign in (the disabled one refused), and keep the token and
//! the sessions. A bearer session lives an hour, so the sessions are checked in the store
//! as of when they were made. `pubky-edge check` must find the store consistent after that
//! first start, which is where a migration would have run.
//!
//! At each release, add its fixture (kept beside the older ones, which must keep passing):
//!
//! ```sh
//! PUBKY_EDGE_FIXTURE_OUT=tests/fixtures cargo test --test integration -- \
//!     upgrade::make_fixture --ignored
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use pubky_edge::store::{Durability, Store, StoreConfig};

use crate::support::proc::hex;
use crate::support::{pk_of, put_file, signin, signup_and_signin, GrantSpec, Server, User};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// What a fixture's data directory held when its release stopped.
#[derive(Serialize, Deserialize)]
struct Expected {
    version: String,
    users: Vec<ExpectedUser>,
    /// The public event feed (`GET /events/?limit=1000`), line for line.
    events: String,
    /// A signup token nobody used.
    unused_token: String,
    /// When the sessions were made (seconds since the epoch): they are checked as of then,
    /// since a bearer session lives an hour and a fixture is older than that.
    sessions_made_at: u64,
}

#[derive(Serialize, Deserialize)]
struct ExpectedUser {
    /// The account's secret key (hex): fixtures are test data.
    seed: String,
    /// Path → BLAKE3 of the body.
    files: BTreeMap<String, String>,
    /// Paths that were written and then deleted.
    deleted: Vec<String>,
    /// A root session made then, whose record must come through whole.
    session: String,
    /// The admin API's `GET /users/<pk>` then (compared field by field, so that a later
    /// release may add fields).
    admin: serde_json::Value,
}

fn key_of(seed: &str) -> SigningKey {
    let b: Vec<u8> = (0..seed.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&seed[i..i + 2], 16).unwrap())
        .collect();
    SigningKey::from_bytes(&b.try_into().unwrap())
}

/// A body of `n` bytes that depends on `tag`.
fn body(tag: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut h = blake3::Hasher::new();
    h.update(tag.as_bytes());
    let mut r = h.finalize_xof();
    out.resize(n, 0);
    r.fill(&mut out);
    out
}

/// The account of `key`, with the session `token`.
fn user(key: &SigningKey, token: &str) -> User {
    User {
        key: key.clone(),
        pk: pk_of(key),
        token: token.into(),
    }
}

fn get(s: &Server, token: &str, user: &SigningKey, path: &str) -> (u16, Vec<u8>) {
    let r = s
        .req("GET", &s.storage_url(&pk_of(user), path))
        .bearer(token)
        .send();
    (r.status, r.body)
}

/// A GET through the admin's WebDAV, with the test config's admin password.
fn dav_get(s: &Server, path: &str) -> (u16, Vec<u8>) {
    let r = s
        .admin_raw("GET", path)
        .header("authorization", "Basic YWRtaW46dGVzdC1hZG1pbg==") // admin:test-admin
        .send();
    (r.status, r.body)
}

fn events(s: &Server) -> String {
    let r = s.req("GET", "/events/?limit=1000").send();
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn admin_user(s: &Server, user: &SigningKey) -> serde_json::Value {
    let r = s.admin("GET", &format!("/users/{}", pk_of(user))).send();
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

/// Writes a fixture of this release's data directory into `PUBKY_EDGE_FIXTURE_OUT`.
#[test]
#[ignore = "run by hand at a release, see the module's doc"]
fn make_fixture() {
    let out =
        PathBuf::from(std::env::var("PUBKY_EDGE_FIXTURE_OUT").expect("PUBKY_EDGE_FIXTURE_OUT"));
    let version = env!("CARGO_PKG_VERSION");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start_in(&data, "");
    let shared = body("shared photo", 40 * 1024);
    let mut users = Vec::new();
    let mut tokens = Vec::new();
    let sessions_made_at = pubky_edge::clock::now_secs();
    for n in 1..=3u8 {
        let key = SigningKey::from_bytes(&[n; 32]);
        let token = signup_and_signin(&s, &key);
        let mut files = BTreeMap::new();
        let account = user(&key, &token);
        let mut write = |path: &str, b: &[u8]| {
            put_file(&s, &account, path, b);
            files.insert(path.to_string(), blake3::hash(b).to_hex().to_string());
        };
        write(
            "/pub/notes/hello.txt",
            format!("hello from {n}, first").as_bytes(),
        );
        write(
            "/pub/notes/hello.txt",
            format!("hello from {n}, kept").as_bytes(),
        );
        write("/pub/notes/gone.txt", b"written, then deleted");
        write("/priv/diary.txt", &body(&format!("diary {n}"), 2000));
        write(
            &format!("/pub/files/{n}.bin"),
            &body(&format!("own {n}"), 20 * 1024),
        );
        if n < 3 {
            write("/pub/photos/shared.jpg", &shared);
        }
        let r = s
            .req(
                "DELETE",
                &s.storage_url(&pk_of(&key), "/pub/notes/gone.txt"),
            )
            .bearer(&token)
            .send();
        assert_eq!(r.status, 204, "{}", r.text());
        files.remove("/pub/notes/gone.txt");
        users.push((key, files));
        tokens.push(token);
    }
    let r = s
        .admin("POST", &format!("/users/{}/disable", pk_of(&users[2].0)))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s
        .admin("PATCH", &format!("/users/{}/quota", pk_of(&users[1].0)))
        .json(&serde_json::json!({ "storage_quota_mb": 64 }))
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.admin("GET", "/generate_signup_token").send();
    assert_eq!(r.status, 200, "{}", r.text());
    let unused_token = r.text().trim().to_string();

    let expected = Expected {
        version: version.into(),
        events: events(&s),
        users: users
            .iter()
            .zip(tokens)
            .map(|((key, files), session)| ExpectedUser {
                seed: hex(&key.to_bytes()),
                files: files.clone(),
                deleted: vec!["/pub/notes/gone.txt".into()],
                session,
                admin: admin_user(&s, key),
            })
            .collect(),
        unused_token,
        sessions_made_at,
    };
    s.stop();
    std::fs::create_dir_all(&out).unwrap();
    let name = format!("data-{version}");
    let st = Command::new("tar")
        .arg("-C")
        .arg(tmp.path())
        .arg("-czf")
        .arg(out.join(format!("{name}.tar.gz")))
        .arg("data")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

/// Every field of `was` has the same value in `now`.
fn holds(was: &serde_json::Value, now: &serde_json::Value, what: &str) {
    match was {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                holds(v, &now[k], &format!("{what}.{k}"));
            }
        }
        _ => assert_eq!(was, now, "{what}"),
    }
}

fn fixtures() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    found.sort();
    found
}

fn check_fixture(archive: &Path) {
    let name = archive.file_name().unwrap().to_string_lossy();
    let stem = name.trim_end_matches(".tar.gz");
    let expected: Expected = serde_json::from_slice(
        &std::fs::read(Path::new(FIXTURES).join(format!("{stem}.json"))).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(tmp.path())
        .arg("-xzf")
        .arg(archive)
        .status()
        .unwrap();
    assert!(st.success(), "unpacking {name}");
    let data = tmp.path().join("data");
    let s = Server::start_in(&data, "");
    let v = &expected.version;

    for u in &expected.users {
        let key = key_of(&u.seed);
        let pk = pk_of(&key);
        // Read through the admin's WebDAV, and (where the account may still sign in)
        // through a new sign-in.
        let mut readers = vec![None];
        if u.admin["disabled"] == false {
            readers.push(Some(signin(&s, &key, "/:rw")));
        }
        for reader in &readers {
            let read = |path: &str| match reader {
                Some(token) => get(&s, token, &key, path),
                None => dav_get(&s, &format!("/dav/{pk}{path}")),
            };
            for (path, hash) in &u.files {
                let (status, b) = read(path);
                assert_eq!(status, 200, "{v}: {path} of {pk} by {reader:?}");
                assert_eq!(&blake3::hash(&b).to_hex().to_string(), hash, "{v}: {path}");
            }
            for path in &u.deleted {
                assert_eq!(read(path).0, 404, "{v}: deleted {path}");
            }
        }
        holds(&u.admin, &admin_user(&s, &key), &format!("{v}: admin user"));
    }
    assert_eq!(events(&s), expected.events, "{v}: the event feed");
    // The disabled account stays disabled; the others keep writing.
    let was_disabled = &expected.users[2];
    assert_eq!(was_disabled.admin["disabled"], true);
    let disabled = key_of(&was_disabled.seed);
    let g = GrantSpec::new(&disabled, s.pk, "test.app", "/:rw", 3600);
    let r = s.req("POST", "/auth/grant/session").json(&g.body()).send();
    assert_eq!(
        r.status,
        403,
        "{v}: a disabled account signed in: {}",
        r.text()
    );
    let first = key_of(&expected.users[0].seed);
    let first = user(&first, &signin(&s, &first, "/:rw"));
    put_file(&s, &first, "/pub/after.txt", b"written after the upgrade");
    // The unused signup token is still there, unused.
    let r = s.admin("GET", "/signup_tokens?state=unused").send();
    assert!(
        r.text().contains(&expected.unused_token),
        "{v}: {}",
        r.text()
    );
    s.stop();

    // The old release's sessions, as of when they were made: each bound to its bearer, its
    // account and its grant's capabilities.
    let store = Store::open(
        &data,
        StoreConfig {
            cache_capacity_bytes: 4 << 20,
            inline_max: 16384,
            durability: Durability::Strict,
            default_quota_bytes: None,
        },
    )
    .unwrap();
    for u in &expected.users {
        let hash = pubky_edge::auth::secrets::bearer_hash(&u.session);
        let (session, grant) = store
            .session(&hash, expected.sessions_made_at + 1)
            .unwrap()
            .unwrap_or_else(|| panic!("{v}: the session of {} is gone", pk_of(&key_of(&u.seed))));
        assert_eq!(session.user, pk_of(&key_of(&u.seed)), "{v}");
        assert_eq!(grant.caps, ["/:rw"], "{v}");
    }
    smol::block_on(store.close()).unwrap();
    drop(store);

    let o = Command::new(env!("CARGO_BIN_EXE_pubky-edge"))
        .arg("--data-dir")
        .arg(&data)
        .arg("check")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{v}: check after the upgrade: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn data_directories_of_earlier_releases_open_and_hold_everything() {
    let found = fixtures();
    assert!(!found.is_empty(), "no fixture in {FIXTURES}");
    for archive in found {
        check_fixture(&archive);
    }
}

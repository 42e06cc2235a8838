//! Store tests on a real sled database in a temp directory: refcounted blobs, orphan
//! sweep, reopen, corruption, concurrent group-committed writes and quota; reads, listings
//! and the event index are in [`reads`].

mod archive;
mod migrate;
mod reads;
mod snapshots;

use std::path::Path;
use std::time::Duration;

use super::database::LOCK_WAIT;
use super::*;
use crate::storage_path::StoragePath;

fn cfg(inline_max: usize, quota: Option<u64>) -> StoreConfig {
    StoreConfig {
        cache_capacity_bytes: 4 << 20,
        inline_max,
        durability: Durability::Strict,
        default_quota_bytes: quota,
    }
}

fn pk(b: u8) -> PublicKey {
    PublicKey::from(ed25519_dalek::SigningKey::from_bytes(&[b; 32]).verifying_key())
}

fn p(s: &str) -> StoragePath {
    StoragePath::strict(s).unwrap()
}

async fn put(s: &Store, u: &PublicKey, path: &str, body: &[u8]) -> Result<(), StoreError> {
    let mut up = s.upload();
    for chunk in body.chunks(1000) {
        up.write(chunk).await?;
    }
    let staged = up.finish().await?;
    s.put(u, &p(path), staged, "application/octet-stream", 1)
        .await
}

fn blob_files(dir: &Path) -> usize {
    walk(&dir.join("blobs"))
}

fn walk(d: &Path) -> usize {
    std::fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn read_all(s: &Store, u: &PublicKey, path: &str) -> Vec<u8> {
    match s.read(u, &p(path)).unwrap().unwrap().1 {
        Content::Inline(b) => b.to_vec(),
        Content::File(mut f) => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut v).unwrap();
            v
        }
    }
}

#[test]
fn blobs_are_deduplicated_and_reference_counted() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(16, None)).unwrap();
        let u = pk(1);
        s.create_user(&u, None, 0).await.unwrap();
        let body = vec![5u8; 5000];
        put(&s, &u, "/pub/a", &body).await.unwrap();
        put(&s, &u, "/pub/b", &body).await.unwrap();
        assert_eq!(blob_files(dir.path()), 1);
        assert_eq!(read_all(&s, &u, "/pub/b"), body);
        s.delete(&u, &p("/pub/a"), 2).await.unwrap();
        assert_eq!(blob_files(dir.path()), 1);
        // overwrite with small (inline) content drops the last reference
        put(&s, &u, "/pub/b", b"tiny").await.unwrap();
        assert_eq!(blob_files(dir.path()), 0);
        assert_eq!(read_all(&s, &u, "/pub/b"), b"tiny");
        assert!(matches!(
            s.delete(&u, &p("/pub/a"), 3).await,
            Err(StoreError::NotFound)
        ));
        // a rejected write (collision) leaves no blob behind
        put(&s, &u, "/pub/dir/x", b"x").await.unwrap();
        assert!(matches!(
            put(&s, &u, "/pub/dir", &body).await,
            Err(StoreError::Collision)
        ));
        assert_eq!(blob_files(dir.path()), 0);
        // unfinished uploads leave no temp file
        let mut up = s.upload();
        up.write(&body).await.unwrap();
        drop(up);
        assert_eq!(walk(&dir.path().join("tmp")), 0);
        s.close().await.unwrap();
    });
}

#[test]
fn orphans_swept_and_data_survives_reopen() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let u = pk(2);
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        {
            let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
            s.create_user(&u, None, 0).await.unwrap();
            put(&s, &u, "/pub/big", &big).await.unwrap();
            put(&s, &u, "/priv/small", b"hello").await.unwrap();
            s.close().await.unwrap();
        }
        // a blob nothing references and a leftover temp file, as after a crash
        let orphan = dir.path().join("blobs/ab").join("ab".repeat(32));
        std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
        std::fs::write(&orphan, b"orphan").unwrap();
        std::fs::write(dir.path().join("tmp/partial"), b"x").unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        assert!(!orphan.exists());
        assert_eq!(walk(&dir.path().join("tmp")), 0);
        assert_eq!(read_all(&s, &u, "/pub/big"), big);
        assert_eq!(read_all(&s, &u, "/priv/small"), b"hello");
        let user = s.user(&u).unwrap().unwrap();
        assert_eq!(user.used_bytes, big.len() as u64 + 5 + 2 * 256);
        let ev = s.events_after(0, 10).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].1.path, "/priv/small");
        s.close().await.unwrap();
    });
}

/// A lock let go of shortly after `open` starts (a store closing on another thread, as a
/// restore closes and reopens) is waited for; one held for good ends in `InUse`.
#[test]
fn open_waits_for_a_lock_being_released_and_names_one_held() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            smol::block_on(first.close()).unwrap();
        });
        let second = Store::open(dir.path(), cfg(1024, None)).unwrap();
        releaser.join().unwrap();

        let started = std::time::Instant::now();
        let Err(err) = Store::open(dir.path(), cfg(1024, None)) else {
            panic!("a second store opened a database that is held");
        };
        assert!(matches!(&err, StoreError::InUse(db) if db == &dir.path().join("db")));
        assert!(started.elapsed() >= LOCK_WAIT, "{:?}", started.elapsed());
        assert!(
            err.to_string().contains("is in use by another process"),
            "{err}"
        );
        second.close().await.unwrap();
    });
}

/// Relaxed mode answers before any flush, so a timer must flush: a copy of the data
/// directory taken while the store is still open (what a power cut would leave, minus the
/// page cache) holds a write once the flush interval has passed.
#[test]
fn relaxed_writes_reach_the_files_within_the_flush_interval() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let u = pk(9);
        let relaxed = StoreConfig {
            durability: Durability::Relaxed,
            ..cfg(1024, None)
        };
        let s = Store::open(&data, relaxed.clone()).unwrap();
        s.create_user(&u, None, 0).await.unwrap();
        put(&s, &u, "/pub/relaxed", b"acknowledged").await.unwrap();
        smol::Timer::after(Duration::from_millis(RELAXED_FLUSH_MS + 1500)).await;
        let copy = dir.path().join("copy");
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(&data)
            .arg(&copy)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let c = Store::open(&copy, relaxed).unwrap();
        assert_eq!(read_all(&c, &u, "/pub/relaxed"), b"acknowledged");
        c.close().await.unwrap();
        s.close().await.unwrap();
    });
}

#[test]
fn corrupt_values_are_errors() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let u = pk(3);
        s.0.t
            .users
            .insert(u.as_bytes(), &[1u8, 0xff, 0xff][..])
            .unwrap();
        assert!(matches!(s.user(&u), Err(StoreError::Corrupt(_))));
        s.0.t
            .entries
            .insert(keys::entry(&u, "/pub/x"), &[7u8][..])
            .unwrap();
        assert!(matches!(
            s.entry(&u, &p("/pub/x")),
            Err(StoreError::Corrupt(_))
        ));
        // An inline body that is not the one its entry describes, or none at all, is
        // reported, never served.
        s.0.t.entries.remove(keys::entry(&u, "/pub/x")).unwrap();
        s.0.t.users.remove(u.as_bytes()).unwrap();
        let u = pk(9);
        s.create_user(&u, None, 0).await.unwrap();
        put(&s, &u, "/pub/y", b"hello").await.unwrap();
        let key = keys::entry(&u, "/pub/y");
        assert!(matches!(
            s.read(&u, &p("/pub/y")).unwrap(),
            Some((_, Content::Inline(b))) if &b[..] == b"hello"
        ));
        let raw = s.0.t.entries.get(&key).unwrap().unwrap();
        let (meta, _) = codec::decode_with_tail::<EntryMeta>("entry", &raw).unwrap();
        for stored in [
            codec::encode_with_tail(&meta, b"jello"),
            codec::encode(&meta),
        ] {
            s.0.t.entries.insert(&key, stored).unwrap();
            match s.read(&u, &p("/pub/y")) {
                Err(StoreError::Corrupt(m)) => assert!(m.contains("does not match"), "{m}"),
                other => panic!("expected corruption, got {:?}", other.map(|o| o.is_some())),
            }
            assert!(s
                .check()
                .unwrap()
                .problems
                .iter()
                .any(|m| m.contains("/pub/y")));
        }
        s.close().await.unwrap();
    });
}

#[test]
fn concurrent_writes_are_all_durable_with_ordered_events() {
    let dir = tempfile::tempdir().unwrap();
    let u = pk(4);
    let ex = smol::Executor::new();
    smol::block_on(ex.run(async {
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        s.create_user(&u, None, 0).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let s = s.clone();
                ex.spawn(async move {
                    for i in 0..25 {
                        put(
                            &s,
                            &u,
                            &format!("/pub/t{t}/f{i}"),
                            format!("{t}-{i}").as_bytes(),
                        )
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let ev = s.events_after(0, 1000).unwrap();
        assert_eq!(ev.len(), 400);
        for (i, (id, _)) in ev.iter().enumerate() {
            assert_eq!(*id, i as u64 + 1, "event ids have no gaps and increase");
        }
        s.close().await.unwrap();
    }));
    let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
    let all = s
        .list(
            &u,
            &p("/pub/"),
            &ListOptions {
                limit: 1000,
                cursor: None,
                reverse: false,
                shallow: false,
            },
        )
        .unwrap();
    assert_eq!(all.len(), 400);
}

#[test]
fn quota_and_allowance() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, Some(10_000))).unwrap();
        let u = pk(5);
        s.create_user(&u, None, 0).await.unwrap();
        assert_eq!(
            s.write_allowance(&u, &p("/pub/a")).unwrap(),
            Some(10_000 - 256)
        );
        put(&s, &u, "/pub/a", &[0u8; 4000]).await.unwrap();
        assert_eq!(
            s.write_allowance(&u, &p("/pub/a")).unwrap(),
            Some(10_000 - 256)
        );
        assert_eq!(
            s.write_allowance(&u, &p("/pub/b")).unwrap(),
            Some(10_000 - 4256 - 256)
        );
        assert!(matches!(
            put(&s, &u, "/pub/b", &[0u8; 5489]).await,
            Err(StoreError::QuotaExceeded)
        ));
        put(&s, &u, "/pub/b", &[0u8; 5488]).await.unwrap();
        assert_eq!(s.user(&u).unwrap().unwrap().used_bytes, 10_000);
        assert!(matches!(
            put(&s, &pk(6), "/pub/x", b"x").await,
            Err(StoreError::UserNotFound)
        ));
        s.close().await.unwrap();
    });
}

#[test]
fn cookie_sessions_stored_in_the_clear_are_rehashed_at_open() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let secret = "000G40R40M30E209185GR38E1W";
        let user = pk(3);
        {
            let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
            // what an older version wrote: the secret itself as the key, no origin
            #[derive(serde::Serialize)]
            struct V1 {
                user: PublicKey,
                caps: Vec<String>,
                created_at: u64,
            }
            let v1 = V1 {
                user,
                caps: vec!["/:rw".into()],
                created_at: 9,
            };
            s.0.t
                .cookie_sessions
                .insert(secret.as_bytes(), codec::encode(&v1))
                .unwrap();
            s.close().await.unwrap();
        }
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let got = s.cookie_session(secret).unwrap().expect("session kept");
        assert_eq!((got.user, got.created_at, got.origin), (user, 9, None));
        assert!(s
            .0
            .t
            .cookie_sessions
            .iter()
            .keys()
            .all(|k| k.unwrap().len() == 32));
        s.delete_cookie_session(secret).await.unwrap();
        assert!(s.cookie_session(secret).unwrap().is_none());
    });
}

/// The format is recorded (a store from before formats were recorded counts as format 1 and
/// is migrated), and a store in a newer format is refused with what to do, never read.
#[test]
fn a_store_in_a_newer_format_is_refused_and_an_unmarked_one_is_migrated() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let format = |s: &Store| s.0.t.meta.get(b"store_format").unwrap();
        assert_eq!(format(&s).as_deref(), Some(&codec::encode(&FORMAT)[..]));
        // As a store written before the marker: none.
        s.0.t.meta.remove(b"store_format").unwrap();
        s.close().await.unwrap();
        drop(s);
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        assert_eq!(format(&s).as_deref(), Some(&codec::encode(&FORMAT)[..]));
        // As a newer version would leave it.
        s.0.t
            .meta
            .insert(b"store_format", codec::encode(&(FORMAT + 1)))
            .unwrap();
        s.close().await.unwrap();
        drop(s);
        let Err(err) = Store::open(dir.path(), cfg(1024, None)) else {
            panic!("a store in a newer format was opened");
        };
        assert!(
            matches!(err, StoreError::NewerFormat { found } if found == FORMAT + 1),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains("restore the backup made before the update"));
    });
}

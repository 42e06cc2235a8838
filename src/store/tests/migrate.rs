//! Format 1 → 2: a store laid out as format 1 wrote it (inline bodies under their own key
//! in `content`) opens with every file whole: copied into a new database, or moved in
//! place when there is no room for a copy, and either way when cut off mid-way.

use std::collections::BTreeMap;

use super::*;
use crate::store::migrate::STOP_AFTER_BATCHES;
use crate::store::rebuild::NO_ROOM;

/// sled's own open of a database a store just closed: its lock goes a moment later.
fn sled_open(db: &Path) -> sled::Db {
    for _ in 0..100 {
        match sled::open(db) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    sled::open(db).unwrap()
}

/// Every file of `u` under `/pub/m/`, read through the store.
fn files(s: &Store, u: &PublicKey) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for i in 0..40 {
        let path = format!("/pub/m/{i}");
        if let Some((_, c)) = s.read(u, &p(&path)).unwrap() {
            let body = match c {
                Content::Inline(b) => b.to_vec(),
                Content::File(mut f) => {
                    let mut v = Vec::new();
                    std::io::Read::read_to_end(&mut f, &mut v).unwrap();
                    v
                }
            };
            out.insert(path, body);
        }
    }
    out
}

/// Rewrites the store's entries as format 1 kept them, with two strays format 1's `check`
/// reported (a body with no entry, and one next to a blob entry), and marks it format 1.
fn lay_out_as_format_1(s: &Store, stray_of_blob: &[u8]) {
    let t = &s.0.t;
    for kv in t.entries.iter() {
        let (k, v) = kv.unwrap();
        let (meta, body) = codec::decode_with_tail::<EntryMeta>("entry", &v).unwrap();
        if meta.inline {
            t.entries.insert(&k, codec::encode(&meta)).unwrap();
            t.content.insert(&k, body).unwrap();
        }
    }
    t.content.insert(b"no such entry", &b"stray"[..]).unwrap();
    t.content.insert(stray_of_blob, &b"stray"[..]).unwrap();
    t.meta
        .insert(b"store_format", codec::encode(&1u32))
        .unwrap();
}

/// A store of 40 files (inline ones of every size, an empty one, blobs) laid out as
/// format 1; returns its files, their usage and the key of a blob entry.
async fn format_1_store(
    dir: &Path,
    u: &PublicKey,
) -> (BTreeMap<String, Vec<u8>>, BTreeMap<[u8; 32], u64>, Vec<u8>) {
    let s = Store::open(dir, cfg(64, None)).unwrap();
    s.create_user(u, None, 0).await.unwrap();
    for i in 0..40 {
        let body = match i {
            0 => Vec::new(),
            i if i % 10 == 9 => vec![i as u8; 500 + i],
            i => vec![i as u8; i],
        };
        put(&s, u, &format!("/pub/m/{i}"), &body).await.unwrap();
    }
    let want = files(&s, u);
    assert_eq!(want.len(), 40);
    let usage = s.check().unwrap().used_bytes;
    let blob_key = keys::entry(u, "/pub/m/9");
    lay_out_as_format_1(&s, &blob_key);
    assert_eq!(s.0.t.content.len(), 36 + 2);
    s.close().await.unwrap();
    (want, usage, blob_key)
}

/// What every migrated store holds: the same files and usage, format 2, one key per file,
/// a clean check, and writes that work.
async fn migrated_whole(
    dir: &Path,
    u: &PublicKey,
    want: &BTreeMap<String, Vec<u8>>,
    usage: &BTreeMap<[u8; 32], u64>,
    blob_key: &[u8],
) {
    let s = Store::open(dir, cfg(64, None)).unwrap();
    assert_eq!(&files(&s, u), want, "every file reads back whole");
    assert_eq!(s.0.t.content.len(), 0);
    let format = s.0.t.meta.get(b"store_format").unwrap();
    assert_eq!(format.as_deref(), Some(&codec::encode(&FORMAT)[..]));
    let report = s.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(&report.used_bytes, usage);
    // A blob entry kept no stray body.
    let raw = s.0.t.entries.get(blob_key).unwrap().unwrap();
    let (meta, tail) = codec::decode_with_tail::<EntryMeta>("entry", &raw).unwrap();
    assert!(!meta.inline && tail.is_empty());
    for left in ["db.new", "db.old", "db.new-ready"] {
        assert!(!dir.join(left).exists(), "{left} left behind");
    }
    put(&s, u, "/pub/m/1", b"new").await.unwrap();
    s.delete(u, &p("/pub/m/2"), 2).await.unwrap();
    let now = files(&s, u);
    assert_eq!(now.get("/pub/m/1").map(Vec::as_slice), Some(&b"new"[..]));
    assert!(!now.contains_key("/pub/m/2"));
    s.close().await.unwrap();
}

#[test]
fn a_format_1_store_is_copied_into_a_new_database_and_a_cut_off_swap_is_finished() {
    smol::block_on(async {
        let u = pk(23);
        // Each state a crash can leave between the steps of the swap.
        for state in [
            "copy unfinished",
            "marked",
            "renamed old",
            "swapped",
            "marker gone",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (want, usage, blob_key) = format_1_store(dir.path(), &u).await;
            let d = |n: &str| dir.path().join(n);
            {
                let db = sled_open(&d("db"));
                crate::store::rebuild::copy(&db, dir.path(), 1 << 20).unwrap();
            }
            match state {
                "copy unfinished" => std::fs::remove_file(d("db.new-ready")).unwrap(),
                "marked" => {}
                "renamed old" => std::fs::rename(d("db"), d("db.old")).unwrap(),
                "swapped" | "marker gone" => {
                    std::fs::rename(d("db"), d("db.old")).unwrap();
                    std::fs::rename(d("db.new"), d("db")).unwrap();
                    if state == "marker gone" {
                        std::fs::remove_file(d("db.new-ready")).unwrap();
                    }
                }
                _ => unreachable!(),
            }
            migrated_whole(dir.path(), &u, &want, &usage, &blob_key).await;
        }
    });
}

#[test]
fn a_format_1_store_is_migrated_in_place_without_room_for_a_copy_even_when_cut_off() {
    NO_ROOM.with(|n| n.set(true));
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let u = pk(21);
        let (want, usage, blob_key) = format_1_store(dir.path(), &u).await;
        let inline = 36 + 2;

        // Cut off after two transactions: the open fails, what moved is durable, and every
        // file is still in exactly one place.
        STOP_AFTER_BATCHES.with(|c| c.set(Some(2)));
        let Err(e) = Store::open(dir.path(), cfg(64, None)) else {
            panic!("the stopped migration opened the store");
        };
        assert!(e.to_string().contains("stopped by the test"), "{e}");
        STOP_AFTER_BATCHES.with(|c| c.set(None));
        {
            let db = sled_open(&dir.path().join("db"));
            let left = db.open_tree("content").unwrap().len();
            assert_eq!(left, inline - 16, "two batches of 8 moved");
            let format = db.open_tree("meta").unwrap().get(b"store_format").unwrap();
            assert_eq!(format.as_deref(), Some(&codec::encode(&1u32)[..]));
        }

        migrated_whole(dir.path(), &u, &want, &usage, &blob_key).await;
    });
    NO_ROOM.with(|n| n.set(false));
}

/// A dump of a format-1 store (a backup made by an earlier version) loads into this
/// version as format 2.
#[test]
fn a_format_1_dump_loads_as_format_2() {
    smol::block_on(async {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let u = pk(22);
        let s = Store::open(a.path(), cfg(64, None)).unwrap();
        s.create_user(&u, None, 0).await.unwrap();
        for i in 0..20 {
            put(&s, &u, &format!("/pub/m/{i}"), &vec![i as u8; i])
                .await
                .unwrap();
        }
        let want = files(&s, &u);
        lay_out_as_format_1(&s, b"another stray");
        let snap = s.snapshot().unwrap();
        let s2 = Store::open(b.path(), cfg(64, None)).unwrap();
        s2.load_dump(&snap.dump).unwrap();
        assert_eq!(files(&s2, &u), want);
        assert_eq!(s2.0.t.content.len(), 0);
        let format = s2.0.t.meta.get(b"store_format").unwrap();
        assert_eq!(format.as_deref(), Some(&codec::encode(&FORMAT)[..]));
        assert!(s2.check().unwrap().problems.is_empty());
        drop(snap);
        s.close().await.unwrap();
        s2.close().await.unwrap();
    });
}

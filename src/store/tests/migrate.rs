//! Format 1 → 2: a store laid out as format 1 wrote it (inline bodies under their own key
//! in `content`) opens with every file whole, even when the move is cut off mid-way.

use std::collections::BTreeMap;

use super::*;
use crate::store::migrate::STOP_AFTER_BATCHES;

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

#[test]
fn a_format_1_store_is_migrated_at_open_even_when_cut_off() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let u = pk(21);
        let s = Store::open(dir.path(), cfg(64, None)).unwrap();
        s.create_user(&u, None, 0).await.unwrap();
        for i in 0..40 {
            // inline bodies of every size up to the limit, an empty one, and some blobs
            let body = match i {
                0 => Vec::new(),
                i if i % 10 == 9 => vec![i as u8; 500 + i],
                i => vec![i as u8; i],
            };
            put(&s, &u, &format!("/pub/m/{i}"), &body).await.unwrap();
        }
        let want = files(&s, &u);
        assert_eq!(want.len(), 40);
        let usage = s.check().unwrap().used_bytes;
        let blob_key = keys::entry(&u, "/pub/m/9");
        lay_out_as_format_1(&s, &blob_key);
        let inline = s.0.t.content.len();
        assert_eq!(inline, 36 + 2);
        s.close().await.unwrap();
        drop(s);

        // Cut off after two transactions: the open fails, what moved is durable, and every
        // file is still in exactly one place.
        STOP_AFTER_BATCHES.with(|c| c.set(Some(2)));
        let Err(e) = Store::open(dir.path(), cfg(64, None)) else {
            panic!("the stopped migration opened the store");
        };
        assert!(e.to_string().contains("stopped by the test"), "{e}");
        STOP_AFTER_BATCHES.with(|c| c.set(None));
        {
            let db = sled::open(dir.path().join("db")).unwrap_or_else(|_| {
                std::thread::sleep(Duration::from_secs(2));
                sled::open(dir.path().join("db")).unwrap()
            });
            let left = db.open_tree("content").unwrap().len();
            assert_eq!(left, inline - 16, "two batches of 8 moved");
            let format = db.open_tree("meta").unwrap().get(b"store_format").unwrap();
            assert_eq!(format.as_deref(), Some(&codec::encode(&1u32)[..]));
        }

        let s = Store::open(dir.path(), cfg(64, None)).unwrap();
        assert_eq!(files(&s, &u), want, "every file reads back whole");
        assert_eq!(s.0.t.content.len(), 0);
        let format = s.0.t.meta.get(b"store_format").unwrap();
        assert_eq!(format.as_deref(), Some(&codec::encode(&FORMAT)[..]));
        let report = s.check().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.used_bytes, usage);
        // Each inline file is one key now; a blob entry kept no stray body.
        let raw = s.0.t.entries.get(&blob_key).unwrap().unwrap();
        let (meta, tail) = codec::decode_with_tail::<EntryMeta>("entry", &raw).unwrap();
        assert!(!meta.inline && tail.is_empty());
        // It writes and deletes as before.
        put(&s, &u, "/pub/m/1", b"new").await.unwrap();
        s.delete(&u, &p("/pub/m/2"), 2).await.unwrap();
        let now = files(&s, &u);
        assert_eq!(now.get("/pub/m/1").map(Vec::as_slice), Some(&b"new"[..]));
        assert!(!now.contains_key("/pub/m/2"));
        s.close().await.unwrap();
    });
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

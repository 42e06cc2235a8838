//! Snapshots: one point in time while writes go on, blobs pinned until the snapshot is
//! dropped, and a dump that fills an empty store with the same data.

use super::*;

#[test]
fn a_snapshot_is_one_point_in_time_and_loads_into_an_empty_store() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(16, None)).unwrap();
        let (a, b) = (pk(1), pk(2));
        s.create_user(&a, None, 0).await.unwrap();
        s.create_user(&b, None, 0).await.unwrap();
        let big = vec![7u8; 5000];
        put(&s, &a, "/pub/big", &big).await.unwrap();
        put(&s, &a, "/pub/small", b"one").await.unwrap();
        put(&s, &b, "/priv/note", b"private").await.unwrap();
        s.create_signup_token("AAAA-BBBB-CCCC", 5).await.unwrap();

        let snap = smol::unblock({
            let s = s.clone();
            move || s.snapshot()
        })
        .await
        .unwrap();
        assert_eq!(snap.event_seq, 3);
        assert_eq!(snap.blobs, vec![*blake3::hash(&big).as_bytes()]);

        // after the snapshot: the blob loses its last reference, more writes land
        s.delete(&a, &p("/pub/big"), 9).await.unwrap();
        put(&s, &a, "/pub/later", b"after").await.unwrap();
        // pinned: the unreferenced blob stays until the snapshot is dropped
        let blob = snap.blob_path(&snap.blobs[0]);
        assert!(blob.exists());
        let restored = tempfile::tempdir().unwrap();
        let r = Store::open(restored.path(), cfg(16, None)).unwrap();
        assert_eq!(r.load_dump(&snap.dump).unwrap(), snap.records);
        // a second load is refused: the store is no longer empty
        assert!(r.load_dump(&snap.dump).is_err());
        let rel = blob.strip_prefix(dir.path().join("blobs")).unwrap();
        let target = restored.path().join("blobs").join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&blob, &target).unwrap();
        r.close().await.unwrap();
        drop(r);
        let dump = snap.dump.clone();
        drop(snap);
        assert!(
            !blob.exists(),
            "the deferred unlink ran when the pin was released"
        );
        assert!(!dump.exists());

        let r = Store::open(restored.path(), cfg(16, None)).unwrap();
        assert_eq!(read_all(&r, &a, "/pub/big"), big);
        assert_eq!(read_all(&r, &b, "/priv/note"), b"private");
        assert!(r.read(&a, &p("/pub/later")).unwrap().is_none());
        assert_eq!(r.event_head(), 3);
        assert_eq!(r.events_after(0, 10).unwrap().len(), 3);
        // usage as it was at the snapshot: two files and their per-entry overhead
        assert_eq!(r.user(&a).unwrap().unwrap().used_bytes, 5000 + 3 + 2 * 256);
        assert!(r.signup_token("AAAA-BBBB-CCCC").unwrap().is_some());
        assert!(r.check().unwrap().problems.is_empty());
        r.close().await.unwrap();
        s.close().await.unwrap();
    });
}

#[test]
fn a_damaged_dump_is_refused() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(16, None)).unwrap();
        s.create_user(&pk(1), None, 0).await.unwrap();
        put(&s, &pk(1), "/pub/a", b"hello").await.unwrap();
        let snap = s.snapshot().unwrap();
        let bytes = std::fs::read(&snap.dump).unwrap();
        let out = tempfile::tempdir().unwrap();
        let cut = out.path().join("cut.dump");
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        let other = out.path().join("other.dump");
        std::fs::write(&other, b"PEDUMP02rest").unwrap();
        let r = Store::open(&out.path().join("data"), cfg(16, None)).unwrap();
        let e = r.load_dump(&other).unwrap_err();
        assert!(e.to_string().contains("not a pubky-edge store dump"), "{e}");
        let e = r.load_dump(&cut).unwrap_err();
        assert!(e.to_string().contains("ends before its end frame"), "{e}");
        s.close().await.unwrap();
    });
}

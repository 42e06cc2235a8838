//! The event archive: events moved out of sled read back exactly as before (all scans,
//! both directions, every cursor across segment and block edges), survive a reopen, a
//! crash between the segment's rename and sled's delete, and a dump; damage is found.

use super::*;
use crate::store::archive;

/// Everything the event reads answer, at cursors around the archive's segment (150) and
/// block (64) edges.
fn answers(s: &Store, users: &[PublicKey]) -> Vec<String> {
    let ids = |v: &[(u64, EventRecord)]| v.iter().map(|(i, _)| *i).collect::<Vec<_>>();
    let public = |e: &EventRecord| e.path.starts_with("/pub/");
    let mut out = Vec::new();
    let cursors = [
        0, 1, 63, 64, 65, 127, 128, 149, 150, 151, 299, 300, 301, 449, 450, 451,
    ];
    for c in cursors.into_iter().chain([499, 500, 600]) {
        out.push(format!(
            "after {c}: {:?}",
            ids(&s.events_after(c, 37).unwrap())
        ));
        out.push(format!(
            "public after {c}: {:?}",
            ids(&s.public_events_after(c, 37).unwrap())
        ));
        for reverse in [false, true] {
            let scan = Scan {
                cursor: (c > 0).then_some(c),
                reverse,
                limit: 37,
            };
            let page = s.scan_events(scan, public).unwrap();
            out.push(format!(
                "scan {c} {reverse}: {:?} {:?} {}",
                ids(&page.events),
                page.examined_to,
                page.exhausted
            ));
            for u in users {
                let page = s.scan_user_events(u, scan, |_| true).unwrap();
                out.push(format!(
                    "user scan {c} {reverse}: {:?} {:?} {}",
                    ids(&page.events),
                    page.examined_to,
                    page.exhausted
                ));
            }
        }
    }
    for t in [0, 1, 5, 64, 149, 150, 151, 450, 499, 1000] {
        out.push(format!("cursor at {t}: {}", s.event_cursor_at(t).unwrap()));
    }
    out
}

/// 500 events by three users: `a` writes public files, `b` private ones, `c` both, and
/// every tenth event deletes; event `i` is created at µs `i`.
async fn history(s: &Store) -> Vec<PublicKey> {
    let users = vec![pk(1), pk(2), pk(3)];
    for u in &users {
        s.create_user(u, None, 0).await.unwrap();
    }
    let mut i = 0u64;
    while i < 500 {
        let n = i as usize;
        let u = &users[n % 7 % 3];
        let path = match n % 7 % 3 {
            0 => format!("/pub/a/{n}"),
            1 => format!("/priv/b/{n}"),
            _ if n % 2 == 0 => format!("/pub/c/{n}"),
            _ => format!("/priv/c/{n}"),
        };
        let mut up = s.upload();
        up.write(b"x").await.unwrap();
        let staged = up.finish().await.unwrap();
        s.put(u, &p(&path), staged, "text/plain", i + 1)
            .await
            .unwrap();
        i += 1;
        if i % 10 == 9 {
            s.delete(u, &p(&path), i + 1).await.unwrap();
            i += 1;
        }
    }
    users
}

#[test]
fn archived_events_read_exactly_as_before_and_after_a_reopen() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let users = history(&s).await;
        assert_eq!(s.event_head(), 500);
        let before = answers(&s, &users);

        // batches of 150, keeping 20 in sled: 450 move (three segments of three blocks)
        assert_eq!(s.archive_events_with(150, 20).unwrap(), 450);
        assert_eq!(
            s.archive_events_with(150, 20).unwrap(),
            0,
            "nothing left to move"
        );
        assert_eq!(s.segments().len(), 3);
        assert_eq!(s.0.t.events.len(), 50);
        assert!(s.0.t.user_events.len() <= 50);
        assert!(s.0.t.pub_events.len() < 50);
        assert_eq!(answers(&s, &users), before);
        assert!(s.check().unwrap().problems.is_empty());

        // more writes after the archive, then a reopen
        put(&s, &users[0], "/pub/a/late", b"y").await.unwrap();
        let before = answers(&s, &users);
        s.close().await.unwrap();
        drop(s);
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        assert_eq!(s.event_head(), 501);
        assert_eq!(answers(&s, &users), before);
        assert!(s.check().unwrap().problems.is_empty());
    });
}

#[test]
fn a_crash_between_the_segment_and_the_database_delete_is_finished_at_open() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let users = history(&s).await;
        let before = answers(&s, &users);
        // the segment is in place, sled's copies were not deleted yet
        let records = s.0.t.events.iter().take(200).map(|kv| {
            let (k, v) = kv.unwrap();
            Ok((u64::from_be_bytes(k.as_ref().try_into().unwrap()), v))
        });
        archive::write(&dir.path().join("events"), records).unwrap();
        // and one cut short before its rename
        std::fs::write(dir.path().join("events/segment.tmp"), b"PEEVSEG1").unwrap();
        s.close().await.unwrap();
        drop(s);

        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        assert_eq!(s.segments().len(), 1);
        assert_eq!(
            s.0.t.events.len(),
            300,
            "the archived 200 left the database"
        );
        assert!(!dir.path().join("events/segment.tmp").exists());
        assert_eq!(answers(&s, &users), before);
        assert!(s.check().unwrap().problems.is_empty());
    });
}

#[test]
fn a_dump_of_an_archived_store_holds_every_event_and_loads_the_same() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let users = history(&s).await;
        let before = answers(&s, &users);
        let records_before = s.snapshot().unwrap().records;
        s.archive_events_with(150, 20).unwrap();
        let snap = s.snapshot().unwrap();
        assert_eq!(
            snap.records, records_before,
            "the dump counts the same records"
        );

        let restored = tempfile::tempdir().unwrap();
        let r = Store::open(restored.path(), cfg(1024, None)).unwrap();
        assert_eq!(r.load_dump(&snap.dump).unwrap(), snap.records);
        r.close().await.unwrap();
        drop(r);
        let r = Store::open(restored.path(), cfg(1024, None)).unwrap();
        assert_eq!(answers(&r, &users), before);
        assert!(r.check().unwrap().problems.is_empty());
        // a store whose events are all archived is not empty either
        let other = tempfile::tempdir().unwrap();
        let o = Store::open(other.path(), cfg(1024, None)).unwrap();
        history(&o).await;
        o.archive_events_with(150, 20).unwrap();
        o.0.t.events.clear().unwrap();
        o.0.t.users.clear().unwrap();
        o.0.t.entries.clear().unwrap();
        assert!(o.load_dump(&snap.dump).is_err());
    });
}

#[test]
fn damaged_segments_are_found() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        history(&s).await;
        s.archive_events_with(150, 20).unwrap();
        s.close().await.unwrap();
        drop(s);
        let seg = dir.path().join("events/00000000000000000151.seg");
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[40] ^= 0x55;
        std::fs::write(&seg, &bytes).unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let problems = s.check().unwrap().problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("00000000000000000151.seg"),
            "{problems:?}"
        );
        s.close().await.unwrap();
        drop(s);

        // a segment without its footer is refused at open, by name
        std::fs::write(&seg, &bytes[..bytes.len() - 5]).unwrap();
        let err = Store::open(dir.path(), cfg(1024, None)).err().unwrap();
        assert!(
            err.to_string().contains("00000000000000000151.seg"),
            "{err}"
        );
    });
}

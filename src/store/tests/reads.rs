//! Reads, listings and the per-user event index: no log writes on reads, consistent
//! body/ETag pairs under concurrent overwrites, cursors inside directories, index rebuild.

use super::*;

#[test]
fn shallow_reverse_with_cursor_inside_a_directory() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let u = pk(7);
        s.create_user(&u, None, 0).await.unwrap();
        for f in ["/pub/a", "/pub/b/x", "/pub/b/y", "/pub/c"] {
            put(&s, &u, f, b"1").await.unwrap();
        }
        let list = |cursor: Option<&str>, reverse| {
            s.list(
                &u,
                &p("/pub/"),
                &ListOptions {
                    limit: 10,
                    cursor: cursor.map(String::from),
                    reverse,
                    shallow: true,
                },
            )
            .unwrap()
        };
        assert_eq!(list(None, false), ["/pub/a", "/pub/b/", "/pub/c"]);
        assert_eq!(list(Some("/pub/b/y"), true), ["/pub/b/", "/pub/a"]);
        assert_eq!(list(Some("/pub/b/"), true), ["/pub/a"]);
        assert_eq!(list(Some("/pub/b/x"), false), ["/pub/c"]);
        assert!(matches!(
            s.list(
                &u,
                &p("/pub/none/"),
                &ListOptions {
                    limit: 0,
                    cursor: None,
                    reverse: false,
                    shallow: false
                }
            ),
            Err(StoreError::NotFound)
        ));
        s.close().await.unwrap();
    });
}

#[test]
fn reads_write_nothing_to_the_log() {
    // A sled transaction, even a read-only one, appends a batch marker to sled's log and
    // takes its global transaction lock; GETs once did that and grew memory per request.
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(64, None)).unwrap();
        let u = pk(6);
        s.create_user(&u, None, 0).await.unwrap();
        put(&s, &u, "/pub/small", b"inline").await.unwrap();
        put(&s, &u, "/pub/large", &[5u8; 3000]).await.unwrap();
        s.0.db.flush().unwrap();
        for _ in 0..200 {
            assert!(s.read(&u, &p("/pub/small")).unwrap().is_some());
            assert!(s.read(&u, &p("/pub/large")).unwrap().is_some());
            assert!(s.read(&u, &p("/pub/none")).unwrap().is_none());
        }
        assert_eq!(s.0.db.flush().unwrap(), 0, "reads wrote to the log");
        s.close().await.unwrap();
    });
}

#[test]
fn reads_stay_consistent_while_a_path_is_overwritten_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), cfg(64, None)).unwrap();
    let u = pk(4);
    smol::block_on(s.create_user(&u, None, 0)).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, u, done) = (s.clone(), u, done.clone());
        std::thread::spawn(move || {
            smol::block_on(async {
                for i in 0..150u32 {
                    // Alternate inline and blob bodies of different content, and deletes.
                    match i % 3 {
                        0 => put(&s, &u, "/pub/race", &[i as u8; 10]).await.unwrap(),
                        1 => put(&s, &u, "/pub/race", &vec![i as u8; 3000])
                            .await
                            .unwrap(),
                        _ => s.delete(&u, &p("/pub/race"), 1).await.unwrap(),
                    }
                }
            });
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let (mut seen_inline, mut seen_blob) = (0, 0);
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        match s.read(&u, &p("/pub/race")).unwrap() {
            None => {}
            Some((meta, Content::Inline(b))) => {
                assert_eq!(*blake3::hash(&b).as_bytes(), meta.hash);
                seen_inline += 1;
            }
            Some((meta, Content::File(mut f))) => {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut v).unwrap();
                assert_eq!(v.len() as u64, meta.len);
                assert_eq!(*blake3::hash(&v).as_bytes(), meta.hash);
                seen_blob += 1;
            }
        }
    }
    writer.join().unwrap();
    assert!(seen_inline + seen_blob > 0, "the reader saw some versions");
}

#[test]
fn per_user_event_index_and_rebuild() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (pk(1), pk(2));
        {
            let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
            s.create_user(&a, None, 0).await.unwrap();
            s.create_user(&b, None, 0).await.unwrap();
            put(&s, &a, "/pub/1", b"x").await.unwrap();
            put(&s, &b, "/pub/2", b"x").await.unwrap();
            put(&s, &a, "/priv/3", b"x").await.unwrap();
            s.delete(&a, &p("/pub/1"), 2).await.unwrap();
            assert_eq!(s.event_head(), 4);
            let fwd = Scan {
                cursor: None,
                reverse: false,
                limit: 10,
            };
            let ids =
                |v: Vec<(u64, EventRecord)>| v.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
            assert_eq!(
                ids(s.scan_user_events(&a, fwd, |_| true).unwrap().events),
                [1, 3, 4]
            );
            let public = |e: &EventRecord| e.path.starts_with("/pub/");
            assert_eq!(
                ids(s.scan_user_events(&a, fwd, public).unwrap().events),
                [1, 4]
            );
            let rev = Scan {
                cursor: Some(4),
                reverse: true,
                limit: 1,
            };
            assert_eq!(
                ids(s.scan_user_events(&a, rev, |_| true).unwrap().events),
                [3]
            );
            assert_eq!(ids(s.scan_events(fwd, public).unwrap().events), [1, 2, 4]);
            let public_ids = |s: &Store, after| ids(s.public_events_after(after, 10).unwrap());
            assert_eq!(public_ids(&s, 0), [1, 2, 4]);
            assert_eq!(public_ids(&s, 2), [4]);
            // indexes written by an older version are missing: drop them and reopen
            s.0.t.user_events.clear().unwrap();
            s.0.t.pub_events.clear().unwrap();
            s.0.t.meta.remove(b"pub_events_indexed").unwrap();
            s.close().await.unwrap();
        }
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let fwd = Scan {
            cursor: Some(1),
            reverse: false,
            limit: 10,
        };
        let got: Vec<u64> = s
            .scan_user_events(&a, fwd, |_| true)
            .unwrap()
            .events
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(got, [3, 4]);
        assert_eq!(s.event_head(), 4);
        let public: Vec<u64> = s
            .public_events_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(public, [1, 2, 4]);
    });
}

#[test]
fn a_scan_that_finds_nothing_stops_at_its_budget_and_says_how_far_it_got() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let a = pk(1);
        s.create_user(&a, None, 0).await.unwrap();
        let n = SCAN_BUDGET as u64 * 2 + 10;
        for i in 0..n {
            put(&s, &a, &format!("/priv/{i}"), b"x").await.unwrap();
        }
        let nothing = |e: &EventRecord| e.path.starts_with("/pub/nowhere/");
        let mut scan = Scan {
            cursor: None,
            reverse: false,
            limit: 10,
        };
        let mut rounds = 0;
        loop {
            let page = s.scan_user_events(&a, scan, nothing).unwrap();
            assert!(page.events.is_empty());
            rounds += 1;
            if page.exhausted {
                break;
            }
            assert_eq!(page.examined_to, Some(rounds * SCAN_BUDGET as u64));
            scan.cursor = page.examined_to;
        }
        assert_eq!(rounds, 3);
        // the same over all users, and in reverse
        let page = s.scan_events(scan, nothing).unwrap();
        assert!(page.exhausted && page.events.is_empty());
        let back = Scan {
            cursor: None,
            reverse: true,
            limit: 10,
        };
        let page = s.scan_events(back, nothing).unwrap();
        assert_eq!(page.examined_to, Some(n - SCAN_BUDGET as u64 + 1));
        assert!(!page.exhausted);
        // the public feed does not walk private events at all
        assert!(s.public_events_after(0, 10).unwrap().is_empty());
        put(&s, &a, "/pub/late", b"x").await.unwrap();
        let feed = s.public_events_after(0, 10).unwrap();
        assert_eq!(feed.len(), 1);
        assert_eq!(feed[0].0, n + 1);
    });
}

#[test]
fn legacy_timestamp_cursors_find_their_place() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), cfg(1024, None)).unwrap();
        let u = pk(3);
        s.create_user(&u, None, 0).await.unwrap();
        assert_eq!(s.event_cursor_at(u64::MAX).unwrap(), 0, "no events yet");
        // Events 1..=9 created at 100, 200, … 900 µs.
        for i in 1..=9u64 {
            let staged = s.upload().finish().await.unwrap();
            let path = p(&format!("/pub/{i}"));
            s.put(&u, &path, staged, "text/plain", i * 100)
                .await
                .unwrap();
        }
        let at = |t| s.event_cursor_at(t).unwrap();
        assert_eq!(at(0), 0);
        assert_eq!(at(99), 0);
        assert_eq!(at(100), 1);
        assert_eq!(at(450), 4);
        assert_eq!(at(900), 9);
        assert_eq!(at(u64::MAX), 9);
    })
}

//! Events over HTTP: the plain-text `GET /events/` feed, and `GET /events-stream` (Server-
//! Sent Events): its query rules and the checks that run, in the spec's order, before
//! `event_stream::open` starts the stream (the admin listener opens it with wider rights).

use std::time::Instant;

use hyper::{header, Response, StatusCode};

use super::body::Body;
use super::event_stream::{open, Revocation, Source};
use super::head::Head;
use super::query::{ListQuery, StreamQuery};
use super::response::ApiError;
use super::App;
use crate::account::{access, Caller, CookiePolicy};
use crate::storage_path::StoragePath;
use crate::store::EventKind;

/// `GET /events/`: public events of all users after `cursor`, as text lines.
pub async fn feed(app: &App, q: ListQuery) -> Result<Response<Body>, ApiError> {
    let cursor = match q.cursor.as_deref() {
        None => 0,
        Some(c) => event_cursor(app, c).map_err(|_| ApiError::bad_request("Invalid cursor"))?,
    };
    let start = Instant::now();
    let events = {
        // Off the request threads, under the same permits as the streams' scans.
        let _permit = app.streams.scan_permit().await;
        let (store, limit) = (app.store.clone(), q.limit);
        smol::unblock(move || store.public_events_after(cursor, limit)).await?
    };
    app.metrics.events_query(start.elapsed());
    app.metrics.events_examined(events.len() as u64);
    let mut out = String::with_capacity(events.len() * 100);
    for (_, e) in &events {
        let kind = match e.kind {
            EventKind::Put => "PUT",
            EventKind::Del => "DEL",
        };
        out.push_str(&format!("{kind} pubky://{}{}\n", e.user, e.path));
    }
    if let Some((last, _)) = events.last() {
        out.push_str(&format!("cursor: {last}"));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(out))
        .map_err(super::response::internal)
}

/// An event cursor: an event id, or a legacy 13-character timestamp (what older servers
/// handed out), which stands for the last event created at or before that moment.
fn event_cursor(app: &App, c: &str) -> Result<u64, ApiError> {
    if let Ok(id) = c.parse::<u64>() {
        return Ok(id);
    }
    let micros = crate::clock::parse_timestamp(c)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid cursor: {c}")))?;
    Ok(app.store.event_cursor_at(micros)?)
}

/// `GET /events-stream`: validates in the spec's order, then opens the stream.
pub fn stream(app: &App, head: &Head, q: StreamQuery) -> Result<Response<Body>, ApiError> {
    let tenant = (q.users.len() == 1).then(|| q.users[0].0);
    let caller = Caller::resolve(
        &app.store,
        &head.creds,
        tenant.as_ref(),
        CookiePolicy::OnlyWithoutBearer,
        crate::clock::now_secs(),
    )?;
    let filters = if q.paths.is_empty() {
        // Invariant: "/pub/" is a canonical directory path.
        vec![StoragePath::strict("/pub/").expect("canonical")]
    } else {
        q.paths.clone()
    };
    for f in &filters {
        access::authorize_filter(f, caller.as_ref(), tenant.as_ref())?;
    }
    let mut users = Vec::with_capacity(q.users.len());
    for (pk, _) in &q.users {
        if app.store.user(pk)?.is_none() {
            return Err(ApiError::not_found());
        }
    }
    for (pk, c) in &q.users {
        let cursor = c.as_deref().map(|c| event_cursor(app, c)).transpose()?;
        users.push((*pk, cursor));
    }
    // A private stream ends when the credential that opened it stops resolving.
    let guard = match (&caller, filters.iter().any(StoragePath::is_private), tenant) {
        (Some(c), true, Some(t)) => Some(Revocation {
            creds: head.creds.clone(),
            tenant: t,
            user: c.user,
        }),
        _ => None,
    };
    let source = Source::Users(users);
    open(app, source, filters, &q, guard, head.peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::event_stream::format_event;
    use crate::pubkey::PublicKey;
    use crate::store::EventRecord;

    const PK: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
    const PK2: &str = "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no";

    fn err(q: &str) -> String {
        StreamQuery::parse(Some(q), false)
            .map(|_| ())
            .unwrap_err()
            .0
            .into_owned()
    }

    #[test]
    fn stream_query_rules() {
        let q = StreamQuery::parse(
            Some(&format!(
                "user={PK}:42&user={PK2}&user={PK}&user=&live=1&limit=5&path=pub/a/&path="
            )),
            false,
        )
        .unwrap();
        assert_eq!(q.users.len(), 2);
        assert_eq!(q.users[0].1.as_deref(), Some("42"));
        assert_eq!(q.users[1].1, None);
        assert!(q.live && !q.reverse);
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.paths[0].as_str(), "/pub/a/");
        assert!(
            !StreamQuery::parse(Some(&format!("user={PK}&live")), false)
                .unwrap()
                .live
        );
        assert_eq!(err(""), "user parameter is required");
        assert_eq!(err("user="), "user parameter is required");
        assert_eq!(err("user=abc"), "Invalid public key: abc");
        assert_eq!(
            err(&format!("user=pubky{PK}")),
            format!("Invalid public key: pubky{PK}")
        );
        assert_eq!(
            err(&format!("user={PK}&live=true&reverse=true")),
            "Cannot use live mode with reverse ordering"
        );
        assert_eq!(
            err(&format!("user={PK}&limit=0")),
            "limit must be at least 1"
        );
        assert_eq!(err(&format!("user={PK}&limit=x")), "Invalid limit: x");
        assert_eq!(
            err(&format!("user={PK}&limit=70000")),
            "Invalid limit: 70000"
        );
        assert!(err(&format!("user={PK}&path=/pub/../..")).starts_with("Invalid path"));
        let many: String = (0..51).map(|_| format!("user={PK}&")).collect();
        assert_eq!(err(&many), "Too many users. Maximum allowed: 50");
        // admin form: no user needed, `:` is part of nothing, global cursor
        let a = StreamQuery::parse(Some("cursor=7"), true).unwrap();
        assert_eq!(a.cursor.as_deref(), Some("7"));
        assert!(a.users.is_empty());
    }

    #[test]
    fn filters_and_format() {
        let covers = |f: &StoragePath, p: &str| StoragePath::covers_str(f.as_str(), p);
        let d = StoragePath::strict("/pub/my_folder/").unwrap();
        assert!(covers(&d, "/pub/my_folder/file.txt"));
        assert!(!covers(&d, "/pub/myfolder/file.txt"));
        let f = StoragePath::strict("/pub/test.txt").unwrap();
        assert!(covers(&f, "/pub/test.txt") && !covers(&f, "/pub/test.txt2"));
        let user = PublicKey::parse_z32(PK).unwrap();
        let mut out = String::new();
        let e = EventRecord {
            user,
            path: "/pub/a.txt".into(),
            kind: EventKind::Put,
            hash: Some(*blake3::hash(b"hello").as_bytes()),
            created_at: 0,
        };
        format_event(&mut out, 42, &e);
        assert_eq!(
            out,
            format!("event: PUT\ndata: pubky://{PK}/pub/a.txt\ndata: cursor: 42\ndata: content_hash: 6o8WPbOGgpJeRJHF5Y1Ls1Bu+MFOt4qG6QjFYkpnIA8=\n\n")
        );
        out.clear();
        let e = EventRecord {
            kind: EventKind::Del,
            hash: None,
            ..e
        };
        format_event(&mut out, 43, &e);
        assert_eq!(
            out,
            format!("event: DEL\ndata: pubky://{PK}/pub/a.txt\ndata: cursor: 43\n\n")
        );
    }
}

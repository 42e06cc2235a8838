//! The admin API on its own listener (§8): server info, signup tokens, users (list, show,
//! disable, enable), per-user quotas, deleting a public entry, the all-events stream and
//! store snapshots for backups, behind `X-Admin-Password`. The CLI (`pubky-edge admin …`) is its client. `/dav/…` is
//! WebDAV (`dav`), behind HTTP Basic with the same password.

use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::body::{read_limited, Body, BodyError};
use super::event_stream::{self, Source};
use super::query::form_decode;
use super::query::query_pairs;
use super::query::StreamQuery;
use super::quota_json as quota;
use super::response::json as json_response;
use super::response::ApiError;
use super::route::RouteError;
use super::App;
use crate::auth::secrets::{is_signup_token, new_signup_token};
use crate::clock;
use crate::pubkey::PublicKey;
use crate::storage_path::{percent_decode, StoragePath};
use crate::store::{QuotaOverrides, User};

/// Any request to the admin listener (`/info`, `/generate_signup_token`, `/users…`,
/// `/events-stream`, …): checks the password (wrong ones are throttled per address), then
/// routes.
pub async fn handle(app: &App, req: Request<Incoming>, peer: std::net::IpAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/" && req.method() == Method::GET {
        return super::response::text(StatusCode::OK, "Homeserver - Admin Endpoint");
    }
    if path == super::dav::PREFIX || path.starts_with("/dav/") {
        return super::dav::handle(app, req, peer).await;
    }
    let given = req.headers().get("x-admin-password").map(|v| v.as_bytes());
    let now = std::time::Instant::now();
    let checked = app.owner.verify(peer, given, now).await;
    let result = match checked.map_err(ApiError::from) {
        Err(e) => Err(e),
        Ok(()) => route(app, req, &path).await,
    };
    result.unwrap_or_else(ApiError::into_response)
}

fn only(allow: &'static str) -> ApiError {
    ApiError::from(RouteError::MethodNotAllowed(allow))
}

async fn route(app: &App, req: Request<Incoming>, path: &str) -> Result<Response<Body>, ApiError> {
    // HEAD is GET without the body (hyper drops it), except on the stream.
    let m = match req.method() {
        &Method::HEAD if path != "/events-stream" => Method::GET,
        m => m.clone(),
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if matches!(segs.as_slice(), ["info"] | ["signup_tokens"]) {
        // Tokens made by `pubky-edge token new` wait in the spool until imported.
        crate::account::spool::import(&app.store, &app.data_dir, clock::now_secs()).await;
    }
    match (segs.as_slice(), &m) {
        (["info"], &Method::GET) => info(app),
        (["info"], _) => Err(only("GET")),
        (["generate_signup_token"], &Method::GET) => {
            new_token(app, QuotaOverrides::default()).await
        }
        (["generate_signup_token"], &Method::POST) => {
            let q = read_quota(app, req, &QuotaOverrides::default()).await?;
            new_token(app, q).await
        }
        (["generate_signup_token"], _) => Err(only("GET, POST")),
        (["signup_tokens"], &Method::GET) => list_tokens(app, req.uri().query()),
        (["events-stream"], &Method::GET) => stream(app, req.uri().query()),
        (["events-stream"], _) => Err(only("GET")),
        (["users"], &Method::GET) => list_users(app, req.uri().query()),
        (["users", pk], &Method::GET) => {
            let (pk, user) = known_user(app, pk)?;
            json_response(StatusCode::OK, &user_item(app, &pk, &user)?)
        }
        (["users", pk, action @ ("disable" | "enable")], &Method::POST) => {
            let (pk, _) = known_user(app, pk)?;
            app.store.set_disabled(&pk, *action == "disable").await?;
            tracing::info!(user = %pk, action = *action, "admin changed a user");
            Ok(super::response::text(StatusCode::OK, "Ok"))
        }
        (["users", pk, "quota"], &Method::GET) => {
            let (pk, _) = known_user(app, pk)?;
            let q = app.store.quota_overrides(&pk)?;
            json_response(StatusCode::OK, &quota_pair(app, &q))
        }
        (["users", pk, "quota"], &Method::PATCH) => {
            let (pk, _) = known_user(app, pk)?;
            let base = app.store.quota_overrides(&pk)?;
            let q = read_quota(app, req, &base).await?;
            app.store.set_quota_overrides(&pk, &q).await?;
            Ok(super::response::empty(StatusCode::OK))
        }
        (["backup", "snapshot"], &Method::POST) => backup_snapshot(app).await,
        (["backup", "snapshot"], _) => Err(only("POST")),
        (["update", "restart"], &Method::POST) => restart_for_update(app),
        (["update", "restart"], _) => Err(only("POST")),
        (["standby", rest @ ..], m) => super::standby::admin(app, rest, m, req.uri().query()),
        (["webdav", pk, rest @ ..], &Method::DELETE) if !rest.is_empty() => {
            delete_entry(app, pk, &rest.join("/")).await
        }
        // Known paths, other methods: 405 with what they allow, as the reference answers.
        (["signup_tokens"] | ["users"] | ["users", _], _) => Err(only("GET")),
        (["users", _, "disable" | "enable"], _) => Err(only("POST")),
        (["users", _, "quota"], _) => Err(only("GET, PATCH")),
        (["webdav", _, rest @ ..], _) if !rest.is_empty() => Err(only("DELETE")),
        _ => Err(ApiError::not_found()),
    }
}

fn known_user(app: &App, pk: &str) -> Result<(PublicKey, User), ApiError> {
    let pk = PublicKey::parse_z32(pk).map_err(|_| ApiError::bad_request("Invalid public key"))?;
    let user = app.store.user(&pk)?.ok_or_else(ApiError::not_found)?;
    Ok((pk, user))
}

/// Reads a JSON quota object and merges it over `base` (422 when invalid).
async fn read_quota(
    app: &App,
    req: Request<Incoming>,
    base: &QuotaOverrides,
) -> Result<QuotaOverrides, ApiError> {
    let limits = &app.config.limits;
    let body = read_limited(
        req.into_body(),
        limits.max_json_body_bytes,
        limits.body_pace,
    )
    .await
    .map_err(|e| match e {
        BodyError::TooLarge => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Body too large"),
        other => ApiError::from(other),
    })?;
    if body.is_empty() {
        return Ok(base.clone());
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Expected a JSON object"))?;
    quota::patch(base, obj).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))
}

fn quota_pair(app: &App, q: &QuotaOverrides) -> Value {
    json!({"effective": quota::effective_json(q, &app.config), "overrides": quota::overrides_json(q)})
}

/// ISO-8601 UTC without an offset, as the reference prints it.
fn iso(secs: u64) -> String {
    let s = clock::rfc3339(secs);
    format!("{}.000000", s.trim_end_matches('Z'))
}

fn user_item(app: &App, pk: &PublicKey, u: &User) -> Result<Value, ApiError> {
    let q = app.store.quota_overrides(pk)?;
    Ok(json!({
        "pubky": pk.to_z32(),
        "created_at": iso(u.created_at),
        "disabled": u.disabled,
        "used_bytes": u.used_bytes,
        "quota": quota_pair(app, &q),
    }))
}

/// `GET /info`
fn info(app: &App) -> Result<Response<Body>, ApiError> {
    let users = app.store.users()?;
    let tokens = app.store.signup_tokens()?;
    let used: u64 = users.iter().map(|(_, u)| u.used_bytes).sum();
    // §8: the announced endpoints (configured public values, else the listen ports).
    let pk = &app.config.pkdns;
    let tls_port = pk.announced_tls_port(app.config.drive.pubky_listen_socket.port());
    let http_port = pk.announced_http_port(app.config.drive.icann_listen_socket.port());
    let ip = pk
        .public_ip
        .unwrap_or(app.config.drive.pubky_listen_socket.ip());
    json_response(
        StatusCode::OK,
        &json!({
            "num_users": users.len(),
            "num_disabled_users": users.iter().filter(|(_, u)| u.disabled).count(),
            "total_disk_used_mb": used / (1 << 20),
            "num_signup_codes": tokens.len(),
            "num_unused_signup_codes": tokens.iter().filter(|(_, t, _)| t.used_by.is_none()).count(),
            "public_key": app.homeserver.to_z32(),
            "pkarr_pubky_address": (tls_port != 0)
                .then(|| std::net::SocketAddr::new(ip, tls_port).to_string()),
            "pkarr_icann_domain": pk
                .icann_domain
                .as_deref()
                .filter(|_| http_port != 0)
                .map(|d| format!("{d}:{http_port}")),
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

/// `GET|POST /generate_signup_token`
async fn new_token(app: &App, quota: QuotaOverrides) -> Result<Response<Body>, ApiError> {
    let token = new_signup_token();
    app.store
        .create_signup_token_with_quota(&token, &quota, clock::now_secs())
        .await?;
    let mut r = Response::new(Body::from(token));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

/// Shared `limit` rule of the admin lists: 1..65535, default 100, capped at 1000.
fn page_limit(v: Option<&str>) -> Result<usize, ApiError> {
    match v {
        None => Ok(100),
        Some(v) => match v.parse::<u16>() {
            Ok(0) | Err(_) => Err(ApiError::bad_request(format!("Invalid limit: {v}"))),
            Ok(n) => Ok(usize::from(n).min(1000)),
        },
    }
}

fn params(query: Option<&str>) -> Vec<(String, String)> {
    query_pairs(query.unwrap_or(""))
        .map(|(k, v)| (k.to_string(), form_decode(v)))
        .collect()
}

fn param<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `GET /signup_tokens?limit=&cursor=&state=`
fn list_tokens(app: &App, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let p = params(query);
    let limit = page_limit(param(&p, "limit"))?;
    let cursor = param(&p, "cursor").filter(|c| !c.is_empty());
    if cursor.is_some_and(|c| !is_signup_token(c)) {
        return Err(ApiError::bad_request("Invalid cursor"));
    }
    let state = param(&p, "state").unwrap_or("all");
    if !["all", "used", "unused"].contains(&state) {
        return Err(ApiError::bad_request(format!("Invalid state: {state}")));
    }
    let users = app.store.users()?;
    let mut items: Vec<Value> = Vec::new();
    let mut more = false;
    for (token, t, q) in app.store.signup_tokens()? {
        if cursor.is_some_and(|c| token.as_str() <= c)
            || (state == "used" && t.used_by.is_none())
            || (state == "unused" && t.used_by.is_some())
        {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        let used_at = t.used_by.and_then(|by| {
            users
                .iter()
                .find(|(pk, _)| *pk == by)
                .map(|(_, u)| iso(u.created_at))
        });
        items.push(json!({
            "token": token,
            "created_at": iso(t.created_at),
            "used_at": used_at,
            "used_by": t.used_by.map(|k| k.to_z32()),
            "quota": quota::overrides_json(&q),
        }));
    }
    let next = if more {
        items.last().map(|i| i["token"].clone())
    } else {
        None
    };
    json_response(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": next}),
    )
}

/// `GET /users?limit=&cursor=&state=&sort_by=&reverse=`
fn list_users(app: &App, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let p = params(query);
    let limit = page_limit(param(&p, "limit"))?;
    let state = param(&p, "state").unwrap_or("all");
    let mut users: Vec<(PublicKey, User)> = match state {
        "all" => app.store.users()?,
        "enabled" | "disabled" => app
            .store
            .users()?
            .into_iter()
            .filter(|(_, u)| u.disabled == (state == "disabled"))
            .collect(),
        other => return Err(ApiError::bad_request(format!("Invalid state: {other}"))),
    };
    match param(&p, "sort_by").unwrap_or("created_at") {
        "created_at" => users.sort_by_key(|(pk, u)| (u.created_at, *pk.as_bytes())),
        "used_bytes" => users.sort_by_key(|(pk, u)| (u.used_bytes, *pk.as_bytes())),
        other => return Err(ApiError::bad_request(format!("Invalid sort_by: {other}"))),
    }
    match param(&p, "reverse") {
        None | Some("false") => {}
        Some("true") => users.reverse(),
        Some(other) => return Err(ApiError::bad_request(format!("Invalid reverse: {other}"))),
    }
    let start = match param(&p, "cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => {
            let pk =
                PublicKey::parse_z32(c).map_err(|_| ApiError::bad_request("Unknown cursor"))?;
            users
                .iter()
                .position(|(k, _)| *k == pk)
                .ok_or_else(|| ApiError::bad_request("Unknown cursor"))?
                + 1
        }
    };
    let page: Vec<&(PublicKey, User)> = users.iter().skip(start).take(limit).collect();
    let more = users.len() > start + page.len();
    let items = page
        .iter()
        .map(|(pk, u)| user_item(app, pk, u))
        .collect::<Result<Vec<_>, _>>()?;
    let next = more
        .then(|| page.last().map(|(pk, _)| pk.to_z32()))
        .flatten();
    json_response(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": next}),
    )
}

/// `DELETE /webdav/{pk}/pub/{path}`: removes a public file regardless of
/// `allowed_write_paths`; emits a DEL event and frees quota like any delete.
async fn delete_entry(app: &App, pk: &str, rest: &str) -> Result<Response<Body>, ApiError> {
    let pk = PublicKey::parse_z32(pk).map_err(|_| ApiError::bad_request("Invalid public key"))?;
    let decoded = percent_decode(rest).map_err(|_| ApiError::bad_request("Invalid path"))?;
    let path = StoragePath::strict(&format!("/{decoded}"))
        .map_err(|e| ApiError::bad_request(format!("Invalid path: {e}")))?;
    if !path.is_public() || path.is_dir() {
        return Err(ApiError::bad_request(
            "Only files under /pub/ can be deleted",
        ));
    }
    app.store.delete(&pk, &path, clock::now_micros()).await?;
    tracing::info!(user = %pk, path = %path, "admin deleted an entry");
    Ok(super::response::empty(StatusCode::NO_CONTENT))
}

/// `GET /events-stream` (admin): every event, private ones included, optionally narrowed
/// to users and paths, from one global cursor.
/// A backup in progress holds this; one at a time.
static SNAPSHOT_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct SnapshotSlot;

impl Drop for SnapshotSlot {
    fn drop(&mut self) {
        SNAPSHOT_HELD.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// `POST /backup/snapshot`: takes a store snapshot for `pubky-edge backup create` (on the
/// `POST /update/restart`: the server stops and exits to be started again by the service
/// manager, when `pubky-edge update now|rollback` changed what the next start runs.
fn restart_for_update(app: &App) -> Result<Response<Body>, ApiError> {
    let slots = crate::update::slots::Slots::at(&app.data_dir);
    let next = match slots.trial() {
        Some(t) => format!(
            "The server restarts into {}; it must report healthy within {} s, or the previous version comes back by itself",
            t.version,
            app.config.update.health_deadline.as_secs()
        ),
        None => "The server restarts".to_string(),
    };
    tracing::info!("restart requested through the admin API");
    crate::update::launch::RESTART.raise();
    Ok(super::response::text(StatusCode::ACCEPTED, next))
}

/// same machine: it reads the dump and the blob files it names from the data directory).
/// The answer is one JSON line ([`crate::backup::point::SnapshotInfo`]), then a newline
/// every few seconds for as long as the client keeps the connection: the snapshot (its
/// dump file and its pin on the blobs) lives exactly that long.
async fn backup_snapshot(app: &App) -> Result<Response<Body>, ApiError> {
    use std::sync::atomic::Ordering;
    if SNAPSHOT_HELD.swap(true, Ordering::AcqRel) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "A backup is already being made",
        ));
    }
    let slot = SnapshotSlot;
    let store = app.store.clone();
    let snap = smol::unblock(move || store.snapshot()).await?;
    let info = crate::backup::point::SnapshotInfo::of(&snap, app.store.blob_dir());
    tracing::info!(
        event_seq = info.event_seq,
        records = info.records,
        paused_ms = info.paused_ms,
        "snapshot taken for a backup"
    );
    let first = format!(
        "{}\n",
        serde_json::to_string(&info).map_err(super::response::internal)?
    );
    let state = (Some(first), snap, slot);
    let body = smol::stream::unfold(state, |(first, snap, slot)| async move {
        let chunk = match first {
            Some(line) => line,
            None => {
                smol::Timer::after(std::time::Duration::from_secs(5)).await;
                "\n".to_string()
            }
        };
        Some((Ok(bytes::Bytes::from(chunk)), (None, snap, slot)))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Stream(Box::pin(body)))
        .map_err(super::response::internal)
}

fn stream(app: &App, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let q = StreamQuery::parse(query, true)?;
    for (pk, _) in &q.users {
        if app.store.user(pk)?.is_none() {
            return Err(ApiError::not_found());
        }
    }
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::bad_request("Invalid cursor"))
        })
        .transpose()?;
    let source = Source::Global {
        users: q.users.iter().map(|(pk, _)| *pk).collect(),
        cursor,
    };
    event_stream::open(app, source, q.paths.clone(), &q, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso(1_700_000_000), "2023-11-14T22:13:20.000000");
    }
}

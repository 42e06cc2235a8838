//! `/standby/v1/…` on the client listeners (what a paired standby reads; the table is in
//! `standby::wire`), and the admin API's `/standby` (pairing codes, the paired standby,
//! unpairing). The rules are in `standby`; this only carries them.

use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use smol::future::FutureExt;

use super::body::{read_limited, Body};
use super::query::query_pairs;
use super::response::{json, no_store, ApiError};
use super::App;
use crate::standby::pairing::PairErrorBox;
use crate::standby::wire::{PairRequest, MAX_BATCH, MAX_WAIT_MS, PREFIX};
use crate::standby::{feed, Mode};

/// Any request under [`PREFIX`].
pub async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path()[PREFIX.len()..].to_string();
    let tls = req
        .extensions()
        .get::<super::ConnInfo>()
        .is_some_and(|c| c.tls);
    let r = if !tls {
        // The token and the homeserver's sealed key travel only where the standby checked
        // it reached the homeserver key.
        Err(ApiError::forbidden(
            "The standby protocol is spoken over PubkyTLS only",
        ))
    } else if path == "pair" {
        if req.method() == Method::POST {
            pair(app, req).await
        } else {
            Err(ApiError::from(super::route::RouteError::MethodNotAllowed(
                "POST",
            )))
        }
    } else if req.method() != Method::GET {
        Err(ApiError::from(super::route::RouteError::MethodNotAllowed(
            "GET",
        )))
    } else if !authorized(app, &req) {
        Err(ApiError::unauthorized("Not the paired standby"))
    } else {
        let query = req.uri().query().unwrap_or("").to_string();
        match path.as_str() {
            "events" => {
                let r = events(app, &query).await;
                // Unpaired (or taken over) while the request waited: nothing more given.
                if authorized(app, &req) {
                    r
                } else {
                    Err(ApiError::unauthorized("Not the paired standby"))
                }
            }
            "tables" => tables(app, &req).await,
            "snapshot" => snapshot(app).await,
            p => match p.strip_prefix("blob/") {
                Some(hex) => blob(app, hex),
                None => Err(ApiError::not_found()),
            },
        }
    };
    r.map(no_store).unwrap_or_else(ApiError::into_response)
}

fn authorized(app: &App, req: &Request<Incoming>) -> bool {
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| crate::auth::secrets::bearer_from_header(v.as_bytes()));
    // Only the box that accepts writes hands out its log.
    token.is_some_and(|t| app.pairing.authorized(t)) && app.role.get() == Mode::Primary
}

fn octets(bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    r
}

/// `POST pair`: spends a pairing code.
async fn pair(app: &App, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if app.role.get() != Mode::Primary {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "This box is not the primary",
        ));
    }
    let limits = &app.config.limits;
    let body = read_limited(
        req.into_body(),
        limits.max_json_body_bytes,
        limits.body_pace,
    )
    .await?;
    let pr: PairRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid pairing request: {e}")))?;
    let seed = || -> anyhow::Result<[u8; 32]> {
        let id = crate::identity::Identity::load_existing(&app.data_dir)?;
        Ok(id.signing_key().to_bytes())
    };
    let now = crate::clock::now_secs();
    match app.pairing.pair(&pr, seed, now) {
        Ok(reply) => json(StatusCode::OK, &reply),
        Err(e) => match e.downcast_ref::<PairErrorBox>() {
            Some(b) => Err(ApiError::forbidden(b.to_string())),
            None => Err(super::response::internal(e)),
        },
    }
}

/// `GET events?after=&limit=&wait_ms=`: the next batch, after waiting for one.
async fn events(app: &App, query: &str) -> Result<Response<Body>, ApiError> {
    let mut after = 0u64;
    let mut limit = MAX_BATCH;
    let mut wait_ms = 0u64;
    for (k, v) in query_pairs(query) {
        let n = || {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("Invalid {k}")))
        };
        match k {
            "after" => after = n()?,
            "limit" => limit = n()? as usize,
            "wait_ms" => wait_ms = n()?.min(MAX_WAIT_MS),
            _ => {}
        }
    }
    let store = &app.store;
    // It writes the position down (and syncs it every few seconds): off the async threads.
    let (pairing, head) = (app.pairing.clone(), store.event_head());
    let now = crate::clock::now_secs();
    let (lag, secs) = smol::unblock(move || pairing.record_position(after, head, now)).await;
    app.metrics.set_standby_lag(lag, secs);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let wake = store.event_wake(None);
    if store.event_head() <= after && Instant::now() < deadline {
        // One wait: a publish, the shutdown's wake-up of every subscriber, or the deadline.
        wake.or(async {
            smol::Timer::at(deadline).await;
        })
        .await;
    }
    let s = store.clone();
    let batch = smol::unblock(move || feed::batch(&s, after, limit)).await?;
    // Invariant: the wire types are plain structs, which postcard always encodes.
    Ok(octets(
        postcard::to_allocvec(&batch).expect("a batch encodes"),
    ))
}

/// `GET tables`: the accounts, sessions and tokens, unless the standby has them.
async fn tables(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let s = app.store.clone();
    let (dump, tag) = smol::unblock(move || feed::tables(&s)).await?;
    let theirs = req.headers().get(hyper::header::IF_NONE_MATCH);
    if theirs.is_some_and(|t| t.as_bytes() == tag.as_bytes()) {
        return Ok(super::response::empty(StatusCode::NOT_MODIFIED));
    }
    let mut r = octets(dump);
    r.headers_mut().insert(
        hyper::header::ETAG,
        hyper::header::HeaderValue::from_str(&tag).map_err(super::response::internal)?,
    );
    Ok(r)
}

/// `GET snapshot`: the whole store as one dump (the standby's first copy).
async fn snapshot(app: &App) -> Result<Response<Body>, ApiError> {
    let s = app.store.clone();
    let snap = smol::unblock(move || s.snapshot()).await?;
    let file = std::fs::File::open(&snap.dump).map_err(super::response::internal)?;
    tracing::info!(
        events = snap.event_seq,
        bytes = snap.dump_bytes,
        "the standby takes a first copy"
    );
    let mut r = Response::new(Body::file(file, snap.dump_bytes));
    // The open file outlives the dump's name, which goes with the snapshot.
    r.headers_mut().insert(
        "x-event-seq",
        hyper::header::HeaderValue::from(snap.event_seq),
    );
    Ok(r)
}

/// `GET blob/<hex>`
fn blob(app: &App, hex: &str) -> Result<Response<Body>, ApiError> {
    let (file, len) = feed::blob(&app.store, hex).ok_or_else(ApiError::not_found)?;
    Ok(Response::new(Body::file(file, len)))
}

/// The admin API's `/standby…`: `GET` the paired standby, `POST code[?takeover=true]` a
/// new pairing code, `DELETE` unpairs.
pub fn admin(
    app: &App,
    rest: &[&str],
    method: &Method,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    match (rest, method) {
        ([], &Method::GET) => {
            let standby = app.pairing.standby().map(|s| {
                serde_json::json!({
                    "takeover": s.takeover,
                    "paired_at": crate::clock::rfc3339(s.paired_at),
                    "position": s.position,
                    "head": app.store.event_head(),
                    "lag_events": app.store.event_head().saturating_sub(s.position),
                    "last_seen": (s.last_seen > 0).then(|| crate::clock::rfc3339(s.last_seen)),
                })
            });
            let mode = format!("{:?}", app.role.get()).to_lowercase();
            json(
                StatusCode::OK,
                &serde_json::json!({ "mode": mode, "head": app.store.event_head(), "standby": standby }),
            )
        }
        ([], &Method::DELETE) => {
            let had = app.pairing.revoke().map_err(super::response::internal)?;
            json(StatusCode::OK, &serde_json::json!({ "unpaired": had }))
        }
        (["code"], &Method::POST) => {
            if app.role.get() != Mode::Primary {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "Only the primary makes pairing codes",
                ));
            }
            let takeover = query_pairs(query.unwrap_or(""))
                .any(|(k, v)| k == "takeover" && (v == "true" || v == "1"));
            let now = crate::clock::now_secs();
            let code = app
                .pairing
                .new_code(&app.homeserver, takeover, now)
                .map_err(super::response::internal)?;
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "code": code,
                    "takeover": takeover,
                    "expires_at": crate::clock::rfc3339(now + crate::standby::pairing::CODE_LIFETIME_SECS),
                }),
            )
        }
        ([], _) => Err(ApiError::from(super::route::RouteError::MethodNotAllowed(
            "GET, DELETE",
        ))),
        (["code"], _) => Err(ApiError::from(super::route::RouteError::MethodNotAllowed(
            "POST",
        ))),
        _ => Err(ApiError::not_found()),
    }
}

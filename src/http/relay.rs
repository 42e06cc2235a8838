//! `GET`/`PUT /pkarr/<z32>`: the pkarr relay protocol over the device's DHT client (logic in
//! `announce::relay`). Served on the ICANN listener under `/pkarr/` and, when
//! `pkarr_relay.listen_socket` is set, at the root of a listener of its own.

use std::time::{Duration, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{read_limited, Body, BodyError};
use super::head::Head;
use super::query::BadQuery;
use super::response::ApiError;
use super::route;
use super::App;
use crate::announce::relay::{Policy, Relay, RelayError, MAX_PAYLOAD};
use crate::pubkey::PublicKey;

/// Content type pkarr relays answer with.
const PAYLOAD_TYPE: &str = "application/pkarr.org/relays#payload";

impl From<RelayError> for ApiError {
    fn from(e: RelayError) -> ApiError {
        let status = match e {
            RelayError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RelayError::BadPacket(_) | RelayError::FutureTimestamp => StatusCode::BAD_REQUEST,
            RelayError::NotMostRecent => StatusCode::CONFLICT,
            RelayError::DhtUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

/// `GET`/`HEAD`/`PUT /pkarr/<z32>`: a signed packet from the cache or the DHT, or a new
/// one stored and put on the DHT.
pub async fn handle(
    relay: Option<&Relay>,
    head: &Head,
    body: Incoming,
    key: PublicKey,
    put: bool,
    policy: Result<Policy, BadQuery>,
    pace: crate::limits::body::BodyPace,
) -> Result<Response<Body>, ApiError> {
    let relay = relay.ok_or_else(ApiError::not_found)?;
    if put {
        let payload = read_limited(body, MAX_PAYLOAD, pace)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => ApiError::from(RelayError::TooLarge),
                other => ApiError::from(other),
            })?;
        let stored = relay
            .put(&key, &payload, crate::clock::now_micros())
            .await?;
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::NO_CONTENT;
        if let Some(n) = stored {
            r.headers_mut()
                .insert("pkarr-dht-stored-nodes", HeaderValue::from(n));
        }
        return Ok(r);
    }
    let policy = if head.no_cache {
        // A bad `policy` is refused even when `no-cache` overrides it.
        policy?;
        Policy::NetworkOnly
    } else {
        policy?
    };
    let packet = relay
        .get(&key, policy)
        .await
        .ok_or_else(ApiError::not_found)?;
    let modified = UNIX_EPOCH + Duration::from_micros(packet.timestamp().as_u64());
    let ims = head.conditional.if_modified_since();
    let last_modified = httpdate::fmt_http_date(modified);
    let mut r = match ims {
        // HTTP dates have one-second resolution: not modified if within that second.
        Some(since) if modified < since + Duration::from_secs(1) => {
            let mut r = Response::new(Body::Empty);
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }
        _ => {
            let payload = packet.to_relay_payload();
            let mut r = if head.is_head {
                let mut r = Response::new(Body::Empty);
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(payload.len()));
                r
            } else {
                Response::new(Body::from(payload))
            };
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PAYLOAD_TYPE));
            r
        }
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        h.insert(header::LAST_MODIFIED, v);
    }
    let max_age = packet.ttl(300, 86_400);
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    Ok(r)
}

/// The relay at the root of its own listener (`/<z32>`), with CORS, and nothing else.
pub async fn handle_root(app: &App, req: Request<Incoming>) -> Response<Body> {
    let cors = super::response::CorsRequest::of(req.headers());
    let result = if req.method() == Method::OPTIONS {
        Ok(super::response::empty(StatusCode::OK))
    } else {
        let key = req.uri().path().trim_start_matches('/').to_string();
        match route::relay(req.method(), &key, req.uri().query()) {
            Ok(route::Endpoint::Relay { key, put, policy }) => {
                let conn = req.extensions().get::<super::ConnInfo>();
                let head = Head::read(req.method(), req.uri().query(), req.headers(), conn);
                let relay = app.relay.as_deref();
                let pace = app.config.limits.body_pace;
                handle(relay, &head, req.into_body(), key, put, policy, pace).await
            }
            Ok(_) => Err(ApiError::not_found()),
            Err(e) => Err(ApiError::from(e)),
        }
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    cors.apply(&mut resp);
    resp
}

//! `GET`/`PUT /pkarr/<z32>`: the pkarr relay protocol over the device's DHT client (logic in
//! `announce::relay`). Served on the ICANN listener under `/pkarr/` and, when
//! `pkarr_relay.listen_socket` is set, at the root of a listener of its own.

use std::time::{Duration, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{read_limited, Body, BodyError};
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

pub async fn handle(
    relay: Option<&Relay>,
    req: Request<Incoming>,
    key: PublicKey,
    put: bool,
) -> Result<Response<Body>, ApiError> {
    let relay = relay.ok_or_else(ApiError::not_found)?;
    if put {
        let payload = read_limited(req.into_body(), MAX_PAYLOAD)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => ApiError::from(RelayError::TooLarge),
                other => ApiError::bad_request(other.to_string()),
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
    let policy = match super::query::query_pairs(req.uri().query().unwrap_or(""))
        .find(|(k, _)| *k == "policy")
        .map(|(_, v)| v)
    {
        None => Policy::default(),
        Some(v) => Policy::parse(v).ok_or_else(|| {
            ApiError::bad_request("policy must be CacheFirst, CacheOnly or NetworkOnly")
        })?,
    };
    let policy = if no_cache(&req) {
        Policy::NetworkOnly
    } else {
        policy
    };
    let packet = relay
        .get(&key, policy)
        .await
        .ok_or_else(ApiError::not_found)?;
    let modified = UNIX_EPOCH + Duration::from_micros(packet.timestamp().as_u64());
    let ims = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
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
            let mut r = if req.method() == Method::HEAD {
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

fn no_cache(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|d| d.trim() == "no-cache"))
}

/// The relay at the root of its own listener (`/<z32>`), with CORS, and nothing else.
pub async fn handle_root(app: &App, req: Request<Incoming>) -> Response<Body> {
    let cors = super::response::CorsRequest::of(req.headers());
    let result = if req.method() == Method::OPTIONS {
        Ok(super::response::empty(StatusCode::OK))
    } else {
        let key = req.uri().path().trim_start_matches('/').to_string();
        match route::relay(req.method(), &key) {
            Ok(route::Endpoint::Relay { key, put }) => {
                handle(app.relay.as_deref(), req, key, put).await
            }
            Ok(_) => Err(ApiError::not_found()),
            Err(e) => Err(ApiError::from(e)),
        }
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    cors.apply(&mut resp);
    resp
}

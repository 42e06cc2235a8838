//! The client API over HTTP/1.1: `server` accepts connections (cap, timeouts, drain;
//! `capacity` counts them; `rt` is the hyper↔smol glue; `body` the bodies), `route` turns each request into an `Endpoint`, and the endpoint families (`storage`,
//! `listing`, `grant`) do the work against the store. CORS is applied here, outermost,
//! to every response.

pub mod admin;
pub mod bandwidth;
pub mod body;
pub mod capacity;
pub mod cookie;
pub mod error;
pub mod event_stream;
pub mod events;
pub mod grant;
pub mod listing;
pub mod operator;
pub mod quota;
pub mod relay;
pub mod route;
pub mod rt;
pub mod server;
pub mod session;
pub mod storage;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

pub use body::{next_chunk, read_limited, Body, BodyError, FileBody};
pub use capacity::ConnStats;
pub use server::{serve, Acceptor, ConnInfo, PlainTcp, ServerLimits};

use self::error::ApiError;
use self::route::Endpoint;
use crate::auth::auth_token::ReplayGuard;
use crate::auth::token::is_signup_token;
use crate::config::{Config, SignupMode};
use crate::metrics::{Metrics, RouteClass};
use crate::pubkey::PublicKey;
use crate::ratelimit::{Limiter, Verdict};
use crate::store::Store;

/// Everything a request handler may touch.
pub struct App {
    pub store: Store,
    pub config: Config,
    pub homeserver: PublicKey,
    pub data_dir: PathBuf,
    /// The pkarr relay (`/pkarr/<z32>`), unless disabled.
    pub relay: Option<Arc<crate::announce::relay::Relay>>,
    /// Counters and gauges for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Open event streams (cap and shutdown).
    pub streams: Arc<event_stream::Streams>,
    /// Spent AuthTokens (cookie sign-in is single use).
    pub replay: ReplayGuard,
    /// Request-count limits.
    pub limiter: Limiter,
    /// Bandwidth buckets.
    pub throttle: Arc<crate::ratelimit::Throttle>,
}

/// Features advertised in `/info`: only what is implemented.
pub const FEATURES: &[&str] = &["path-addressed-storage", "grant-proof-logout"];

/// Handles one client request end to end.
pub async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let preflight = preflight_headers(&req);
    let routed = route::route(
        req.method(),
        req.uri().path(),
        req.uri().query(),
        req.headers(),
    );
    let start = std::time::Instant::now();
    let class = routed.as_ref().map_or(RouteClass::Other, route_class);
    let mut resp = match routed {
        Err(e) => ApiError::from(e).into_response(),
        Ok(ep) => match rate_limit(app, &req, &ep) {
            Err(e) => e.into_response(),
            Ok(()) => dispatch(app, req, ep)
                .await
                .unwrap_or_else(ApiError::into_response),
        },
    };
    app.metrics
        .request(class, resp.status().as_u16(), start.elapsed());
    cors(&mut resp, origin, preflight);
    resp
}

type Preflight = (Option<HeaderValue>, Option<HeaderValue>);

fn preflight_headers(req: &Request<Incoming>) -> Preflight {
    (
        req.headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .cloned(),
        req.headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned(),
    )
}

fn route_class(ep: &Endpoint) -> RouteClass {
    match ep {
        Endpoint::Storage { op, .. } => match op {
            route::StorageOp::Get | route::StorageOp::Head => RouteClass::StorageRead,
            _ => RouteClass::StorageWrite,
        },
        Endpoint::EventFeed | Endpoint::EventStream => RouteClass::Events,
        Endpoint::GrantSignup
        | Endpoint::GrantSessionCreate
        | Endpoint::GrantSessionGet
        | Endpoint::GrantSessionDelete
        | Endpoint::GrantList
        | Endpoint::GrantRevoke { .. }
        | Endpoint::CookieSignup
        | Endpoint::CookieSessionCreate
        | Endpoint::CookieSessionGet
        | Endpoint::CookieSessionDelete => RouteClass::Auth,
        _ => RouteClass::Other,
    }
}

/// §10.1: request-count limits, checked after routing (the tenant is known) and before
/// any work. `/info` and preflights are exempt.
fn rate_limit(app: &App, req: &Request<Incoming>, ep: &Endpoint) -> Result<(), ApiError> {
    let (path, tenant) = match ep {
        Endpoint::Info | Endpoint::Preflight => return Ok(()),
        Endpoint::Storage {
            path,
            tenant,
            addressing: route::Addressing::Path,
            ..
        } => (path.as_str(), *tenant),
        Endpoint::Storage { tenant, .. } => (req.uri().path(), *tenant),
        _ => (
            req.uri().path(),
            route::legacy_tenant(req.headers(), req.uri().query()),
        ),
    };
    let ip = req
        .extensions()
        .get::<ConnInfo>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.peer.ip());
    let r = crate::ratelimit::Request {
        method: req.method().as_str(),
        path,
        ip,
        tenant,
    };
    match app.limiter.check(&r, std::time::Instant::now()) {
        Verdict::Allow => Ok(()),
        Verdict::NoUser => Err(ApiError::bad_request(
            "Failed to extract user for rate limiting",
        )),
        Verdict::Limited(secs) => {
            app.metrics.rate_limited();
            Err(ApiError::rate_limited(secs))
        }
    }
}

async fn dispatch(
    app: &App,
    req: Request<Incoming>,
    ep: Endpoint,
) -> Result<Response<Body>, ApiError> {
    match ep {
        Endpoint::Root => Ok(text(StatusCode::OK, "Pubky Homeserver")),
        Endpoint::Preflight => Ok(storage::empty(StatusCode::OK)),
        Endpoint::Info => {
            let mut r = grant::json(StatusCode::OK, &serde_json::json!({ "features": FEATURES }))?;
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(r)
        }
        Endpoint::Storage {
            op,
            tenant,
            path,
            addressing,
        } => Ok(storage::handle(app, req, op, tenant, path, addressing).await),
        Endpoint::GrantSignup => grant::signup(app, req).await,
        Endpoint::GrantSessionCreate => grant::create_session(app, req).await,
        Endpoint::GrantSessionGet => grant::get_session(app, &req),
        Endpoint::GrantSessionDelete => grant::delete_session(app, req).await,
        Endpoint::GrantList => grant::list_grants(app, &req),
        Endpoint::GrantRevoke { gid } => grant::revoke(app, &req, &gid).await,
        Endpoint::SignupTokenStatus { token } => token_status(app, &token).await,
        Endpoint::Relay { key, put } => relay::handle(app.relay.as_deref(), req, key, put).await,
        Endpoint::EventFeed => events::feed(app, req.uri().query()),
        Endpoint::EventStream => events::stream(app, &req),
        Endpoint::CookieSignup => cookie::signup(app, req).await,
        Endpoint::CookieSessionCreate => cookie::create(app, req).await,
        Endpoint::CookieSessionGet => cookie::get(app, &req),
        Endpoint::CookieSessionDelete => cookie::delete(app, &req).await,
    }
}

/// `GET /signup_tokens/{token}`: whether a signup token is still valid.
async fn token_status(app: &App, token: &str) -> Result<Response<Body>, ApiError> {
    if app.config.general.signup_mode != SignupMode::TokenRequired {
        return Err(ApiError::bad_request("Signup tokens not required"));
    }
    if !is_signup_token(token) {
        return Err(ApiError::bad_request(format!(
            "Invalid signup token format: {token}"
        )));
    }
    let mut t = app.store.signup_token(token)?;
    if t.is_none() {
        crate::signup_tokens::import(&app.store, &app.data_dir, crate::clock::now_secs()).await;
        t = app.store.signup_token(token)?;
    }
    let t = t.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Token not found"))?;
    let status = if t.used_by.is_some() { "used" } else { "valid" };
    let mut r = grant::json(
        StatusCode::OK,
        &serde_json::json!({ "status": status, "created_at": crate::clock::rfc3339(t.created_at) }),
    )?;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The `signup_token` query parameter; a malformed one is a 400 even in open mode.
pub fn signup_token_param(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(v) = route::query_pairs(query.unwrap_or(""))
        .find(|(k, _)| *k == "signup_token")
        .map(|(_, v)| listing::form_decode(v))
    else {
        return Ok(None);
    };
    if !is_signup_token(&v) {
        return Err(ApiError::bad_request(format!(
            "Invalid signup token format: {v}"
        )));
    }
    Ok(Some(v))
}

pub fn text(status: StatusCode, s: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::Full(bytes::Bytes::from_static(s.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Very permissive CORS with credentials: mirror the origin, and on preflight the requested
/// method and headers.
pub(crate) fn cors(resp: &mut Response<Body>, origin: Option<HeaderValue>, preflight: Preflight) {
    let h = resp.headers_mut();
    h.append(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    let Some(origin) = origin else { return };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after, lock-token, timeout"),
    );
    if let Some(m) = preflight.0 {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m);
    }
    if let Some(hs) = preflight.1 {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, hs);
    }
}

//! The client API over HTTP/1.1. Transport: `server` accepts connections (cap, timeouts,
//! drain; `capacity` counts them per listener; `rt` is the hyper↔smol glue; `body` the
//! bodies; `tls` PubkyTLS). Per request: `route` turns it into an `Endpoint` carrying its
//! parsed path and query (`query`), `head` reads the credentials and headers once, [`handle`]
//! checks the rate limit and runs the endpoint family (`storage`, `listing`, `grant`,
//! `cookie`, `events`/`event_stream`, `relay`), which asks `account` and `limits` and calls
//! the store; `response` maps every refusal to a status and applies CORS, outermost. The
//! operator listeners' handlers are `operator` (`admin`, `quota_json` for its quota objects).

pub mod admin;
pub mod bandwidth;
pub mod body;
pub mod capacity;
pub mod cookie;
pub mod dashboard;
pub mod dav;
pub mod event_stream;
pub mod events;
pub mod grant;
pub mod head;
pub mod listing;
pub mod lock;
pub mod operator;
pub mod proxy_protocol;
pub mod query;
pub mod quota_json;
pub mod relay;
pub mod response;
pub mod route;
pub mod rt;
pub mod server;
pub mod sniff;
pub mod standby;
pub mod storage;
pub mod tls;
pub mod website;

use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

pub use body::{read_limited, Body, BodyError, FileBody, PacedBody};
pub use capacity::ConnStats;
pub use server::{serve, Acceptor, ConnInfo, PlainTcp, ServerLimits};

use self::head::Head;
use self::response::{empty, json, no_store, text, ApiError, CorsRequest};
use self::route::Endpoint;
use crate::auth::auth_token::ReplayGuard;
use crate::auth::secrets::is_signup_token;
use crate::config::{Config, SignupMode};
use crate::limits::rate::{Limiter, Verdict};
use crate::metrics::{Metrics, RouteClass};
use crate::pubkey::PublicKey;
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
    pub streams: Arc<crate::limits::streams::Streams>,
    /// Spent AuthTokens (cookie sign-in is single use).
    pub replay: ReplayGuard,
    /// Request-count limits.
    pub limiter: Limiter,
    /// Bandwidth buckets.
    pub throttle: Arc<crate::limits::bandwidth::Throttle>,
    /// The owner's one secret (admin API, WebDAV, dashboard) and wrong tries per address.
    pub owner: Arc<crate::account::owner::Owner>,
    /// The owner's signed-in browsers (the dashboard).
    pub owner_sessions: crate::account::owner_sessions::OwnerSessions,
    /// Which Hosts name users' websites; `None` when `drive.websites` is off.
    pub sites: Option<route::Sites>,
    /// Live WebDAV write locks.
    pub locks: crate::account::locks::Locks,
    /// Empty folders made over the admin's WebDAV.
    pub dav_folders: dav::EmptyFolders,
    /// Whether this box accepts writes (primary), follows one (standby) or was taken over.
    pub role: Arc<crate::standby::Role>,
    /// This box's paired standby, as its primary.
    pub pairing: Arc<crate::standby::pairing::Pairing>,
}

impl App {
    pub fn new(
        store: Store,
        config: Config,
        homeserver: PublicKey,
        data_dir: PathBuf,
        relay: Option<Arc<crate::announce::relay::Relay>>,
        owner: crate::account::owner::Owner,
    ) -> App {
        let mode = crate::standby::starting_mode(&data_dir);
        let role = Arc::new(crate::standby::Role::new(mode));
        let pairing = Arc::new(crate::standby::pairing::Pairing::load(&data_dir));
        App {
            store,
            streams: crate::limits::streams::Streams::new(
                config.events.max_streams,
                config.events.max_streams_per_ip,
            ),
            limiter: Limiter::new(config.drive.rate_limits.clone()),
            sites: config.drive.websites.then(|| route::Sites {
                homeserver,
                domains: config.drive.website_domains.clone(),
            }),
            config,
            homeserver,
            data_dir,
            relay,
            metrics: Arc::new(Metrics::new()),
            replay: ReplayGuard::default(),
            throttle: Arc::default(),
            owner: Arc::new(owner),
            owner_sessions: Default::default(),
            locks: Default::default(),
            dav_folders: Default::default(),
            role,
            pairing,
        }
    }
}

/// Features advertised in `/info`: only what is implemented.
pub const FEATURES: &[&str] = &[
    "path-addressed-storage",
    "grant-proof-logout",
    "webdav-locks",
];

/// `/info`'s features: [`FEATURES`], plus `websites` when they are served.
pub fn features(app: &App) -> Vec<&'static str> {
    let mut f = FEATURES.to_vec();
    if app.sites.is_some() {
        f.push("websites");
    }
    f
}

fn hv(s: &'static str) -> hyper::header::HeaderValue {
    hyper::header::HeaderValue::from_static(s)
}

/// Handles one client request end to end.
pub async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path().starts_with(crate::standby::wire::PREFIX) {
        return standby::handle(app, req).await;
    }
    let cors = CorsRequest::of(req.headers());
    let event_stream = req.uri().path() == "/events-stream";
    let routed = route::route(
        req.method(),
        req.uri().path(),
        req.uri().query(),
        req.headers(),
        app.sites.as_ref(),
    );
    let start = std::time::Instant::now();
    let class = routed.as_ref().map_or(RouteClass::Other, route_class);
    // The pkarr relay forwards records signed by their owners: not this homeserver's data.
    let relay = matches!(routed, Ok(Endpoint::Relay { .. }));
    let refusal = app
        .role
        .refusal()
        .filter(|_| writes(req.method()) && !relay);
    let mut resp = match (routed, refusal) {
        (Err(e), _) => ApiError::from(e).into_response(),
        (Ok(_), Some(why)) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        (Ok(ep), None) => match rate_limit(app, &req, &ep) {
            Err(e) => e.into_response(),
            Ok(()) => {
                let conn = req.extensions().get::<ConnInfo>();
                let head = Head::read(req.method(), req.uri().query(), req.headers(), conn);
                dispatch(app, &head, req.into_body(), ep)
                    .await
                    .unwrap_or_else(ApiError::into_response)
            }
        },
    };
    app.metrics
        .request(class, resp.status().as_u16(), start.elapsed());
    if event_stream {
        // Every answer of the stream route, errors included: a private stream or its
        // refusal depends on the credentials and the tenant, so no cache may keep one.
        let h = resp.headers_mut();
        h.insert(hyper::header::CACHE_CONTROL, hv("no-store"));
        h.insert(hyper::header::VARY, hv("pubky-host, Authorization, Cookie"));
    }
    cors.apply(&mut resp);
    resp
}

/// Whether a request of this method changes something (refused on a standby).
fn writes(m: &hyper::Method) -> bool {
    !matches!(
        *m,
        hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
    )
}

fn route_class(ep: &Endpoint) -> RouteClass {
    match ep {
        Endpoint::Storage { op, .. } => match op {
            route::StorageOp::Get | route::StorageOp::Head => RouteClass::StorageRead,
            _ => RouteClass::StorageWrite,
        },
        Endpoint::Website(_) => RouteClass::StorageRead,
        Endpoint::EventFeed { .. } | Endpoint::EventStream { .. } => RouteClass::Events,
        Endpoint::GrantSignup { .. }
        | Endpoint::GrantSessionCreate
        | Endpoint::GrantSessionGet
        | Endpoint::GrantSessionDelete
        | Endpoint::GrantList
        | Endpoint::GrantRevoke { .. }
        | Endpoint::CookieSignup { .. }
        | Endpoint::CookieSessionCreate
        | Endpoint::CookieSessionGet { .. }
        | Endpoint::CookieSessionDelete { .. } => RouteClass::Auth,
        _ => RouteClass::Other,
    }
}

/// §10.1: request-count limits, checked after routing (the tenant is known and storage
/// paths are canonical) and before any work. `/info` and preflights are exempt.
fn rate_limit(app: &App, req: &Request<Incoming>, ep: &Endpoint) -> Result<(), ApiError> {
    let (path, tenant) = match ep {
        Endpoint::Info | Endpoint::Preflight => return Ok(()),
        // The canonical path the handler will authorise, in both addressing forms: a
        // spelling such as `//pub/x` or `/%70ub/x` cannot step around a `/pub/**` rule.
        Endpoint::Storage { path, tenant, .. } => (path.as_str(), *tenant),
        // A page is limited as the file it serves (a folder as its index.html).
        Endpoint::Website(site) => (site.target.as_str(), Some(site.owner)),
        _ => (
            req.uri().path(),
            route::legacy_tenant(req.headers(), req.uri().query()),
        ),
    };
    let ip = req
        .extensions()
        .get::<ConnInfo>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.client);
    let r = crate::limits::rate::Request {
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

/// Runs the endpoint's handler with its parsed inputs; only the body is left unread.
async fn dispatch(
    app: &App,
    head: &Head,
    body: Incoming,
    ep: Endpoint,
) -> Result<Response<Body>, ApiError> {
    match ep {
        Endpoint::Root => Ok(text(StatusCode::OK, "Pubky Homeserver")),
        Endpoint::Website(site) => Ok(website::serve(app, head, &site)),
        Endpoint::Preflight => Ok(empty(StatusCode::OK)),
        Endpoint::Info => Ok(no_store(json(
            StatusCode::OK,
            &serde_json::json!({ "features": features(app) }),
        )?)),
        Endpoint::Storage {
            op,
            tenant,
            path,
            addressing,
            list,
        } => {
            let target = storage::Target {
                op,
                tenant,
                path,
                addressing,
                list,
            };
            Ok(storage::handle(app, head, body, target).await)
        }
        Endpoint::GrantSignup { token } => grant::signup(app, head, body, token?).await,
        Endpoint::GrantSessionCreate => grant::create_session(app, head, body).await,
        Endpoint::GrantSessionGet => grant::get_session(app, head),
        Endpoint::GrantSessionDelete => grant::delete_session(app, head, body).await,
        Endpoint::GrantList => grant::list_grants(app, head),
        Endpoint::GrantRevoke { gid } => grant::revoke(app, head, &gid).await,
        Endpoint::SignupTokenStatus { token } => token_status(app, &token).await,
        Endpoint::Relay { key, put, policy } => {
            let pace = app.config.limits.body_pace;
            relay::handle(app.relay.as_deref(), head, body, key, put, policy, pace).await
        }
        Endpoint::EventFeed { query } => events::feed(app, query?).await,
        Endpoint::EventStream { query } => events::stream(app, head, query?),
        Endpoint::CookieSignup { token } => cookie::signup(app, head, body, token?).await,
        Endpoint::CookieSessionCreate => cookie::create(app, head, body).await,
        Endpoint::CookieSessionGet { tenant } => cookie::get(app, head, tenant),
        Endpoint::CookieSessionDelete { tenant } => cookie::delete(app, head, tenant).await,
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
    let now = crate::clock::now_secs();
    let t = crate::account::spool::find(&app.store, &app.data_dir, token, now)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Token not found"))?;
    let status = if t.used_by.is_some() { "used" } else { "valid" };
    Ok(no_store(json(
        StatusCode::OK,
        &serde_json::json!({ "status": status, "created_at": crate::clock::rfc3339(t.created_at) }),
    )?))
}

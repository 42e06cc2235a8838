//! The household's dashboard on its own listener: claim the box, sign in, see that it
//! works, invite people by QR code, manage them, read what happened.
//!
//! **LAN only by construction.** A request is refused unless its sender is on a loopback,
//! private (RFC 1918, IPv6 ULA) or link-local address, and unless its `Host` is one of the
//! box's own names (`pubky-xxxx.local`, the host name, `localhost`, `dashboard.hosts`) or an
//! IP literal, so a page on the internet cannot reach it through DNS rebinding. The
//! listener is never among the ports the router is asked to forward.
//!
//! **Sessions and forms.** The owner's password is [`crate::account::owner`]'s one secret.
//! A signed-in browser holds an `HttpOnly`, `SameSite=Strict` cookie; every state-changing
//! form carries its session's CSRF token, and the two forms before a session (claim, sign
//! in) carry a token that must match a cookie set with the form. A POST whose `Origin` is
//! not this page's is refused. Pages are rendered on the server (`home`, `pages`,
//! with their `frame`) and work without JavaScript; the only script is the copy buttons'.
//!
//! Here: the listener's state and routing. [`guard`] holds the LAN and origin rules,
//! `sign_in` claiming and signing in, `forms` what a signed-in owner's forms do.

mod forms;
mod frame;
pub mod guard;
mod home;
mod pages;
pub mod qr;
mod sign_in;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use smol::Executor;

use super::body::{read_limited, Body};
use super::query::{form_decode, query_pairs};
use super::response::text as plain;
use super::{App, ConnInfo};
use crate::announce::reachability::Resolution;
use crate::metrics::RouteClass;
use guard::{lan_peer, own_host, same_origin, secure_headers};
pub use sign_in::signed_out;
use sign_in::{claim, login, pre_ok, with_pre};

pub(super) const SESSION_COOKIE: &str = "pe_session";
pub(super) const PRE_COOKIE: &str = "pe_pre";
/// Largest form body accepted.
const MAX_FORM: usize = 16 * 1024;
/// How long a lookup of the box's own record on the DHT is trusted.
const RECORD_TTL: Duration = Duration::from_secs(600);

/// The dashboard listener's own state.
pub struct Dashboard {
    ex: Arc<Executor<'static>>,
    started: Instant,
    /// The local PubkyTLS port (the verdict names it in its fix).
    tls_port: u16,
    /// The last lookup of the box's record on the DHT and when it finished.
    record: Mutex<Option<(Instant, Resolution)>>,
    looking_up: AtomicBool,
}

impl Dashboard {
    pub fn new(ex: &Arc<Executor<'static>>, tls_port: u16) -> Arc<Dashboard> {
        Arc::new(Dashboard {
            ex: ex.clone(),
            started: Instant::now(),
            tls_port,
            record: Mutex::new(None),
            looking_up: AtomicBool::new(false),
        })
    }

    /// The cached record lookup; starts a new one in the background when stale (it ends
    /// within its timeout, so it never holds up a shutdown for long).
    fn record(self: &Arc<Self>, app: &Arc<App>) -> Option<Resolution> {
        let cached = self
            .record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < RECORD_TTL);
        if !fresh && app.config.pkdns.dht && !self.looking_up.swap(true, Ordering::AcqRel) {
            let (app, me) = (app.clone(), self.clone());
            self.ex
                .spawn(async move {
                    let timeout = Duration::from_secs(20);
                    let r = crate::announce::reachability::resolve(
                        &app.config,
                        &app.homeserver,
                        timeout,
                    )
                    .await;
                    *me.record.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((Instant::now(), r));
                    me.looking_up.store(false, Ordering::Release);
                })
                .detach();
        }
        cached.map(|(_, r)| r)
    }
}

/// Any request to the dashboard listener.
pub async fn handle(
    app: &Arc<App>,
    dash: &Arc<Dashboard>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<Body> {
    let start = Instant::now();
    let peer = conn.peer.ip();
    let resp = if !lan_peer(peer) {
        plain(
            StatusCode::FORBIDDEN,
            "The dashboard answers only this home network.",
        )
    } else if !own_host(app, req.headers()) {
        plain(
            StatusCode::MISDIRECTED_REQUEST,
            "Unknown host name: use this box's own name or address.",
        )
    } else {
        route(app, dash, req, peer).await
    };
    app.metrics
        .request(RouteClass::Admin, resp.status().as_u16(), start.elapsed());
    secure_headers(resp)
}

/// What a request carries that the pages need.
pub struct Visit {
    pub peer: IpAddr,
    pub query: Vec<(String, String)>,
    pub session: Option<crate::account::owner_sessions::OwnerSession>,
    cookies: Vec<(String, String)>,
    agent: String,
}

impl Visit {
    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn cookies(h: &HeaderMap) -> Vec<(String, String)> {
    super::head::cookie_pairs(h)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A decoded `application/x-www-form-urlencoded` body.
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

async fn route(
    app: &Arc<App>,
    dash: &Arc<Dashboard>,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let now = crate::clock::now_secs();
    let cookies = cookies(req.headers());
    let session = cookies
        .iter()
        .find(|(k, _)| k == SESSION_COOKIE)
        .and_then(|(_, v)| app.owner_sessions.get(v, now));
    let visit = Visit {
        peer,
        query: query_pairs(req.uri().query().unwrap_or(""))
            .map(|(k, v)| (k.to_string(), form_decode(v)))
            .collect(),
        session,
        agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        cookies,
    };
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET | Method::HEAD, "/style.css") => asset(
            include_str!("templates/style.css"),
            "text/css; charset=utf-8",
        ),
        (Method::GET | Method::HEAD, "/copy.js") => asset(
            include_str!("templates/copy.js"),
            "text/javascript; charset=utf-8",
        ),
        (Method::GET | Method::HEAD, "/favicon.ico") => plain(StatusCode::NOT_FOUND, "none"),
        (Method::GET | Method::HEAD, p) => get(app, dash, &visit, p),
        (Method::POST, p) => {
            if !same_origin(req.headers()) {
                return plain(
                    StatusCode::FORBIDDEN,
                    "This form was sent from another site.",
                );
            }
            let form = match read_form(app, req).await {
                Ok(f) => f,
                Err(r) => return r,
            };
            post(app, &visit, p, &form).await
        }
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            r
        }
    }
}

fn asset(text: &'static str, kind: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

async fn read_form(app: &App, req: Request<Incoming>) -> Result<Form, Response<Body>> {
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !kind.starts_with("application/x-www-form-urlencoded") {
        return Err(plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Forms only."));
    }
    let body = read_limited(req.into_body(), MAX_FORM, app.config.limits.body_pace)
        .await
        .map_err(|_| plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
    let text = String::from_utf8_lossy(&body);
    Ok(Form(
        query_pairs(&text)
            .map(|(k, v)| (form_decode(k), form_decode(v)))
            .collect(),
    ))
}

pub fn redirect(to: &str) -> Response<Body> {
    let mut r = super::response::empty(StatusCode::SEE_OTHER);
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn get(app: &Arc<App>, dash: &Arc<Dashboard>, visit: &Visit, path: &str) -> Response<Body> {
    if !app.owner.claimed() {
        return match path {
            "/" => with_pre(|pre| pages::claim(app, pre, None, StatusCode::OK)),
            _ => redirect("/"),
        };
    }
    let Some(session) = &visit.session else {
        return match path {
            "/login" => with_pre(|pre| pages::login(pre, None, StatusCode::OK)),
            _ => redirect("/login"),
        };
    };
    match path {
        "/" => {
            let record = dash.record(app);
            home::home(
                app,
                session,
                dash.started.elapsed(),
                record,
                dash.tls_port,
                visit,
            )
        }
        "/login" | "/claim" => redirect("/"),
        "/invites" => pages::invites(app, session, visit, None),
        "/people" => pages::people(app, session, visit, None),
        "/people/delete" => pages::confirm_delete(app, session, visit),
        "/activity" => pages::activity(app, session, visit),
        "/settings" => pages::settings(app, session, visit, None),
        _ => pages::not_found(app, session),
    }
}

async fn post(app: &Arc<App>, visit: &Visit, path: &str, form: &Form) -> Response<Body> {
    let now = crate::clock::now_secs();
    match path {
        "/claim" => {
            if !pre_ok(visit, form) {
                return plain(StatusCode::FORBIDDEN, "The form expired: reload the page.");
            }
            claim(app, visit, form, now).await
        }
        "/login" => {
            if !pre_ok(visit, form) {
                return plain(StatusCode::FORBIDDEN, "The form expired: reload the page.");
            }
            login(app, visit, form, now).await
        }
        _ => {
            let Some(session) = &visit.session else {
                return redirect("/login");
            };
            if form.get("csrf") != Some(session.csrf.as_str()) {
                return plain(StatusCode::FORBIDDEN, "The form expired: reload the page.");
            }
            forms::act(app, session, visit, path, form, now).await
        }
    }
}

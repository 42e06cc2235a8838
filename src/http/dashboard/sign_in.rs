//! Before a session: claiming the box and signing in (each form carries a token tied to a
//! cookie set with it), then the session cookie itself and signing out.

use std::sync::Arc;
use std::time::Instant;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::{pages, redirect, Form, Visit, PRE_COOKIE, SESSION_COOKIE};
use crate::account::operator::Refused;
use crate::account::owner::ClaimError;
use crate::http::body::Body;
use crate::http::App;

fn set_cookie(r: &mut Response<Body>, name: &str, value: &str, max_age: u64) {
    let c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A page before any session (claim, sign in) with its form token, set as a cookie too.
pub(super) fn with_pre(render: impl FnOnce(&str) -> Response<Body>) -> Response<Body> {
    let pre = crate::auth::secrets::new_cookie_secret();
    let mut r = render(&pre);
    set_cookie(&mut r, PRE_COOKIE, &pre, 3600);
    r
}

pub(super) fn pre_ok(visit: &Visit, form: &Form) -> bool {
    matches!((visit.cookie(PRE_COOKIE), form.get("pre")), (Some(c), Some(f)) if !c.is_empty() && c == f)
}

pub(super) async fn claim(app: &Arc<App>, visit: &Visit, form: &Form, now: u64) -> Response<Body> {
    let new = form.get("new").filter(|n| !n.is_empty());
    let error = if !app.owner.claim_needs_configured() && form.get("again") != new {
        Some(ClaimError::Weak("the two passwords differ".into()))
    } else {
        // Hashing takes about a second on a small board: off the executor.
        let owner = app.owner.clone();
        let (peer, configured) = (visit.peer, form.get("configured").map(str::to_string));
        let new = new.map(str::to_string);
        smol::unblock(move || {
            owner.claim(peer, configured.as_deref(), new.as_deref(), Instant::now())
        })
        .await
        .err()
    };
    match error {
        None => signed_in(app, visit, now, "/?n=claimed"),
        Some(ClaimError::AlreadyClaimed) => redirect("/login"),
        Some(e) => {
            let status = match e {
                ClaimError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                ClaimError::Wrong => StatusCode::UNAUTHORIZED,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            with_pre(|pre| pages::claim(app, pre, Some(capitalised(&e.to_string())), status))
        }
    }
}

pub(super) async fn login(app: &Arc<App>, visit: &Visit, form: &Form, now: u64) -> Response<Body> {
    let given = form.get("password").map(str::as_bytes);
    match app.owner.verify(visit.peer, given, Instant::now()).await {
        Ok(()) => signed_in(app, visit, now, "/"),
        Err(e) => {
            let (status, text) = match e {
                Refused::Throttled(s) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many wrong passwords from this device: try again in {s} s."),
                ),
                _ => (
                    StatusCode::UNAUTHORIZED,
                    "That is not the password.".to_string(),
                ),
            };
            tracing::info!(peer = %visit.peer, "dashboard sign-in refused");
            with_pre(|pre| pages::login(pre, Some(text), status))
        }
    }
}

fn signed_in(app: &App, visit: &Visit, now: u64, to: &str) -> Response<Body> {
    let ttl = app.config.dashboard.session_ttl.as_secs();
    let (cookie, _) = app.owner_sessions.open(visit.peer, &visit.agent, now, ttl);
    let mut r = redirect(to);
    set_cookie(&mut r, SESSION_COOKIE, &cookie, ttl);
    set_cookie(&mut r, PRE_COOKIE, "", 0);
    tracing::info!(peer = %visit.peer, "the owner signed in to the dashboard");
    r
}

/// Ends the cookie in the browser too (sign out).
pub fn signed_out(to: &str) -> Response<Body> {
    let mut r = redirect(to);
    set_cookie(&mut r, SESSION_COOKIE, "", 0);
    r
}

pub(super) fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}

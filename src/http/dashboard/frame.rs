//! What every page shares: its frame (the box's name, the navigation, the notice or the
//! error), rendering a template into a response, and how sizes, times and keys are shown.

use std::time::Duration;

use askama::Template;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::Visit;
use crate::account::owner_sessions::OwnerSession;
use crate::http::body::Body;
use crate::http::App;
use crate::pubkey::PublicKey;

/// What every page's frame shows.
pub struct Frame {
    pub title: &'static str,
    pub name: String,
    pub version: &'static str,
    pub signed_in: bool,
    pub csrf: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

pub(super) fn box_name(app: &App) -> String {
    let h = crate::announce::mdns::host_name(&app.homeserver);
    h.trim_end_matches('.')
        .trim_end_matches(".local")
        .to_string()
}

pub(super) fn frame(
    app: &App,
    title: &'static str,
    session: Option<&OwnerSession>,
    visit: Option<&Visit>,
) -> Frame {
    Frame {
        title,
        name: box_name(app),
        version: env!("CARGO_PKG_VERSION"),
        signed_in: session.is_some(),
        csrf: session.map(|s| s.csrf.clone()).unwrap_or_default(),
        notice: visit.and_then(|v| v.param("n")).and_then(notice),
        error: None,
    }
}

/// A signed-in page's frame showing `error` if any, and the status that goes with it.
pub(super) fn frame_with(
    app: &App,
    title: &'static str,
    session: &OwnerSession,
    visit: &Visit,
    error: Option<String>,
) -> (Frame, StatusCode) {
    let status = match error {
        Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::OK,
    };
    let f = Frame {
        error,
        ..frame(app, title, Some(session), Some(visit))
    };
    (f, status)
}

fn notice(code: &str) -> Option<String> {
    Some(
        match code {
            "claimed" => "This box is yours now. Next: invite your family.",
            "revoked" => "The invitation was revoked.",
            "disable" => "The account is disabled: it can read nothing and write nothing.",
            "enable" => "The account is enabled again.",
            "quota" => "The storage quota was set.",
            "deleted" => "The person's data was deleted.",
            "password" => "The password was changed. Sign in with the new one.",
            "ended" => "The browser was signed out.",
            "update-now" => "The box is looking for an update; when it finds one it installs it and restarts (a minute or two). Reload this page to see.",
            "update-off" => "This box cannot look for updates: it has no release key, or the DHT is off.",
            "standby" => "This box does not take changes: it is a standby, or another box took over (see Health). Invite and manage people on the box that serves the homeserver.",
            "held" => "Automatic updates are held until you let the box update itself again.",
            "resumed" => "The box updates itself again, within its update window.",
            _ => return None,
        }
        .into(),
    )
}

pub(super) fn page(t: &impl Template, status: StatusCode) -> Response<Body> {
    match t.render() {
        Ok(html) => {
            let mut r = Response::new(Body::from(html));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "a dashboard page did not render");
            crate::http::response::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page did not render.",
            )
        }
    }
}

/// "1.5 MB" (binary multiples, as quotas are counted).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

/// "2026-12-03 14:22 UTC".
pub fn when(secs: u64) -> String {
    let s = crate::clock::rfc3339(secs);
    format!("{} {} UTC", &s[..10], &s[11..16])
}

pub(super) fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} seconds"),
        120..=7199 => format!("{} minutes", s / 60),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

pub(super) fn short(pk: &PublicKey) -> String {
    pk.to_z32()[..8].to_string()
}

pub(super) fn usage(used: u64, quota: Option<u64>, app: &App) -> String {
    let quota = quota.or(app.config.storage.default_quota_mb.map(|mb| mb << 20));
    match quota {
        Some(q) if q != u64::MAX => format!("{} of {}", size(used), size(q)),
        _ => format!("{} (no limit)", size(used)),
    }
}

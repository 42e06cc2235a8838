//! The dashboard's pages besides home ([`super::home`]): claim, sign in, invitations,
//! people, activity, settings, and the paging of their lists; what their forms do is
//! [`super::forms`], their frame [`super::frame`]. Templates are askama's, compiled into
//! the binary from `templates/`; every value is HTML-escaped unless marked `safe` (only the
//! QR SVGs, which are made here).

use askama::Template;
use hyper::{Response, StatusCode};

use super::frame::{frame, frame_with, page, short, size, usage, when, Frame};
use super::{qr, redirect, Visit};
use crate::account::owner::MIN_PASSWORD;
use crate::account::owner_sessions::OwnerSession;
use crate::http::body::Body;
use crate::http::App;
use crate::pubkey::PublicKey;
use crate::store::{Limit, Scan};

#[derive(Template)]
#[template(path = "claim.html")]
struct Claim {
    f: Frame,
    pre: String,
    configured: bool,
    min: usize,
}

pub fn claim(app: &App, pre: &str, error: Option<String>, status: StatusCode) -> Response<Body> {
    let mut f = frame(app, "Claim", None, None);
    f.error = error;
    let t = Claim {
        f,
        pre: pre.into(),
        configured: app.owner.claim_needs_configured(),
        min: MIN_PASSWORD,
    };
    page(&t, status)
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    f: Frame,
    pre: String,
}

pub fn login(pre: &str, error: Option<String>, status: StatusCode) -> Response<Body> {
    let f = Frame {
        title: "Sign in",
        name: "pubky-edge".into(),
        version: env!("CARGO_PKG_VERSION"),
        signed_in: false,
        csrf: String::new(),
        notice: None,
        error,
    };
    page(&Login { f, pre: pre.into() }, status)
}

struct NewInvite {
    link: String,
    token: String,
    qr: String,
}

struct InviteRow {
    token: String,
    created: String,
    used_by: Option<String>,
    used_at: Option<String>,
    quota: Option<String>,
}

#[derive(Template)]
#[template(path = "invites.html")]
struct Invites {
    f: Frame,
    new: Option<NewInvite>,
    invites: Vec<InviteRow>,
    pager: Pager,
    default_quota: Option<u64>,
}

/// The link Pubky Ring scans to sign up on this homeserver with a token.
pub fn invite_link(homeserver: &PublicKey, token: &str) -> String {
    format!(
        "pubkyauth://direct_signup?hs={}&st={token}",
        homeserver.to_z32()
    )
}

pub fn invites(
    app: &App,
    session: &OwnerSession,
    visit: &Visit,
    error: Option<String>,
) -> Response<Body> {
    let tokens = app.store.signup_tokens().unwrap_or_default();
    let users = app.store.users().unwrap_or_default();
    let new = visit.param("new").and_then(|t| {
        tokens
            .iter()
            .find(|(tok, st, _)| tok == t && st.used_by.is_none())
            .map(|(tok, _, _)| {
                let link = invite_link(&app.homeserver, tok);
                NewInvite {
                    qr: qr::svg(&link, "QR code of the invitation"),
                    link,
                    token: tok.clone(),
                }
            })
    });
    let mut rows: Vec<InviteRow> = tokens
        .iter()
        .map(|(tok, st, q)| InviteRow {
            token: tok.clone(),
            created: when(st.created_at),
            used_by: st.used_by.map(|k| short(&k)),
            used_at: st.used_by.and_then(|by| {
                users
                    .iter()
                    .find(|(pk, _)| *pk == by)
                    .map(|(_, u)| when(u.created_at))
            }),
            quota: match q.storage {
                Some(Limit::Mb(mb)) => Some(format!("{mb} MB of storage")),
                Some(Limit::Unlimited) => Some("unlimited storage".into()),
                None => None,
            },
        })
        .collect();
    // Newest first (tokens are stored in token order).
    let created: std::collections::HashMap<&str, u64> = tokens
        .iter()
        .map(|(t, st, _)| (t.as_str(), st.created_at))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(created.get(r.token.as_str()).copied().unwrap_or(0)));
    let at = page_param(visit);
    let pager = pager("/invites?", at, INVITES_PER_PAGE, rows.len());
    let rows: Vec<InviteRow> = rows
        .into_iter()
        .skip(at * INVITES_PER_PAGE)
        .take(INVITES_PER_PAGE)
        .collect();
    let (f, status) = frame_with(app, "Invitations", session, visit, error);
    let t = Invites {
        f,
        new,
        invites: rows,
        pager,
        default_quota: app.config.storage.default_quota_mb,
    };
    page(&t, status)
}

struct Person {
    key: String,
    short: String,
    created: String,
    usage: String,
    quota_mb: String,
    last: String,
    disabled: bool,
}

/// People on one page (each takes about 1.3 KB of HTML: 25 keep the page under 50 KiB).
const PEOPLE_PER_PAGE: usize = 25;
/// Invitations listed on one page.
const INVITES_PER_PAGE: usize = 50;
/// Log lines and events on the activity page, and the longest text shown of each.
const LOG_LINES: usize = 80;
const EVENTS: usize = 30;
const SHOWN_CHARS: usize = 300;

/// Links to the pages before and after this one (`base` ends in `?` or `&`).
struct Pager {
    prev: Option<String>,
    next: Option<String>,
    what: String,
}

fn pager(base: &str, page: usize, per: usize, total: usize) -> Pager {
    let pages = total.div_ceil(per).max(1);
    Pager {
        prev: (page > 0).then(|| format!("{base}page={}", page - 1)),
        next: (page + 1 < pages).then(|| format!("{base}page={}", page + 1)),
        what: format!("page {} of {pages}", page + 1),
    }
}

fn page_param(visit: &Visit) -> usize {
    visit
        .param("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
        .min(100_000)
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[derive(Template)]
#[template(path = "people.html")]
struct People {
    f: Frame,
    people: Vec<Person>,
    pager: Pager,
}

pub fn people(
    app: &App,
    session: &OwnerSession,
    visit: &Visit,
    error: Option<String>,
) -> Response<Body> {
    let mut users = app.store.users().unwrap_or_default();
    users.sort_by_key(|(_, u)| u.created_at);
    let at = page_param(visit);
    let pager = pager("/people?", at, PEOPLE_PER_PAGE, users.len());
    let people = users
        .iter()
        .skip(at * PEOPLE_PER_PAGE)
        .take(PEOPLE_PER_PAGE)
        .map(|(pk, u)| {
            let q = app.store.quota_overrides(pk).unwrap_or_default();
            Person {
                key: pk.to_z32(),
                short: short(pk),
                created: when(u.created_at),
                usage: usage(u.used_bytes, u.quota_bytes, app),
                quota_mb: match q.storage {
                    Some(Limit::Mb(mb)) => mb.to_string(),
                    _ => String::new(),
                },
                last: match crate::account::people::last_activity(&app.store, pk) {
                    Ok(Some(us)) => when(us / 1_000_000),
                    _ => "nothing written yet".into(),
                },
                disabled: u.disabled,
            }
        })
        .collect();
    let (f, status) = frame_with(app, "People", session, visit, error);
    page(&People { f, people, pager }, status)
}

#[derive(Template)]
#[template(path = "delete.html")]
struct Delete {
    f: Frame,
    key: String,
    short: String,
    usage: String,
}

pub fn confirm_delete(app: &App, session: &OwnerSession, visit: &Visit) -> Response<Body> {
    let Some((pk, u)) = visit
        .param("user")
        .and_then(|k| PublicKey::parse_z32(k).ok())
        .and_then(|pk| app.store.user(&pk).ok().flatten().map(|u| (pk, u)))
    else {
        return redirect("/people");
    };
    let t = Delete {
        f: frame(app, "People", Some(session), Some(visit)),
        key: pk.to_z32(),
        short: short(&pk),
        usage: size(u.used_bytes),
    };
    page(&t, StatusCode::OK)
}

#[derive(Template)]
#[template(path = "activity.html")]
struct Activity {
    f: Frame,
    events: Vec<(String, &'static str, String)>,
    levels: Vec<(&'static str, &'static str)>,
    level: &'static str,
    lines: Vec<(String, &'static str, String)>,
}

pub fn activity(app: &App, session: &OwnerSession, visit: &Visit) -> Response<Body> {
    use tracing::Level;
    let scan = Scan {
        cursor: None,
        reverse: true,
        limit: EVENTS,
    };
    let events = app
        .store
        .scan_events(scan, |e| e.path.starts_with("/pub/"))
        .map(|p| p.events)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, e)| {
            let kind = match e.kind {
                crate::store::EventKind::Put => "PUT",
                crate::store::EventKind::Del => "DEL",
            };
            (
                when(e.created_at / 1_000_000),
                kind,
                shorten(&format!("pubky://{}{}", e.user.to_z32(), e.path)),
            )
        })
        .collect();
    let level = match visit.param("level") {
        Some("error") => Level::ERROR,
        Some("warn") => Level::WARN,
        Some("debug") => Level::DEBUG,
        _ => Level::INFO,
    };
    let lines = crate::runtime::logging::recent(level, LOG_LINES)
        .into_iter()
        .map(|l| {
            let lv = match l.level {
                Level::ERROR => "ERROR",
                Level::WARN => "WARN",
                Level::INFO => "INFO",
                Level::DEBUG => "DEBUG",
                Level::TRACE => "TRACE",
            };
            (
                crate::clock::rfc3339(l.at_secs)[11..19].to_string(),
                lv,
                shorten(&l.text),
            )
        })
        .collect();
    let t = Activity {
        f: frame(app, "Activity", Some(session), Some(visit)),
        events,
        levels: vec![
            ("error", "Errors"),
            ("warn", "Warnings and worse"),
            ("info", "Everything"),
            ("debug", "Everything, with details"),
        ],
        level: match level {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::DEBUG => "debug",
            _ => "info",
        },
        lines,
    };
    page(&t, StatusCode::OK)
}

struct SessionRow {
    id: String,
    since: String,
    from: String,
    agent: String,
    this: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct Settings {
    f: Frame,
    sessions: Vec<SessionRow>,
    min: usize,
}

pub fn settings(
    app: &App,
    session: &OwnerSession,
    visit: &Visit,
    error: Option<String>,
) -> Response<Body> {
    let now = crate::clock::now_secs();
    let sessions = app
        .owner_sessions
        .list(now)
        .into_iter()
        .map(|s| SessionRow {
            this: s.id == session.id,
            since: when(s.created_secs),
            from: s.peer.to_string(),
            agent: s.agent,
            id: s.id,
        })
        .collect();
    let (f, status) = frame_with(app, "Settings", session, visit, error);
    page(
        &Settings {
            f,
            sessions,
            min: MIN_PASSWORD,
        },
        status,
    )
}

#[derive(Template)]
#[template(
    source = "{% extends \"base.html\" %}{% block content %}<h1>Not here</h1><p>There is no such page. <a href=\"/\">Home</a></p>{% endblock %}",
    ext = "html"
)]
struct NotFound {
    f: Frame,
}

pub fn not_found(app: &App, session: &OwnerSession) -> Response<Body> {
    page(
        &NotFound {
            f: frame(app, "Not found", Some(session), None),
        },
        StatusCode::NOT_FOUND,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_quota_fields_read_like_a_person_would_write_them() {
        use super::super::forms::quota_field;
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(1536), "1.5 KB");
        assert_eq!(size(250 << 20), "250 MB");
        assert_eq!(quota_field(Some("")), Ok(None));
        assert_eq!(quota_field(Some(" 500 ")), Ok(Some(Limit::Mb(500))));
        assert!(quota_field(Some("0")).is_err() && quota_field(Some("5GB")).is_err());
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
    }
}

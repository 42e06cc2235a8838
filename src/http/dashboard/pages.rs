//! The dashboard's pages: what each shows (read from the store, the workers' state files
//! and the board) and what each form does. Templates are askama's, compiled into the
//! binary from `templates/`; every value is HTML-escaped unless marked `safe` (only the QR
//! SVGs, which are made here).

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::{qr, redirect, signed_out, Form, Visit};
use crate::account::owner::{ClaimError, MIN_PASSWORD};
use crate::account::owner_sessions::OwnerSession;
use crate::announce::reachability::Resolution;
use crate::announce::verdict::{judge, Verdict};
use crate::http::body::Body;
use crate::http::App;
use crate::pubkey::PublicKey;
use crate::store::{Limit, QuotaOverrides, Scan};

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

fn box_name(app: &App) -> String {
    let h = crate::announce::mdns::host_name(&app.homeserver);
    h.trim_end_matches('.')
        .trim_end_matches(".local")
        .to_string()
}

fn frame(
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
fn frame_with(
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
            _ => return None,
        }
        .into(),
    )
}

fn page(t: &impl Template, status: StatusCode) -> Response<Body> {
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

fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} seconds"),
        120..=7199 => format!("{} minutes", s / 60),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn short(pk: &PublicKey) -> String {
    pk.to_z32()[..8].to_string()
}

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

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    f: Frame,
    verdict: Verdict,
    verdict_class: &'static str,
    reach_facts: Vec<(&'static str, String)>,
    key: String,
    key_qr: String,
    uptime: String,
    box_facts: Vec<(&'static str, String)>,
    used: String,
    free: String,
    user_count: usize,
    top_users: Vec<(String, String)>,
    health: Vec<(&'static str, String, bool)>,
    backup: String,
    backup_bad: bool,
}

pub fn home(
    app: &Arc<App>,
    session: &OwnerSession,
    uptime: Duration,
    record: Option<Resolution>,
    tls_port: u16,
    visit: &Visit,
) -> Response<Body> {
    use crate::announce::mdns::MdnsState;
    use crate::announce::upnp::UpnpState;
    use crate::announce::PublishStatus;
    let dir = &app.data_dir;
    let upnp = UpnpState::load(dir);
    let publish = PublishStatus::load(dir);
    let verdict = judge(
        &app.config,
        upnp.as_ref(),
        publish.as_ref(),
        record.as_ref(),
        tls_port,
    );
    let mut reach_facts = Vec::new();
    let lan = crate::announce::mdns::lan_addresses(&crate::announce::household::mdns_settings(
        &app.config,
    ));
    reach_facts.push((
        "Home network",
        if lan.is_empty() {
            "no address".into()
        } else {
            lan.iter()
                .map(|(_, ip)| ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
    ));
    reach_facts.push((
        "Name on the network",
        match MdnsState::load(dir) {
            Some(m) if m.state == "announcing" => {
                format!("{} (announced)", m.host.trim_end_matches('.'))
            }
            Some(m) => format!("not announced ({})", m.state),
            None => "not announced yet".into(),
        },
    ));
    if let Some(u) = &upnp {
        let mapped: Vec<String> = u
            .mappings
            .iter()
            .map(|m| format!("{} → {}", m.external_port, m.internal))
            .collect();
        reach_facts.push((
            "Router (UPnP)",
            if mapped.is_empty() {
                u.state.replace('_', " ")
            } else {
                format!("forwards {}", mapped.join(", "))
            },
        ));
        if let Some(ip) = &u.external_ip {
            reach_facts.push(("Internet address", ip.clone()));
        }
        if let Some(n) = u.nat {
            use crate::announce::mapping::NatKind;
            let v = match n {
                NatKind::Public => "no",
                NatKind::Cgnat => "yes: carrier-grade NAT",
                NatKind::DoubleNat => "yes: double NAT",
                NatKind::NoPublicAddress => "probably: no public address",
            };
            reach_facts.push(("Behind another NAT", v.into()));
        }
    } else if !app.config.upnp.enabled {
        reach_facts.push(("Router (UPnP)", "off in the config".into()));
    }
    reach_facts.push((
        "Last announcement",
        match &publish {
            _ if !app.config.pkdns.dht => "off".into(),
            None => "not yet".into(),
            Some(p) => match (&p.last_error, p.last_success_secs) {
                (None, Some(t)) => format!("{} on {} DHT nodes", when(t), p.stored_at_nodes),
                (Some(e), _) => format!("failed at {}: {e}", when(p.last_attempt_secs)),
                _ => "not yet".into(),
            },
        },
    ));
    if app.config.pkdns.dht {
        reach_facts.push((
            "Record on the network",
            match &record {
                None => "being looked up…".into(),
                Some(Resolution::NotFound) => "not found".into(),
                Some(Resolution::NotChecked(why)) => format!("not checked ({why})"),
                Some(Resolution::Found { ip, port }) => format!(
                    "{}:{}",
                    ip.map_or("?".into(), |i| i.to_string()),
                    port.map_or("?".into(), |p| p.to_string())
                ),
            },
        ));
    }

    let key = app.homeserver.to_z32();
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let box_facts = vec![
        (
            "Address on this network",
            format!("http://{}.local/", box_name(app)),
        ),
        ("Host name", host),
    ];

    let users = app.store.users().unwrap_or_default();
    let used: u64 = users.iter().map(|(_, u)| u.used_bytes).sum();
    let free = crate::store::space::available(dir).unwrap_or(0);
    let mut top: Vec<_> = users.iter().filter(|(_, u)| u.used_bytes > 0).collect();
    top.sort_by_key(|(_, u)| std::cmp::Reverse(u.used_bytes));
    let top_users = top
        .iter()
        .take(5)
        .map(|(pk, u)| (short(pk), usage(u.used_bytes, u.quota_bytes, app)))
        .collect();

    let h = crate::runtime::health::read(dir);
    let mut health = Vec::new();
    if let Some(t) = h.temp_c {
        health.push(("CPU temperature", format!("{t:.1} °C"), t >= 80.0));
    }
    if let Some(th) = h.throttled {
        let (now, since) = th.describe();
        let v = match (now.is_empty(), since.is_empty()) {
            (true, true) => "none since boot".to_string(),
            (false, _) => format!("now: {}", now.join(", ")),
            (true, false) => format!("earlier since boot: {}", since.join(", ")),
        };
        health.push((
            "Power and throttling",
            v,
            !now.is_empty() || !since.is_empty(),
        ));
    }
    let mem_used = h.mem_total.saturating_sub(h.mem_available);
    health.push((
        "Memory",
        format!(
            "{} of {} in use; this server {}",
            size(mem_used),
            size(h.mem_total),
            size(crate::runtime::probe::rss_bytes())
        ),
        h.mem_total > 0 && h.mem_available < h.mem_total / 20,
    ));
    health.push((
        "Load",
        format!(
            "{:.2} {:.2} {:.2} on {} CPUs",
            h.load[0], h.load[1], h.load[2], h.cpus
        ),
        h.load[1] > h.cpus as f64 * 1.5,
    ));
    if let Some((dev, bytes)) = &h.disk_written {
        health.push((
            "Written to the data disk",
            format!(
                "{} to {dev} since the system started {} ago",
                size(*bytes),
                span(Duration::from_secs(h.system_uptime_secs))
            ),
            false,
        ));
    }
    let now = crate::clock::now_secs();
    let (backup, backup_bad) = match crate::backup::outcome::Outcome::load(dir) {
        None => (
            "No backup yet. Plug in a USB disk labelled PUBKY-BACKUP (see the guide).".to_string(),
            false,
        ),
        Some(o) => {
            let last = match (o.last_success_point.as_deref(), o.last_success_secs) {
                (Some(p), Some(t)) => format!("Last good backup {} ({p}) on {}.", when(t), o.dest),
                _ => "No backup has succeeded yet.".into(),
            };
            match o.problem(now) {
                Some(p) => (format!("{last} Problem: {p}."), true),
                None => (last, false),
            }
        }
    };
    let t = Home {
        f: frame(app, "Home", Some(session), Some(visit)),
        verdict_class: verdict.level.css(),
        verdict,
        reach_facts,
        key_qr: qr::svg(&key, "QR code of this box's public key"),
        key,
        uptime: span(uptime),
        box_facts,
        used: size(used),
        free: size(free),
        user_count: users.len(),
        top_users,
        health,
        backup,
        backup_bad,
    };
    page(&t, StatusCode::OK)
}

fn usage(used: u64, quota: Option<u64>, app: &App) -> String {
    let quota = quota.or(app.config.storage.default_quota_mb.map(|mb| mb << 20));
    match quota {
        Some(q) if q != u64::MAX => format!("{} of {}", size(used), size(q)),
        _ => format!("{} (no limit)", size(used)),
    }
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

/// The quota field: empty = the box's default, else whole MB.
fn quota_field(v: Option<&str>) -> Result<Option<Limit>, String> {
    match v.map(str::trim).unwrap_or("") {
        "" => Ok(None),
        s => match s.parse::<u64>() {
            Ok(mb) if (1..=1 << 30).contains(&mb) => Ok(Some(Limit::Mb(mb))),
            _ => Err(format!(
                "The quota must be a whole number of MB (1 or more), not {s:?}."
            )),
        },
    }
}

fn user_of(app: &App, form: &Form) -> Option<PublicKey> {
    let pk = PublicKey::parse_z32(form.get("user")?).ok()?;
    app.store.user(&pk).ok().flatten().map(|_| pk)
}

/// A state-changing form of a signed-in owner (the CSRF token is already checked).
pub async fn act(
    app: &Arc<App>,
    session: &OwnerSession,
    visit: &Visit,
    path: &str,
    form: &Form,
    now: u64,
) -> Response<Body> {
    match path {
        "/logout" => {
            app.owner_sessions.end(&session.id);
            signed_out("/login")
        }
        "/invites" => {
            let storage = match quota_field(form.get("quota_mb")) {
                Ok(s) => s,
                Err(e) => return invites(app, session, visit, Some(e)),
            };
            let q = QuotaOverrides {
                storage,
                ..Default::default()
            };
            let token = crate::auth::secrets::new_signup_token();
            match app
                .store
                .create_signup_token_with_quota(&token, &q, now)
                .await
            {
                Ok(()) => {
                    tracing::info!("the owner created an invitation");
                    redirect(&format!("/invites?new={token}"))
                }
                Err(e) => invites(
                    app,
                    session,
                    visit,
                    Some(format!("The invitation was not saved: {e}.")),
                ),
            }
        }
        "/invites/revoke" => match app
            .store
            .revoke_signup_token(form.get("token").unwrap_or(""))
            .await
        {
            Ok(()) => redirect("/invites?n=revoked"),
            Err(e) => invites(app, session, visit, Some(format!("Not revoked: {e}."))),
        },
        "/people/state" => {
            let Some(pk) = user_of(app, form) else {
                return people(app, session, visit, Some("No such person.".into()));
            };
            let disable = form.get("do") == Some("disable");
            match app.store.set_disabled(&pk, disable).await {
                Ok(()) => {
                    tracing::info!(user = %pk, disabled = disable, "the owner changed an account");
                    redirect(if disable {
                        "/people?n=disable"
                    } else {
                        "/people?n=enable"
                    })
                }
                Err(e) => people(app, session, visit, Some(format!("Not changed: {e}."))),
            }
        }
        "/people/quota" => {
            let Some(pk) = user_of(app, form) else {
                return people(app, session, visit, Some("No such person.".into()));
            };
            let storage = match quota_field(form.get("quota_mb")) {
                Ok(s) => s,
                Err(e) => return people(app, session, visit, Some(e)),
            };
            let mut q = app.store.quota_overrides(&pk).unwrap_or_default();
            q.storage = storage;
            match app.store.set_quota_overrides(&pk, &q).await {
                Ok(()) => redirect("/people?n=quota"),
                Err(e) => people(app, session, visit, Some(format!("Not changed: {e}."))),
            }
        }
        "/people/delete" => {
            let Some(pk) = user_of(app, form) else {
                return people(app, session, visit, Some("No such person.".into()));
            };
            if form.get("confirm").map(str::trim) != Some(short(&pk).as_str()) {
                return people(
                    app,
                    session,
                    visit,
                    Some(format!(
                        "Nothing was deleted: the confirmation did not match {}.",
                        short(&pk)
                    )),
                );
            }
            match crate::account::people::delete_data(&app.store, &pk, crate::clock::now_micros())
                .await
            {
                Ok(_) => redirect("/people?n=deleted"),
                Err(e) => people(app, session, visit, Some(format!("Deleting stopped: {e}."))),
            }
        }
        "/settings/password" => {
            let (cur, new) = (
                form.get("current").unwrap_or(""),
                form.get("new").unwrap_or(""),
            );
            // Hashing takes about a second on a small board: off the executor.
            let owner = app.owner.clone();
            let (peer, cur, new) = (visit.peer, cur.to_string(), new.to_string());
            let changed =
                smol::unblock(move || owner.change(peer, &cur, &new, std::time::Instant::now()))
                    .await;
            match changed {
                Ok(()) => {
                    app.owner_sessions.end_all();
                    signed_out("/login")
                }
                Err(e) => {
                    let text = match e {
                        ClaimError::Wrong => "The current password is not right.".to_string(),
                        other => format!(
                            "{}.",
                            super::capitalised(&other.to_string()).trim_end_matches('.')
                        ),
                    };
                    settings(app, session, visit, Some(text))
                }
            }
        }
        "/settings/end" => match form.get("id") {
            Some("all") => {
                app.owner_sessions.end_all();
                signed_out("/login")
            }
            Some(id) if id == session.id => {
                app.owner_sessions.end(id);
                signed_out("/login")
            }
            Some(id) => {
                app.owner_sessions.end(id);
                redirect("/settings?n=ended")
            }
            None => redirect("/settings"),
        },
        _ => crate::http::response::text(StatusCode::NOT_FOUND, "No such form."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_quota_fields_read_like_a_person_would_write_them() {
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(1536), "1.5 KB");
        assert_eq!(size(250 << 20), "250 MB");
        assert_eq!(quota_field(Some("")), Ok(None));
        assert_eq!(quota_field(Some(" 500 ")), Ok(Some(Limit::Mb(500))));
        assert!(quota_field(Some("0")).is_err() && quota_field(Some("5GB")).is_err());
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
    }
}

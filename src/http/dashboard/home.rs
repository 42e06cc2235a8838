//! The home page: the box at a glance. The reachability verdict and its facts (from the
//! workers' state files and a background lookup of the box's record), the key with its QR
//! code, storage, the board's health and the last backup.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use hyper::{Response, StatusCode};

use super::frame::{box_name, frame, page, short, size, span, usage, when, Frame};
use super::{qr, Visit};
use crate::account::owner_sessions::OwnerSession;
use crate::announce::reachability::Resolution;
use crate::announce::verdict::{overall, Verdict};
use crate::http::body::Body;
use crate::http::App;

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
    updates: Vec<(&'static str, String, bool)>,
    /// The "update now" button's label; empty when there is no release key.
    update_now: String,
    update_held: bool,
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
    let link = crate::announce::tunnel_state::LinkState::load(dir);
    let verdict = overall(
        &app.config,
        upnp.as_ref(),
        publish.as_ref(),
        link.as_ref(),
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
        let via = u
            .protocol
            .map_or(String::new(), |p| format!(" ({})", p.label()));
        reach_facts.push((
            "Router",
            if mapped.is_empty() {
                u.state.replace('_', " ")
            } else {
                format!("forwards {}{via}", mapped.join(", "))
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
        reach_facts.push(("Router", "port mapping off in the config".into()));
    }
    match crate::announce::pinhole::PinholeState::load(dir) {
        Some(p) if p.is_open() => {
            let announced = p.in_record(publish.as_ref());
            let how = if p.state == "pinhole_open" {
                "open at the router's firewall"
            } else {
                "announced as configured"
            };
            let record = if announced { "" } else { ", not in the record" };
            reach_facts.push((
                "IPv6",
                format!("{} {how}{record}", p.address.as_deref().unwrap_or("?")),
            ));
        }
        Some(p) if !p.state.starts_with("off") => {
            let why = p.last_error.unwrap_or_else(|| p.state.replace('_', " "));
            reach_facts.push(("IPv6", format!("not announced: {why}")));
        }
        _ => {}
    }
    if let Some(target) = &app.config.tunnel.via {
        reach_facts.push((
            "Relay",
            match &link {
                Some(l) if l.connected() && !l.in_record => format!(
                    "linked to {}, standing by: it reached this box at {}",
                    target.addr,
                    l.direct
                        .as_deref()
                        .unwrap_or("its own address (not checked yet)")
                ),
                Some(l) if l.connected() => format!(
                    "linked to {}; apps reach this box at {}",
                    target.addr,
                    l.published.as_deref().unwrap_or("?")
                ),
                Some(l) => format!(
                    "not linked to {} ({}){}",
                    target.addr,
                    l.state,
                    l.last_error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
                None => format!("not linked to {} yet", target.addr),
            },
        ));
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
    let rss = crate::runtime::probe::rss_bytes();
    // Near its ceiling the server is slowed down by the kernel (`runtime::memory`).
    let (server, near_ceiling) = match crate::runtime::memory::ceiling() {
        crate::runtime::memory::Ceiling::High { bytes, .. } => (
            format!("{} of its {} ceiling", size(rss), size(bytes)),
            rss >= bytes / 10 * 9,
        ),
        _ => (size(rss), false),
    };
    health.push((
        "Memory",
        format!(
            "{} of {} in use; this server {server}",
            size(mem_used),
            size(h.mem_total),
        ),
        (h.mem_total > 0 && h.mem_available < h.mem_total / 20) || near_ceiling,
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
    let second = crate::standby::report::Report::read(dir, now);
    if !second.lines.is_empty() {
        health.push(("Second box", second.lines.join(" "), second.bad));
    }
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
    let facts = crate::update::state::Facts::read(dir);
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
        updates: update_facts(app, &facts),
        update_now: match (can_look(app), &facts.available) {
            (false, _) => String::new(),
            (true, Some(v)) => format!("Update to {v} now"),
            (true, None) => "Look for an update now".into(),
        },
        update_held: facts.hold.is_some(),
    };
    page(&t, StatusCode::OK)
}

/// Whether the server's update worker runs and can look at the channel: it needs a release
/// key and the DHT, through which the release key's homeserver is found.
pub(super) fn can_look(app: &App) -> bool {
    app.config.update.release_key.is_some() && app.config.pkdns.dht
}

/// The Updates card: what runs, what the channel has, how the last update went, a hold.
fn update_facts(app: &App, f: &crate::update::state::Facts) -> Vec<(&'static str, String, bool)> {
    let mut out = vec![(
        "Running",
        match &f.slot {
            Some(slot) => format!("{} (updated, slot {slot})", f.running),
            None => format!("{} (as installed)", f.running),
        },
        false,
    )];
    let u = &app.config.update;
    if u.release_key.is_none() {
        out.push((
            "Updates",
            "Off: this box trusts no release key.".into(),
            false,
        ));
        return out;
    }
    if !app.config.pkdns.dht {
        out.push((
            "Updates",
            "Off: releases are found through the DHT, and pkdns.dht = false. \
             `pubky-edge update install` still takes a release brought as files."
                .into(),
            false,
        ));
        return out;
    }
    if let Some(st) = crate::update::state::UpdateState::load(&app.data_dir) {
        let said = st.describe();
        let mut c = said.chars();
        let said = c
            .next()
            .map_or(String::new(), |f| f.to_uppercase().chain(c).collect());
        out.push((
            "Channel",
            said,
            st.result == "refused" || st.result == "error",
        ));
    }
    if let Some(last) = &f.last {
        let bad = last.result == "rolled_back";
        out.push(("Last update", last.describe(), bad));
    }
    let mode = if let Some(h) = &f.hold {
        format!("Held since {} ({}).", when(h.since_secs), h.reason)
    } else if !u.automatic {
        "By hand only: `pubky-edge update now`.".into()
    } else {
        match u.window_text() {
            Some(w) => format!("Automatic, within {w}."),
            None => "Automatic, at any time.".into(),
        }
    };
    out.push(("Updates", mode, f.hold.is_some()));
    out
}

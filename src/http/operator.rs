//! The operator listeners' request handlers, each on its own socket beside the client API:
//! the admin API (`admin`, behind its password, with CORS) and Prometheus metrics
//! (`GET /metrics`). `app::listeners` binds them and runs them with the same accept loop
//! and limits as the client listeners.

use std::time::Instant;

use hyper::body::Incoming;
use hyper::{header, Method, Request, Response};

use super::body::Body;
use super::capacity::ConnStats;
use super::response::ApiError;
use super::App;
use super::ConnInfo;
use crate::metrics::{Device, RouteClass};

/// One request to the admin listener, checked against the owner's secret by the admin API and
/// counted under the `admin` route class. No browser page may drive it: a request from
/// another origin (any `Origin` header, any preflight) is refused and nothing grants CORS,
/// and a `Host` that is a name other than `localhost` (DNS rebinding) is refused.
pub async fn admin(app: &App, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    let start = Instant::now();
    // WebDAV clients ask OPTIONS without an Origin; a browser's preflight always has one.
    let dav = req.uri().path().starts_with(super::dav::PREFIX);
    let preflight = req.method() == Method::OPTIONS && !dav;
    let resp = if preflight || req.headers().contains_key(header::ORIGIN) {
        ApiError::forbidden("The admin API does not answer browsers").into_response()
    } else if !local_host(req.headers()) {
        ApiError::forbidden("Host must be this listener's address or localhost").into_response()
    } else {
        super::admin::handle(app, req, conn.client).await
    };
    app.metrics
        .request(RouteClass::Admin, resp.status().as_u16(), start.elapsed());
    resp
}

/// `Host` is an IP literal or `localhost` (with any port): names an attacker controls can
/// be rebound to this address, literals cannot.
fn local_host(h: &hyper::HeaderMap) -> bool {
    use super::head::Host;
    match super::head::host(h) {
        Some(Host::Literal) => true,
        Some(Host::Name(n)) => n.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// One request to the metrics listener: `GET /metrics` and nothing else. `conns` are the
/// client listeners' connection counts (the connections gauge is their sum).
pub async fn metrics(app: &App, conns: &[ConnStats], req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/metrics" {
        return ApiError::not_found().into_response();
    }
    if req.method() != Method::GET {
        return ApiError::from(super::route::RouteError::MethodNotAllowed("GET")).into_response();
    }
    scrape(app, conns).await
}

/// `GET /metrics`: counters plus gauges read now (disk walks run off the executor).
async fn scrape(app: &App, conns: &[ConnStats]) -> Response<Body> {
    let dir = app.data_dir.clone();
    let (store_bytes, disk_free_bytes, backup, router, publish, update) =
        smol::unblock(move || {
            let free = crate::store::space::available(&dir).unwrap_or(0);
            let update = crate::update::state::Facts::read(&dir);
            let backup = crate::backup::outcome::Outcome::load(&dir);
            let router = crate::announce::upnp::UpnpState::load(&dir);
            let publish = crate::announce::PublishStatus::load(&dir);
            let bytes = crate::runtime::probe::dir_bytes(&dir);
            (bytes, free, backup, router, publish, update)
        })
        .await;
    let (link, relayed) = {
        let dir = app.data_dir.clone();
        smol::unblock(move || {
            use crate::announce::tunnel_state::{LinkState, RelayState};
            (LinkState::load(&dir), RelayState::load(&dir))
        })
        .await
    };
    let now = crate::clock::now_secs();
    let (router, publish) = (router.as_ref(), publish.as_ref());
    let nat_in_front = matches!(
        crate::announce::reachability::views(router, publish),
        crate::announce::mapping::Views::Differ { .. }
    );
    let device = Device {
        connections: conns.iter().map(|c| c.live() as u64).sum(),
        connections_refused: conns.iter().map(ConnStats::refused).sum(),
        connections_refused_per_ip: conns.iter().map(ConnStats::refused_per_ip).sum(),
        rss_bytes: crate::runtime::probe::rss_bytes(),
        store_bytes,
        disk_free_bytes,
        users: app.store.users().map_or(0, |u| u.len() as u64),
        backup_last_success: backup
            .as_ref()
            .and_then(|b| b.last_success_secs)
            .unwrap_or(0),
        backup_problem: backup.is_some_and(|b| b.problem(now).is_some()) as u64,
        router_ip: router.and_then(|u| u.external_addr()),
        dht_seen_ip: publish.and_then(|p| p.dht_seen_addr()),
        dht_firewalled: publish.and_then(|p| p.dht_firewalled),
        nat_in_front,
        update: crate::metrics::UpdateGauges {
            last: update.last.map(|l| (l.from, l.to, l.result, l.at_secs)),
            running: update.running,
            slot: update.slot,
            available: update.available,
            held: update.hold.is_some(),
        },
        relay_link: app
            .config
            .tunnel
            .via
            .is_some()
            .then(|| link.map_or((false, 0), |l| (l.connected(), l.forwarded))),
        relayed: if app.config.tunnel.listen_socket.is_some() {
            relayed
                .map(|r| r.boxes)
                .unwrap_or_default()
                .into_iter()
                .map(|b| crate::metrics::RelayedBox {
                    key: b.key,
                    port: b.port,
                    linked: b.connected,
                    open: b.open as u64,
                    forwarded: b.forwarded,
                    bytes: b.bytes,
                    refused: b.refused,
                })
                .collect()
        } else {
            Vec::new()
        },
    };
    let mut r = Response::new(Body::from(app.metrics.render(&device)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

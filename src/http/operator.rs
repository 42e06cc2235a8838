//! The operator listeners' request handlers, each on its own socket beside the client API:
//! the admin API (`admin`, behind its password, with CORS) and Prometheus metrics
//! (`GET /metrics`). `app::listeners` binds them and runs them with the same accept loop
//! and limits as the client listeners.

use std::time::Instant;

use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};

use super::body::Body;
use super::capacity::ConnStats;
use super::response::{empty, ApiError, CorsRequest};
use super::App;
use crate::metrics::{Device, RouteClass};

/// One request to the admin listener: preflights answered, everything else checked against
/// `password` by the admin API; counted under the `admin` route class.
pub async fn admin(app: &App, password: &str, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let cors = CorsRequest::of(req.headers());
    let mut resp = if req.method() == Method::OPTIONS {
        empty(StatusCode::OK)
    } else {
        super::admin::handle(app, password, req).await
    };
    app.metrics
        .request(RouteClass::Admin, resp.status().as_u16(), start.elapsed());
    cors.apply(&mut resp);
    resp
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
    let (store_bytes, disk_free_bytes) = smol::unblock(move || {
        let free = crate::store::space::available(&dir).unwrap_or(0);
        (crate::runtime::probe::dir_bytes(&dir), free)
    })
    .await;
    let device = Device {
        connections: conns.iter().map(|c| c.live() as u64).sum(),
        rss_bytes: crate::runtime::probe::rss_bytes(),
        store_bytes,
        disk_free_bytes,
        users: app.store.users().map_or(0, |u| u.len() as u64),
    };
    let mut r = Response::new(Body::from(app.metrics.render(&device)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

//! The operator listeners, each on its own socket beside the client API: the admin API
//! (`admin`) and Prometheus metrics (`GET /metrics`). Both use the same accept loop and
//! limits as the client listener and stop with it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use hyper::{header, Method, Request, Response, StatusCode};
use smol::{Executor, Task};

use super::body::Body;
use super::capacity::ConnStats;
use super::response::ApiError;
use super::server::{serve, PlainTcp, ServerLimits};
use super::App;
use crate::metrics::{self, Device, RouteClass};
use crate::runtime::shutdown::ShutdownSignal;

/// Where the operator listeners ended up, and their tasks.
pub struct Operator {
    pub admin_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub tasks: Vec<Task<io::Result<()>>>,
}

/// Binds and starts the enabled operator listeners. `client_conns` are the client
/// listener's connection counts (a metrics gauge).
pub async fn start(
    ex: &Arc<Executor<'static>>,
    app: &Arc<App>,
    limits: &ServerLimits,
    signal: &ShutdownSignal,
    client_conns: ConnStats,
) -> Result<Operator> {
    let mut op = Operator {
        admin_addr: None,
        metrics_addr: None,
        tasks: Vec::new(),
    };
    let cfg = &app.config;
    if cfg.admin.enabled {
        let password = Arc::new(cfg.admin.resolve_password().map_err(anyhow::Error::msg)?);
        let listener = bind(cfg.admin.listen_socket).await?;
        op.admin_addr = Some(listener.local_addr()?);
        let app = app.clone();
        let handler = move |req: Request<hyper::body::Incoming>, _conn| {
            let (app, password) = (app.clone(), password.clone());
            async move {
                let start = std::time::Instant::now();
                let cors = super::response::CorsRequest::of(req.headers());
                let mut resp = if req.method() == Method::OPTIONS {
                    super::response::empty(StatusCode::OK)
                } else {
                    super::admin::handle(&app, &password, req).await
                };
                app.metrics
                    .request(RouteClass::Admin, resp.status().as_u16(), start.elapsed());
                cors.apply(&mut resp);
                resp
            }
        };
        op.tasks.push(spawn(ex, listener, limits, handler, signal));
    }
    if cfg.metrics.enabled {
        let listener = bind(cfg.metrics.listen_socket).await?;
        op.metrics_addr = Some(listener.local_addr()?);
        let app = app.clone();
        let handler = move |req: Request<hyper::body::Incoming>, _conn| {
            let (app, conns) = (app.clone(), client_conns.clone());
            async move {
                if req.uri().path() != "/metrics" {
                    return ApiError::not_found().into_response();
                }
                if req.method() != Method::GET {
                    return ApiError::from(super::route::RouteError::MethodNotAllowed("GET"))
                        .into_response();
                }
                scrape(&app, &conns).await
            }
        };
        op.tasks.push(spawn(ex, listener, limits, handler, signal));
    }
    Ok(op)
}

async fn bind(addr: SocketAddr) -> Result<smol::net::TcpListener> {
    smol::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

fn spawn<H, F>(
    ex: &Arc<Executor<'static>>,
    listener: smol::net::TcpListener,
    limits: &ServerLimits,
    handler: H,
    signal: &ShutdownSignal,
) -> Task<io::Result<()>>
where
    H: Fn(Request<hyper::body::Incoming>, super::ConnInfo) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let ex2 = ex.clone();
    let (limits, signal) = (limits.clone(), signal.clone());
    ex.spawn(async move {
        serve(
            &ex2,
            listener,
            PlainTcp,
            limits,
            handler,
            signal,
            ConnStats::new(),
        )
        .await
    })
}

/// `GET /metrics`: counters plus gauges read now (disk walks run off the executor).
async fn scrape(app: &Arc<App>, conns: &ConnStats) -> Response<Body> {
    let dir = app.data_dir.clone();
    let (store_bytes, disk_free_bytes) =
        smol::unblock(move || (metrics::dir_bytes(&dir), metrics::disk_free_bytes(&dir))).await;
    let device = Device {
        connections: conns.live() as u64,
        rss_bytes: metrics::rss_bytes(),
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

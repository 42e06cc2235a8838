//! Storage endpoints: `GET`/`HEAD`/`PUT`/`DELETE` on `/storage/<pk>/<path>` and legacy
//! `/<path>`. Authorisation follows the spec's check order; bodies stream from the request
//! into `store::Upload` (hashed as they arrive) and from the store to the response.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{header, Response, StatusCode};

use super::bandwidth;
use super::body::{Body, PacedBody};
use super::head::Head;
use super::listing;
use super::query::{BadQuery, ListQuery};
use super::response::ApiError;
use super::route::{Addressing, StorageOp};
use super::App;
use crate::account::access;
use crate::account::{AuthMethod, Caller, CookiePolicy};
use crate::clock;
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;
use crate::store::Content;

/// A routed storage request: what it does, to whose data, where.
pub struct Target {
    pub op: StorageOp,
    /// `None` only on the legacy form when nothing named the tenant.
    pub tenant: Option<PublicKey>,
    pub path: StoragePath,
    pub addressing: Addressing,
    /// Listing parameters, used by `GET` of a directory.
    pub list: Result<ListQuery, BadQuery>,
}

/// `GET`/`HEAD`/`PUT`/`DELETE /storage/<pk>/<path>` and legacy `/<path>`: resolves the
/// caller, runs the operation and applies the spec's cache policy to the result.
pub async fn handle(app: &App, head: &Head, body: Incoming, t: Target) -> Response<Body> {
    let result = match t.tenant {
        None => Err(ApiError::bad_request("Missing request tenant")),
        Some(tenant) => {
            let now = clock::now_secs();
            let caller = Caller::resolve(
                &app.store,
                &head.creds,
                Some(&tenant),
                CookiePolicy::Fallback,
                now,
            )
            .map_err(ApiError::from);
            count_request(app, head, &tenant, t.addressing, &caller);
            match (caller, t.op) {
                (Err(e), _) => Err(e),
                (Ok(c), StorageOp::Get | StorageOp::Head) => {
                    let list = t.list.clone();
                    read(app, head, t.op, &tenant, &t.path, list, c.as_ref())
                }
                (Ok(c), StorageOp::Put) => put(app, head, body, &tenant, &t.path, c.as_ref()).await,
                (Ok(c), StorageOp::Delete) => delete(app, head, &tenant, &t.path, c.as_ref()).await,
                (Ok(c), StorageOp::Lock) => {
                    super::lock::lock(app, head, body, &tenant, &t.path, c.as_ref()).await
                }
                (Ok(c), StorageOp::Unlock) => {
                    super::lock::unlock(app, head, &tenant, &t.path, c.as_ref())
                }
            }
        }
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    cache_policy(&mut resp, &t.path, t.addressing);
    resp
}

/// `storage_request_count_total` labels for one request.
fn count_request(
    app: &App,
    head: &Head,
    tenant: &PublicKey,
    addressing: Addressing,
    caller: &Result<Option<Caller>, ApiError>,
) {
    let host_header = match head.pubky_host.as_deref() {
        None => 0,
        Some(v) if v == tenant.to_z32() => 1,
        Some(_) => 2,
    };
    let auth = match caller {
        Ok(Some(c)) if c.method == AuthMethod::Cookie => 1,
        Ok(Some(_)) => 2,
        _ => 0,
    };
    app.metrics.storage_request(crate::metrics::StorageRequest {
        addressing: usize::from(addressing == Addressing::Legacy),
        host_header,
        host_query: usize::from(head.pubky_host_query),
        auth,
    });
}

/// §3.10: validators and caching differ for public and private paths and by addressing.
fn cache_policy(resp: &mut Response<Body>, path: &StoragePath, addressing: Addressing) {
    let status = resp.status();
    let h = resp.headers_mut();
    if path.is_private() {
        h.insert(header::CACHE_CONTROL, hv("no-store"));
        let vary = match addressing {
            Addressing::Path => "Authorization, Cookie",
            Addressing::Legacy => "pubky-host, Authorization, Cookie",
        };
        h.append(header::VARY, hv(vary));
        if status.as_u16() >= 400 {
            h.remove(header::ETAG);
            h.remove(header::LAST_MODIFIED);
        }
        return;
    }
    let file_ok =
        !path.is_dir() && (status == StatusCode::OK || status == StatusCode::NOT_MODIFIED);
    if file_ok {
        h.insert(header::CACHE_CONTROL, hv("private, must-revalidate"));
    }
    if addressing == Addressing::Legacy && (file_ok || status == StatusCode::OK) {
        h.append(header::VARY, hv("pubky-host"));
    }
}

fn hv(s: &'static str) -> header::HeaderValue {
    header::HeaderValue::from_static(s)
}

/// `GET`/`HEAD /storage/<pk>/<path>` (and legacy `/<path>`): a file's entry and body, paced
/// by the reader's bandwidth budget, with validators; `GET` of a directory lists it.
fn read(
    app: &App,
    head: &Head,
    op: StorageOp,
    tenant: &PublicKey,
    path: &StoragePath,
    list: Result<ListQuery, BadQuery>,
    session: Option<&Caller>,
) -> Result<Response<Body>, ApiError> {
    let query = list?;
    access::authorize_read(tenant, path, session)?;
    if path.is_dir() {
        if op == StorageOp::Head {
            return Err(ApiError::not_found());
        }
        return listing::respond(app, tenant, path, &query);
    }
    if op == StorageOp::Head && app.store.user(tenant)?.is_none() {
        return Err(ApiError::not_found());
    }
    let reader = session.map(|s| &s.user);
    serve_file(app, head, tenant, path, reader, None)?.ok_or_else(ApiError::not_found)
}

/// A stored file as a response, or `None` when there is none: type, length and validators,
/// and on `GET` the body, paced by the reader's bandwidth budget. With `status` `None` it
/// is a 200 that honours conditional headers; another status (a website's 404 page) has no
/// validators, since there is no version to revalidate.
pub fn serve_file(
    app: &App,
    head: &Head,
    owner: &PublicKey,
    path: &StoragePath,
    reader: Option<&PublicKey>,
    status: Option<StatusCode>,
) -> Result<Option<Response<Body>>, ApiError> {
    // GET takes entry and body as one consistent pair (a concurrent overwrite can never
    // pair new bytes with the old ETag); HEAD and 304 need only the entry.
    let (meta, content) = if head.is_head {
        match app.store.entry(owner, path)? {
            Some(m) => (m, None),
            None => return Ok(None),
        }
    } else {
        match app.store.read(owner, path)? {
            Some((m, c)) => (m, Some(c)),
            None => return Ok(None),
        }
    };
    let etag = etag(&meta.hash);
    let last_modified = httpdate::fmt_http_date(clock::system_time(meta.modified_at));
    if status.is_none() && head.conditional.not_modified(&etag, meta.modified_at) {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .header(header::LAST_MODIFIED, last_modified)
            .body(Body::Empty)
            .map(Some)
            .map_err(super::response::internal);
    }
    let body = match content {
        None => Body::Empty,
        Some(c) => {
            let body = match c {
                Content::Inline(b) => Body::Full(b),
                Content::File(f) => Body::file(f, meta.len),
            };
            match bandwidth::read_budget(app, reader, head.peer)? {
                Some(b) => bandwidth::paced(body, app.throttle.clone(), b),
                None => body,
            }
        }
    };
    let mut b = Response::builder()
        .status(status.unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, meta.content_type.as_str());
    if status.is_none() {
        b = b
            .header(header::ETAG, etag)
            .header(header::LAST_MODIFIED, last_modified);
    }
    let mut resp = b.body(body).map_err(super::response::internal)?;
    // HEAD carries the entity's length; hyper keeps an explicit Content-Length on HEAD.
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(meta.len));
    Ok(Some(resp))
}

/// Quoted standard base64 of the BLAKE3 hash (44 characters inside the quotes).
pub fn etag(hash: &[u8; 32]) -> String {
    use base64::Engine;
    format!(
        "\"{}\"",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// `PUT /storage/<pk>/<path>` (and legacy `/<path>`): the body streams into an upload under
/// the quota, size and bandwidth limits, then the store commits it durably.
async fn put(
    app: &App,
    head: &Head,
    body: Incoming,
    tenant: &PublicKey,
    path: &StoragePath,
    session: Option<&Caller>,
) -> Result<Response<Body>, ApiError> {
    access::authorize_write(&app.store, tenant, path, session)?;
    let allowance = app.store.write_allowance(tenant, path)?;
    precheck(app, allowance, head.content_length)?;
    let now = std::time::Instant::now();
    let hold = app
        .locks
        .check_write(tenant, path, &head.locks.if_tokens, now)?;
    access::authorize_path(&app.store, tenant, path)?;
    let budget = bandwidth::write_budget(app, tenant)?;
    let (staged, content_type) = receive(app, body, path, allowance, budget).await?;
    if let Some(h) = &hold {
        h.ensure_held()?;
    }
    app.store
        .put(tenant, path, staged, &content_type, clock::now_micros())
        .await?;
    Ok(super::response::empty(StatusCode::CREATED))
}

/// `DELETE /storage/<pk>/<path>` (and legacy `/<path>`): the file must exist; the store
/// commits the removal durably.
async fn delete(
    app: &App,
    head: &Head,
    tenant: &PublicKey,
    path: &StoragePath,
    session: Option<&Caller>,
) -> Result<Response<Body>, ApiError> {
    access::authorize_write(&app.store, tenant, path, session)?;
    let now = std::time::Instant::now();
    let hold = app
        .locks
        .check_write(tenant, path, &head.locks.if_tokens, now)?;
    if app.store.entry(tenant, path)?.is_none() {
        return Err(ApiError::not_found());
    }
    access::authorize_path(&app.store, tenant, path)?;
    if let Some(h) = &hold {
        h.ensure_held()?;
    }
    app.store.delete(tenant, path, clock::now_micros()).await?;
    Ok(super::response::empty(StatusCode::NO_CONTENT))
}

/// The early refusals of a write, from its declared length: over the owner's quota
/// allowance (507) or over `storage.max_upload_mb` (413).
pub fn precheck(
    app: &App,
    allowance: Option<u64>,
    content_length: Option<u64>,
) -> Result<(), ApiError> {
    let max_upload = app.config.storage.max_upload_bytes;
    if let Some(len) = content_length {
        if allowance.is_some_and(|a| len > a) {
            return Err(quota_exceeded());
        }
        if len > max_upload {
            return Err(too_large(max_upload));
        }
    }
    Ok(())
}

/// Streams a request body into an upload (paced against slow senders), held to the
/// owner's quota `allowance`, the upload cap and, when given, a bandwidth budget; returns
/// it staged with its content type (sniffed, else from the path).
pub async fn receive(
    app: &App,
    body: Incoming,
    path: &StoragePath,
    allowance: Option<u64>,
    budget: Option<crate::limits::bandwidth::Budget>,
) -> Result<(crate::store::Staged, String), ApiError> {
    let max_upload = app.config.storage.max_upload_bytes;
    let mut upload = app.store.upload();
    let mut body = PacedBody::new(body, app.config.limits.body_pace);
    while let Some(chunk) = body.next().await {
        let chunk: Bytes = chunk?;
        let after = upload.len() + chunk.len() as u64;
        if allowance.is_some_and(|a| after > a) {
            return Err(quota_exceeded());
        }
        if after > max_upload {
            return Err(too_large(max_upload));
        }
        upload.write(&chunk).await?;
        if let Some(b) = &budget {
            crate::limits::bandwidth::pace(&app.throttle, b, chunk.len()).await;
        }
    }
    let content_type = super::sniff::content_type(upload.head(), path);
    Ok((upload.finish().await?, content_type))
}

fn quota_exceeded() -> ApiError {
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "Disk space quota exceeded",
    )
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body too large: the limit is {max} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_vectors() {
        let h = |b: &[u8]| *blake3::hash(b).as_bytes();
        assert_eq!(
            etag(&h(b"")),
            "\"rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=\""
        );
        assert_eq!(
            etag(&h(b"hello")),
            "\"6o8WPbOGgpJeRJHF5Y1Ls1Bu+MFOt4qG6QjFYkpnIA8=\""
        );
        assert_eq!(
            etag(&h(&[0, 1, 2, 3, 4])),
            "\"tAtE39l+eoSplqka+LhRiMZsEmlAunqtLnrms4VAKqI=\""
        );
        assert_eq!(
            etag(&h(&[0])),
            "\"LTre3/EbYfFMiG41r6A2c23Nh6dNJ7XBUQIl0PWS4hM=\""
        );
    }

    #[test]
    fn conditional_requests() {
        use crate::http::head::Conditional;
        use hyper::HeaderMap;
        let not_modified =
            |h: &HeaderMap, tag: &str, at: u64| Conditional::of(h).not_modified(tag, at);
        let mut h = HeaderMap::new();
        let tag = "\"abc\"";
        h.insert(header::IF_NONE_MATCH, hv("\"x\", \"abc\""));
        assert!(not_modified(&h, tag, 0));
        // If-None-Match present and not matching: If-Modified-Since is ignored
        h.insert(header::IF_NONE_MATCH, hv("\"old\""));
        h.insert(
            header::IF_MODIFIED_SINCE,
            hv("Sun, 06 Nov 2044 08:49:37 GMT"),
        );
        assert!(!not_modified(&h, tag, 1_000_000));
        h.remove(header::IF_NONE_MATCH);
        assert!(not_modified(&h, tag, 1_000_000));
        h.insert(
            header::IF_MODIFIED_SINCE,
            hv("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert!(!not_modified(&h, tag, 2_000_000_000_000_000));
        h.insert(header::IF_MODIFIED_SINCE, hv("garbage"));
        assert!(!not_modified(&h, tag, 0));
    }
}

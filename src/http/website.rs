//! Users' static websites (`drive.websites`): the page a routed [`Site`] request names
//! (`route::site` decides which requests are pages), served from the owner's public
//! storage. A folder serves its `index.html`; a file path whose folder has one gets a 301
//! that adds the slash (relative links resolve against the folder); a missing page serves
//! the site's `404.html` with status 404. Pages never read or set session cookies, carry
//! `Cache-Control: no-cache` and `X-Content-Type-Options: nosniff`, and a disabled owner's
//! site is 403.

use hyper::{header, Response, StatusCode};

use super::body::Body;
use super::head::Head;
use super::response::ApiError;
use super::route::site::Site;
use super::App;
use crate::storage_path::{percent_encode_path, StoragePath};

/// Answers a page request.
pub fn serve(app: &App, head: &Head, site: &Site) -> Response<Body> {
    let mut resp = respond(app, head, site).unwrap_or_else(ApiError::into_response);
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

fn respond(app: &App, head: &Head, site: &Site) -> Result<Response<Body>, ApiError> {
    let user = app
        .store
        .user(&site.owner)?
        .ok_or_else(ApiError::not_found)?;
    if user.disabled {
        return Err(ApiError::from(crate::account::Error::Disabled));
    }
    if let Some(page) =
        super::storage::serve_file(app, head, &site.owner, &site.target, None, None)?
    {
        return Ok(page);
    }
    let folder_index = StoragePath::strict(&format!("{}/index.html", site.target.as_str()));
    let has_index = match folder_index {
        Ok(p) if !site.path.is_dir() => app.store.entry(&site.owner, &p)?.is_some(),
        _ => false,
    };
    if has_index {
        let mut location = format!("{}/", percent_encode_path(site.path.as_str()));
        if let Some(q) = &site.query {
            location.push('?');
            location.push_str(q);
        }
        return Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, location)
            .body(Body::Empty)
            .map_err(super::response::internal);
    }
    let not_found = StoragePath::strict(&format!("{}/404.html", site.root))
        .map_err(|e| ApiError::bad_request(format!("Invalid website path: {e}")))?;
    let status = Some(StatusCode::NOT_FOUND);
    super::storage::serve_file(app, head, &site.owner, &not_found, None, status)?
        .ok_or_else(ApiError::not_found)
}

//! Directory listing (`GET …/dir/`): the cursor's validation (after the directory is known
//! to exist) and the text output, `pubky://<pk><path>` lines. The parameters come parsed
//! (`http::query::ListQuery`); the scan itself is the store's.

use bytes::Bytes;
use hyper::{header, Response, StatusCode};

use super::body::Body;
use super::query::ListQuery;
use super::response::{internal, ApiError};
use super::App;
use crate::pubkey::{PublicKey, Z32_LEN};
use crate::storage_path::StoragePath;
use crate::store::ListOptions;

/// A cursor is `<pk><path>` or `pubky://<pk><path>`; the key must parse (and is ignored),
/// the path must be canonical.
pub fn parse_cursor(c: &str) -> Option<String> {
    let c = c.strip_prefix("pubky://").unwrap_or(c);
    if c.len() < Z32_LEN || !c.is_char_boundary(Z32_LEN) {
        return None;
    }
    let (key, path) = c.split_at(Z32_LEN);
    PublicKey::parse_z32(key).ok()?;
    StoragePath::strict(path)
        .ok()
        .map(|p| p.as_str().to_string())
}

/// `GET /storage/<pk>/<dir>/` (and legacy `/<dir>/`): the directory's paths as
/// `pubky://<pk><path>` lines, after the cursor.
pub fn respond(
    app: &App,
    tenant: &PublicKey,
    dir: &StoragePath,
    q: &ListQuery,
) -> Result<Response<Body>, ApiError> {
    let cursor = match &q.cursor {
        None => None,
        Some(c) => match parse_cursor(c) {
            Some(p) => Some(p),
            None => {
                // The directory must exist before the cursor is judged (404 before 400).
                let probe = ListOptions {
                    limit: 1,
                    cursor: None,
                    reverse: false,
                    shallow: true,
                };
                app.store.list(tenant, dir, &probe).map_err(dir_not_found)?;
                return Err(ApiError::bad_request("Invalid cursor"));
            }
        },
    };
    let opts = ListOptions {
        limit: q.limit,
        cursor,
        reverse: q.reverse,
        shallow: q.shallow,
    };
    let paths = app.store.list(tenant, dir, &opts).map_err(dir_not_found)?;
    let z32 = tenant.to_z32();
    let mut out = String::with_capacity(paths.len() * (70 + dir.as_str().len()));
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str("pubky://");
        out.push_str(&z32);
        out.push_str(p);
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::Full(Bytes::from(out)))
        .map_err(internal)
}

fn dir_not_found(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::NotFound => {
            ApiError::new(StatusCode::NOT_FOUND, "Directory Not Found")
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";

    #[test]
    fn cursors() {
        let want = Some("/pub/example.com/a.txt".to_string());
        assert_eq!(parse_cursor(&format!("{PK}/pub/example.com/a.txt")), want);
        assert_eq!(
            parse_cursor(&format!("pubky://{PK}/pub/example.com/a.txt")),
            want
        );
        assert_eq!(parse_cursor("/pub/example.com/a.txt"), None);
        assert_eq!(parse_cursor(&format!("{PK}/pub//a")), None);
        assert_eq!(parse_cursor(&format!("{PK}pub/a")), None);
        assert_eq!(parse_cursor("ü".repeat(40).as_str()), None);
    }
}

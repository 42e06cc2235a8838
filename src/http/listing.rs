//! Directory listing (`GET …/dir/`): query parsing (`limit`, `cursor`, `reverse`,
//! `shallow`) with the spec's leniencies, and the text output `pubky://<pk><path>` lines.
//! The scan itself is the store's.

use bytes::Bytes;
use hyper::{header, Response, StatusCode};

use super::body::Body;
use super::error::ApiError;
use super::route::query_pairs;
use super::App;
use crate::pubkey::{PublicKey, Z32_LEN};
use crate::storage_path::StoragePath;
use crate::store::ListOptions;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Listing parameters as given; the cursor is validated only after the directory exists.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub cursor: Option<String>,
    pub reverse: bool,
    pub shallow: bool,
}

impl ListQuery {
    /// Parses the query of any storage GET. Bad `reverse`/`shallow` values are a 400.
    pub fn parse(query: Option<&str>) -> Result<ListQuery, ApiError> {
        let mut q = ListQuery {
            limit: DEFAULT_LIMIT,
            ..Default::default()
        };
        for (k, v) in query_pairs(query.unwrap_or("")) {
            let v = form_decode(v);
            match k {
                "limit" => {
                    q.limit = v
                        .parse::<u16>()
                        .map(|n| (n as usize).min(MAX_LIMIT))
                        .unwrap_or(DEFAULT_LIMIT)
                }
                "cursor" => q.cursor = Some(v).filter(|c| !c.is_empty()),
                "reverse" => q.reverse = parse_bool(&v)?,
                "shallow" => q.shallow = parse_bool(&v)?,
                _ => {}
            }
        }
        Ok(q)
    }
}

fn parse_bool(v: &str) -> Result<bool, ApiError> {
    match v.to_ascii_lowercase().as_str() {
        "" | "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(ApiError::bad_request("Invalid boolean parameter")),
    }
}

/// Form decoding of one query value: `+` is a space, then percent-decoding (lossy).
pub fn form_decode(v: &str) -> String {
    let plus = v.replace('+', " ");
    crate::storage_path::percent_decode(&plus)
        .unwrap_or_else(|_| String::from_utf8_lossy(plus.as_bytes()).into_owned())
}

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
        .map_err(super::storage::internal)
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
    fn query_parsing() {
        let q = ListQuery::parse(Some("reverse&shallow&limit=2")).unwrap();
        assert_eq!((q.reverse, q.shallow, q.limit), (true, true, 2));
        let q = ListQuery::parse(Some("reverse=No&shallow=YES&limit=")).unwrap();
        assert_eq!(
            (q.reverse, q.shallow, q.limit),
            (false, true, DEFAULT_LIMIT)
        );
        assert_eq!(
            ListQuery::parse(Some("limit=70000")).unwrap().limit,
            DEFAULT_LIMIT
        );
        assert_eq!(
            ListQuery::parse(Some("limit=5000")).unwrap().limit,
            MAX_LIMIT
        );
        assert_eq!(ListQuery::parse(Some("limit=0")).unwrap().limit, 0);
        assert_eq!(ListQuery::parse(Some("cursor=")).unwrap().cursor, None);
        assert!(ListQuery::parse(Some("reverse=maybe")).is_err());
        assert!(ListQuery::parse(Some("shallow=2")).is_err());
        assert_eq!(
            ListQuery::parse(Some("cursor=a+b%2Fc"))
                .unwrap()
                .cursor
                .unwrap(),
            "a b/c"
        );
    }

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

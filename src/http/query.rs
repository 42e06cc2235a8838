//! Query strings, decoded once: raw pairs, form decoding, and the typed parameters of the
//! routes that take them (listings, event streams, signup tokens, the relay's policy).
//! `route` parses them into the `Endpoint`; a malformed value travels there as a
//! [`BadQuery`] that the handler raises at its place in the spec's check order. Malformed values are 400s
//! with the spec's wording.

use std::borrow::Cow;

use crate::announce::relay::Policy;
use crate::auth::secrets::is_signup_token;
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;

/// A query that cannot be parsed: a 400 with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadQuery(pub Cow<'static, str>);

impl BadQuery {
    fn new(m: impl Into<Cow<'static, str>>) -> Self {
        BadQuery(m.into())
    }
}

/// Raw `key=value` pairs of a query string (not decoded).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Form decoding of one query value: `+` is a space, then percent-decoding (lossy).
pub fn form_decode(v: &str) -> String {
    let plus = v.replace('+', " ");
    crate::storage_path::percent_decode(&plus)
        .unwrap_or_else(|_| String::from_utf8_lossy(plus.as_bytes()).into_owned())
}

/// Most users one event stream may follow.
pub const MAX_USERS: usize = 50;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Listing parameters as given; the cursor is validated only after the directory exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub cursor: Option<String>,
    pub reverse: bool,
    pub shallow: bool,
}

impl ListQuery {
    /// Parses the query of any storage GET. Bad `reverse`/`shallow` values are a 400.
    pub fn parse(query: Option<&str>) -> Result<ListQuery, BadQuery> {
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

fn parse_bool(v: &str) -> Result<bool, BadQuery> {
    match v.to_ascii_lowercase().as_str() {
        "" | "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(BadQuery::new("Invalid boolean parameter")),
    }
}

/// The `signup_token` query parameter; a malformed one is a 400 even in open mode.
pub fn signup_token_param(query: Option<&str>) -> Result<Option<String>, BadQuery> {
    let Some(v) = query_pairs(query.unwrap_or(""))
        .find(|(k, _)| *k == "signup_token")
        .map(|(_, v)| form_decode(v))
    else {
        return Ok(None);
    };
    if !is_signup_token(&v) {
        return Err(BadQuery::new(format!("Invalid signup token format: {v}")));
    }
    Ok(Some(v))
}

/// The parameters of `GET /events-stream` after §6.1's parsing rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamQuery {
    /// Users in request order (duplicates collapsed) with their raw cursors.
    pub users: Vec<(PublicKey, Option<String>)>,
    pub limit: Option<usize>,
    pub live: bool,
    pub reverse: bool,
    pub paths: Vec<StoragePath>,
    /// Admin form: one cursor for the whole stream.
    pub cursor: Option<String>,
}

fn sse_bool(v: &str) -> bool {
    v == "true" || v == "1"
}

impl StreamQuery {
    /// Parses the query; `admin` allows no `user` and a global `cursor`, and forbids
    /// per-user cursors.
    pub fn parse(query: Option<&str>, admin: bool) -> Result<StreamQuery, BadQuery> {
        let mut q = StreamQuery::default();
        let mut user_values = 0usize;
        for (k, raw) in query_pairs(query.unwrap_or("")) {
            let v = form_decode(raw);
            match k {
                "user" if !v.is_empty() => {
                    user_values += 1;
                    // `pubky://<key>` as some clients write a user.
                    let v = v.strip_prefix("pubky://").map_or(v.clone(), str::to_string);
                    let (key, cursor) = match v.split_once(':') {
                        Some((k, c)) if !admin => (k, Some(c.to_string())),
                        _ => (v.as_str(), None),
                    };
                    let pk = PublicKey::parse_z32(key)
                        .map_err(|_| BadQuery::new(format!("Invalid public key: {v}")))?;
                    if !q.users.iter().any(|(u, _)| *u == pk) {
                        q.users.push((pk, cursor));
                    }
                }
                "limit" => {
                    let n: u16 = v
                        .parse()
                        .map_err(|_| BadQuery::new(format!("Invalid limit: {v}")))?;
                    if n == 0 {
                        return Err(BadQuery::new("limit must be at least 1"));
                    }
                    q.limit = Some(n as usize);
                }
                "live" => q.live = sse_bool(&v),
                "reverse" => q.reverse = sse_bool(&v),
                "cursor" if admin && !v.is_empty() => q.cursor = Some(v),
                "path" if !v.is_empty() => {
                    let p = if v.starts_with('/') {
                        v.clone()
                    } else {
                        format!("/{v}")
                    };
                    let p = StoragePath::normalize(&p)
                        .map_err(|e| BadQuery::new(format!("Invalid path: {e}")))?;
                    if !q.paths.contains(&p) {
                        q.paths.push(p);
                    }
                }
                _ => {}
            }
        }
        let distinct = if admin { q.users.len() } else { user_values };
        if q.users.is_empty() && !admin {
            return Err(BadQuery::new("user parameter is required"));
        }
        if distinct > MAX_USERS {
            return Err(BadQuery::new(format!(
                "Too many users. Maximum allowed: {MAX_USERS}"
            )));
        }
        if q.live && q.reverse {
            return Err(BadQuery::new("Cannot use live mode with reverse ordering"));
        }
        Ok(q)
    }
}

/// The relay's `?policy=` (raw, as relays read it); absent is the default.
pub fn relay_policy(query: Option<&str>) -> Result<Policy, BadQuery> {
    match query_pairs(query.unwrap_or(""))
        .find(|(k, _)| *k == "policy")
        .map(|(_, v)| v)
    {
        None => Ok(Policy::default()),
        Some(v) => Policy::parse(v)
            .ok_or_else(|| BadQuery::new("policy must be CacheFirst, CacheOnly or NetworkOnly")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

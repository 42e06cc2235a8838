//! The credentials a request carries, read from its headers once: the grant bearer
//! (`Authorization: Bearer …`) and the cookies shaped like session secrets. What they mean
//! is decided by `account::caller`.

use hyper::{header, HeaderMap};

use crate::account::caller::COOKIE_SECRET_LEN;
use crate::account::Credentials;
use crate::auth::token;

/// Reads the bearer and the session-shaped cookies of a request.
pub fn credentials(headers: &HeaderMap) -> Credentials {
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    Credentials {
        bearer: auth.and_then(token::bearer_from_header).map(str::to_string),
        bearer_header: auth.is_some_and(|v| v.starts_with(b"Bearer ")),
        cookies: headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(_, v)| v.len() == COOKIE_SECRET_LEN)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

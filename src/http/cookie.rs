//! Cookie sessions for older clients (§4.3 of the auth spec): `POST /signup` and
//! `POST /session` take an AuthToken and answer a CookieSessionRecord plus a cookie named
//! after the user; `GET`/`DELETE /session` read or end it. The cookie is then accepted on
//! storage routes like a bearer (`session::Caller`).

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{header, Response, StatusCode};

use super::body::{read_limited, Body, BodyError};
use super::head::Head;
use super::response::ApiError;
use super::App;
use crate::account::{signup as accounts, Caller, GrantSession};
use crate::auth::auth_token::{self, AuthToken};
use crate::clock;
use crate::pubkey::PublicKey;
use crate::store::CookieSession;

/// The cookie lives as long as its session (`store::COOKIE_LIFETIME_SECS`, one year).
const MAX_AGE_SECS: u64 = crate::store::COOKIE_LIFETIME_SECS;

/// `Secure; SameSite=None` only for hosts a browser reaches over HTTPS: a key or a dotted
/// domain, not an IP address, `localhost` or a bare name.
pub fn is_secure(host: &str) -> bool {
    let name = if host.starts_with('[') {
        return false;
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if name.is_empty() || name.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    PublicKey::parse_z32(name).is_ok() || name.contains('.')
}

fn set_cookie(name: &str, value: &str, host: &str, remove: bool) -> String {
    let (age, expires) = if remove {
        (0, std::time::UNIX_EPOCH)
    } else {
        (
            MAX_AGE_SECS,
            std::time::SystemTime::now() + std::time::Duration::from_secs(MAX_AGE_SECS),
        )
    };
    let mut c = format!(
        "{name}={value}; Path=/; HttpOnly; Max-Age={age}; Expires={}",
        httpdate::fmt_http_date(expires)
    );
    if is_secure(host) {
        c.push_str("; Secure; SameSite=None");
    }
    c
}

/// CookieSessionRecord (postcard): version, key, created_at, name, user agent, caps.
pub fn session_record(user: &PublicKey, created_at: u64, caps: &[String]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut out = vec![0];
    out.extend_from_slice(user.as_bytes());
    varint(&mut out, created_at);
    out.extend_from_slice(&[0, 0]);
    varint(&mut out, caps.len() as u64);
    for c in caps {
        varint(&mut out, c.len() as u64);
        out.extend_from_slice(c.as_bytes());
    }
    out
}

/// Reads and verifies the AuthToken body, then spends it (single use).
async fn read_token(app: &App, body: Incoming) -> Result<AuthToken, ApiError> {
    let limits = &app.config.limits;
    let body = read_limited(body, limits.max_json_body_bytes, limits.body_pace)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Body too large"),
            other => ApiError::from(other),
        })?;
    let now = clock::now_micros();
    let token = auth_token::verify(&body, now)?;
    app.replay.check(&token, now)?;
    Ok(token)
}

/// Opens a cookie session for the token's user and builds the 200 answer.
async fn open(app: &App, token: &AuthToken, head: &Head) -> Result<Response<Body>, ApiError> {
    let host = head.host.as_str();
    let secret = crate::auth::secrets::new_cookie_secret();
    let caps: Vec<String> = if token.caps_text.is_empty() {
        Vec::new()
    } else {
        token.caps_text.split(',').map(str::to_string).collect()
    };
    let session = CookieSession {
        user: token.user,
        caps: caps.clone(),
        created_at: clock::now_secs(),
        // Bound to the page that signed in; `null` (sandboxed frames, files) names no one
        // page, so such a session serves only requests without an origin.
        origin: head.creds.origin.clone().filter(|o| o != "null"),
    };
    app.store.create_cookie_session(&secret, &session).await?;
    let record = session_record(&token.user, clock::now_micros(), &caps);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            header::SET_COOKIE,
            set_cookie(&token.user.to_z32(), &secret, host, false),
        )
        .body(Body::Full(Bytes::from(record)))
        .map_err(super::response::internal)
}

/// `POST /signup[?signup_token=…]`: creates the account and signs it in with a cookie.
pub async fn signup(
    app: &App,
    head: &Head,
    body: Incoming,
    signup_token: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let token = read_token(app, body).await?;
    let (mode, now) = (app.config.general.signup_mode, clock::now_secs());
    accounts::create_account(
        &app.store,
        &app.data_dir,
        mode,
        &token.user,
        signup_token,
        now,
    )
    .await?;
    app.metrics.signup();
    tracing::info!(user = %token.user, "signed up (cookie)");
    open(app, &token, head).await
}

/// `POST /session`: signs an existing account in with a cookie.
pub async fn create(app: &App, head: &Head, body: Incoming) -> Result<Response<Body>, ApiError> {
    let token = read_token(app, body).await?;
    accounts::sign_in(&app.store, &token.user)?;
    open(app, &token, head).await
}

/// `GET /session`: the tenant's cookie session (a grant bearer does not count).
pub fn get(app: &App, head: &Head, tenant: Option<PublicKey>) -> Result<Response<Body>, ApiError> {
    let tenant = tenant.ok_or_else(|| ApiError::bad_request("Missing request tenant"))?;
    let creds = &head.creds;
    if GrantSession::resolve(&app.store, creds, clock::now_secs())?.is_some() {
        return Err(ApiError::no_session());
    }
    let now = clock::now_secs();
    let c = Caller::by_cookie(&app.store, creds, &tenant, now)?.ok_or_else(ApiError::no_session)?;
    let secret = creds.cookie(&tenant.to_z32()).unwrap_or_default();
    let created = app
        .store
        .cookie_session(secret)?
        .map_or(0, |s| s.created_at);
    let record = session_record(&c.user, created, &c.caps.to_strings());
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::Full(Bytes::from(record)))
        .map_err(super::response::internal)
}

/// `DELETE /session`: ends the tenant's cookie session (if any) and clears the cookie.
pub async fn delete(
    app: &App,
    head: &Head,
    tenant: Option<PublicKey>,
) -> Result<Response<Body>, ApiError> {
    let tenant = tenant.ok_or_else(|| ApiError::bad_request("Missing request tenant"))?;
    let name = tenant.to_z32();
    if let Some(secret) = head.creds.cookie(&name) {
        if app
            .store
            .cookie_session(secret)?
            .is_some_and(|s| s.user == tenant && head.creds.cookie_usable(s.origin.as_deref()))
        {
            app.store.delete_cookie_session(secret).await?;
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::SET_COOKIE, set_cookie(&name, "", &head.host, true))
        .body(Body::Empty)
        .map_err(super::response::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::caller::COOKIE_SECRET_LEN;
    use hyper::HeaderMap;

    const PK: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";

    #[test]
    fn secrets_and_records() {
        use crate::auth::secrets::{crockford, new_cookie_secret};
        assert_eq!(crockford(&[0; 16]), "00000000000000000000000000");
        let seq: Vec<u8> = (0..16).collect();
        assert_eq!(crockford(&seq), "000G40R40M30E209185GR38E1W");
        assert_eq!(new_cookie_secret().len(), COOKIE_SECRET_LEN);
        let user = PublicKey::parse_z32(PK).unwrap();
        let mut want = vec![0u8];
        want.extend_from_slice(user.as_bytes());
        want.extend_from_slice(&[0, 0, 0, 1, 4, 47, 58, 114, 119]);
        assert_eq!(session_record(&user, 0, &["/:rw".to_string()]), want);
    }

    #[test]
    fn secure_hosts() {
        for h in [
            "",
            "127.0.0.1",
            "homeserver",
            "testnet",
            "167.86.102.121",
            "[2001:0db8:0000:0000:0000:ff00:0042:8329]",
            "localhost",
            "localhost:23423",
        ] {
            assert!(!is_secure(h), "{h}");
        }
        assert!(is_secure(PK));
        assert!(is_secure("example.com"));
        assert!(is_secure("example.com:443"));
    }

    #[test]
    fn cookie_lookup() {
        let mut h = HeaderMap::new();
        let secret = "000G40R40M30E209185GR38E1W";
        h.append(
            header::COOKIE,
            format!("other=1; {PK}={secret}").parse().unwrap(),
        );
        let creds = super::super::head::credentials(&h);
        assert_eq!(creds.cookie(PK), Some(secret));
        assert_eq!(creds.cookie("other"), None);
        let c = set_cookie(PK, secret, "localhost:6286", false);
        assert!(c.starts_with(&format!(
            "{PK}={secret}; Path=/; HttpOnly; Max-Age=31536000; Expires="
        )));
        assert!(!c.contains("Secure"));
        let c = set_cookie(PK, "", "example.com", true);
        assert!(c.contains("Max-Age=0") && c.ends_with("; Secure; SameSite=None"));
    }
}

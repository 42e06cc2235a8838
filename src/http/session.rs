//! Who is asking: resolves `Authorization: Bearer <token>` to the grant session it belongs
//! to (user + capabilities from the stored grant). Unknown, expired or malformed credentials
//! simply mean "no session"; each route decides whether that is a 401.

use hyper::{header, HeaderMap};

use super::response::ApiError;
use super::App;
use crate::auth::capability::Capabilities;
use crate::auth::token;
use crate::clock;
use crate::pubkey::PublicKey;
use crate::store::GrantRecord;

pub struct Session {
    pub user: PublicKey,
    pub caps: Capabilities,
    pub grant: GrantRecord,
    pub token_expires_at: u64,
}

impl Session {
    pub fn from_headers(app: &App, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
        let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| token::bearer_from_header(v.as_bytes()))
        else {
            return Ok(None);
        };
        let hash = token::bearer_hash(bearer);
        let Some((session, grant)) = app.store.session(&hash, clock::now_secs())? else {
            return Ok(None);
        };
        // Stored grants were parsed when they were accepted; a failure here is corruption.
        let caps = Capabilities::from_strings(&grant.caps).map_err(|e| {
            ApiError::from(crate::store::StoreError::Corrupt(format!(
                "stored capabilities: {e}"
            )))
        })?;
        Ok(Some(Session {
            user: session.user,
            caps,
            token_expires_at: session.expires_at,
            grant,
        }))
    }
}

/// How a caller authenticated (a metrics label too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Grant,
    Cookie,
}

/// Whoever a request acts for, from a grant bearer or a cookie session.
pub struct Caller {
    pub user: PublicKey,
    pub caps: Capabilities,
    pub method: AuthMethod,
}

/// Which credentials a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookiePolicy {
    /// Storage: the bearer first, the tenant's cookie when the bearer is absent or invalid.
    Fallback,
    /// Event streams: any `Authorization: Bearer` header, even an invalid one, disables
    /// the cookie.
    OnlyWithoutBearer,
}

impl Caller {
    /// Resolves the caller of a request aimed at `tenant`. The cookie considered is the one
    /// named after the tenant; a cookie of another user is never selected.
    pub fn resolve(
        app: &App,
        headers: &HeaderMap,
        tenant: Option<&PublicKey>,
        policy: CookiePolicy,
    ) -> Result<Option<Caller>, ApiError> {
        if let Some(s) = Session::from_headers(app, headers)? {
            return Ok(Some(Caller {
                user: s.user,
                caps: s.caps,
                method: AuthMethod::Grant,
            }));
        }
        let has_bearer = headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes().starts_with(b"Bearer "));
        if policy == CookiePolicy::OnlyWithoutBearer && has_bearer {
            return Ok(None);
        }
        let Some(tenant) = tenant else {
            return Ok(None);
        };
        cookie_caller(&app.store, headers, tenant)
    }
}

/// The cookie session named after `tenant`, if it is valid and belongs to the tenant.
pub fn cookie_caller(
    store: &crate::store::Store,
    headers: &HeaderMap,
    tenant: &PublicKey,
) -> Result<Option<Caller>, ApiError> {
    let Some(secret) = super::cookie::cookie_value(headers, &tenant.to_z32()) else {
        return Ok(None);
    };
    let Some(s) = store.cookie_session(&secret)? else {
        return Ok(None);
    };
    if s.user != *tenant {
        return Ok(None);
    }
    let caps = Capabilities::from_strings(&s.caps).map_err(|e| {
        ApiError::from(crate::store::StoreError::Corrupt(format!(
            "stored capabilities: {e}"
        )))
    })?;
    Ok(Some(Caller {
        user: s.user,
        caps,
        method: AuthMethod::Cookie,
    }))
}

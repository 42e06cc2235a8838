//! Who is asking: the credentials a request carries (a grant bearer, cookie sessions named
//! after users) resolved against the store. Unknown, expired or malformed credentials simply
//! mean "nobody"; each route decides whether that is a 401.

use super::Error;
use crate::auth::capability::Capabilities;
use crate::auth::secrets;
use crate::pubkey::PublicKey;
use crate::store::{GrantRecord, Store, StoreError};

/// Length of a cookie session secret: 16 bytes in Crockford base32.
pub const COOKIE_SECRET_LEN: usize = 26;

/// The credentials of one request, as the transport found them.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `Authorization: Bearer <token>` with a token of the right shape.
    pub bearer: Option<String>,
    /// Whether any `Authorization: Bearer …` header was sent, well-formed or not.
    pub bearer_header: bool,
    /// Cookies whose value has the shape of a session secret: (name, secret).
    pub cookies: Vec<(String, String)>,
    /// The request's `Origin`, when a browser sent one.
    pub origin: Option<String>,
    /// A browser said a page made the request (`Sec-Fetch-Site` other than `none`) without
    /// naming an origin: a link, an image, a script tag, or a same-origin read by a page
    /// served from this host, which can only be a user's website.
    pub foreign_without_origin: bool,
}

impl Credentials {
    /// Whether a cookie session bound to `bound` may act for this request: a request that
    /// names an origin must name the one that signed in; one that names none must not come
    /// from another site. The cookie is ambient (the browser attaches it to any site's
    /// request), so without this any page could use it.
    pub fn cookie_usable(&self, bound: Option<&str>) -> bool {
        match &self.origin {
            Some(o) => bound == Some(o.as_str()),
            None => !self.foreign_without_origin,
        }
    }

    /// The first cookie called `name` that looks like a session secret.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A grant session: the bearer's user, capabilities and stored grant.
pub struct GrantSession {
    pub user: PublicKey,
    pub caps: Capabilities,
    pub grant: GrantRecord,
    pub token_expires_at: u64,
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
    /// The account is disabled: its credentials authorise nothing (`access` refuses every
    /// write and private read with "User is disabled").
    pub disabled: bool,
}

/// Whether the account exists and is disabled (a missing account is left to each route).
fn is_disabled(store: &Store, user: &PublicKey) -> Result<bool, Error> {
    Ok(store.user(user)?.is_some_and(|u| u.disabled))
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

/// Stored capabilities were parsed when they were accepted; a failure here is corruption.
fn stored_caps(caps: &[String]) -> Result<Capabilities, Error> {
    Capabilities::from_strings(caps)
        .map_err(|e| StoreError::Corrupt(format!("stored capabilities: {e}")).into())
}

impl GrantSession {
    /// The grant session of a well-formed, known, unexpired bearer.
    pub fn resolve(store: &Store, creds: &Credentials, now: u64) -> Result<Option<Self>, Error> {
        let Some(bearer) = &creds.bearer else {
            return Ok(None);
        };
        let Some((session, grant)) = store.session(&secrets::bearer_hash(bearer), now)? else {
            return Ok(None);
        };
        Ok(Some(GrantSession {
            user: session.user,
            caps: stored_caps(&grant.caps)?,
            token_expires_at: session.expires_at,
            grant,
        }))
    }
}

impl Caller {
    /// Resolves the caller of a request aimed at `tenant`. The cookie considered is the one
    /// named after the tenant; a cookie of another user is never selected.
    pub fn resolve(
        store: &Store,
        creds: &Credentials,
        tenant: Option<&PublicKey>,
        policy: CookiePolicy,
        now: u64,
    ) -> Result<Option<Caller>, Error> {
        if let Some(s) = GrantSession::resolve(store, creds, now)? {
            return Ok(Some(Caller {
                disabled: is_disabled(store, &s.user)?,
                user: s.user,
                caps: s.caps,
                method: AuthMethod::Grant,
            }));
        }
        if policy == CookiePolicy::OnlyWithoutBearer && creds.bearer_header {
            return Ok(None);
        }
        match tenant {
            Some(tenant) => Self::by_cookie(store, creds, tenant, now),
            None => Ok(None),
        }
    }

    /// The cookie session named after `tenant`, if it is valid, unexpired, belongs to the
    /// tenant and may be used from this request's origin.
    pub fn by_cookie(
        store: &Store,
        creds: &Credentials,
        tenant: &PublicKey,
        now: u64,
    ) -> Result<Option<Caller>, Error> {
        let Some(secret) = creds.cookie(&tenant.to_z32()) else {
            return Ok(None);
        };
        let Some(s) = store.cookie_session(secret)? else {
            return Ok(None);
        };
        let expired = now
            >= s.created_at
                .saturating_add(crate::store::COOKIE_LIFETIME_SECS);
        if s.user != *tenant || expired || !creds.cookie_usable(s.origin.as_deref()) {
            return Ok(None);
        }
        Ok(Some(Caller {
            disabled: is_disabled(store, &s.user)?,
            user: s.user,
            caps: stored_caps(&s.caps)?,
            method: AuthMethod::Cookie,
        }))
    }

    /// The user a long-lived request's credential still resolves to: a well-formed bearer's
    /// session only, else the tenant's cookie. Store failures count as "nobody".
    pub fn still_valid(
        store: &Store,
        creds: &Credentials,
        tenant: &PublicKey,
        now: u64,
    ) -> Option<PublicKey> {
        let user = match &creds.bearer {
            Some(bearer) => match store.session(&secrets::bearer_hash(bearer), now) {
                Ok(Some((s, _))) => s.user,
                _ => return None,
            },
            None => match Self::by_cookie(store, creds, tenant, now) {
                Ok(Some(c)) => c.user,
                _ => return None,
            },
        };
        // A disabled account's streams end.
        match is_disabled(store, &user) {
            Ok(false) => Some(user),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(origin: Option<&str>, fetch_site: bool) -> Credentials {
        Credentials {
            origin: origin.map(str::to_string),
            foreign_without_origin: fetch_site,
            ..Credentials::default()
        }
    }

    #[test]
    fn a_cookie_serves_only_the_origin_that_signed_in() {
        let app = Some("http://app.example");
        assert!(creds(app, false).cookie_usable(app));
        assert!(!creds(Some("http://evil.example"), false).cookie_usable(app));
        // a session a native client made is no use to any web page
        assert!(!creds(app, false).cookie_usable(None));
        assert!(!creds(Some("null"), false).cookie_usable(None));
        // no origin: a native client, or the browser on a link or tag from another site
        assert!(creds(None, false).cookie_usable(app));
        assert!(creds(None, false).cookie_usable(None));
        assert!(!creds(None, true).cookie_usable(app));
        assert!(!creds(None, true).cookie_usable(None));
    }
}

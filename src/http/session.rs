//! Who is asking: resolves `Authorization: Bearer <token>` to the grant session it belongs
//! to (user + capabilities from the stored grant). Unknown, expired or malformed credentials
//! simply mean "no session"; each route decides whether that is a 401.

use hyper::{header, HeaderMap};

use super::error::ApiError;
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

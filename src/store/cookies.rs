//! Cookie sessions (the older AuthToken sign-in): the SHA-256 of the secret → user,
//! capabilities, when it was made and the web origin it is bound to. Only the hash is stored,
//! so the database never holds a working cookie. `DELETE /session` removes one; the account
//! layer lets them lapse after [`COOKIE_LIFETIME_SECS`] (the cookie's own `Max-Age`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codec::{decode, encode};
use super::{Store, StoreError};
use crate::pubkey::PublicKey;

/// How long a cookie session lasts, in seconds: one year, as the cookie's `Max-Age` says.
pub const COOKIE_LIFETIME_SECS: u64 = 365 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieSession {
    pub user: PublicKey,
    pub caps: Vec<String>,
    /// seconds since the epoch
    pub created_at: u64,
    /// The `Origin` of the web page that signed in; `None` when the sign-in came from a
    /// client that sent none (a native app), or from a store written before sessions were
    /// bound to origins.
    pub origin: Option<String>,
}

/// A cookie session as stored before the origin binding.
#[derive(Deserialize)]
struct CookieSessionV1 {
    user: PublicKey,
    caps: Vec<String>,
    created_at: u64,
}

fn decode_session(bytes: &[u8]) -> Result<CookieSession, StoreError> {
    decode("cookie session", bytes).or_else(|e| {
        match decode::<CookieSessionV1>("cookie session", bytes) {
            Ok(v1) => Ok(CookieSession {
                user: v1.user,
                caps: v1.caps,
                created_at: v1.created_at,
                origin: None,
            }),
            Err(_) => Err(e),
        }
    })
}

/// The key a secret is stored under.
fn key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Store {
    pub async fn create_cookie_session(
        &self,
        secret: &str,
        session: &CookieSession,
    ) -> Result<(), StoreError> {
        let ticket = {
            let _w = self.writer();
            self.0
                .t
                .cookie_sessions
                .insert(key(secret), encode(session))?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await
    }

    pub fn cookie_session(&self, secret: &str) -> Result<Option<CookieSession>, StoreError> {
        match self.0.t.cookie_sessions.get(key(secret))? {
            Some(v) => decode_session(&v).map(Some),
            None => Ok(None),
        }
    }

    pub async fn delete_cookie_session(&self, secret: &str) -> Result<(), StoreError> {
        let ticket = {
            let _w = self.writer();
            self.0.t.cookie_sessions.remove(key(secret))?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await?;
        // Private event streams re-check their credential when woken.
        self.wake_subscribers();
        Ok(())
    }

    /// Stores written before secrets were hashed keep sessions under the secret itself
    /// (26 bytes); re-key them under its hash. Idempotent: a crash half-way leaves each row
    /// under one key or the other, and the next open finishes.
    pub(super) fn hash_cookie_secrets(&self) -> Result<(), StoreError> {
        let tree = &self.0.t.cookie_sessions;
        let mut plain = Vec::new();
        for kv in tree.iter() {
            let (k, v) = kv?;
            if k.len() != 32 {
                plain.push((k, v));
            }
        }
        if plain.is_empty() {
            return Ok(());
        }
        for (k, v) in &plain {
            let secret = String::from_utf8_lossy(k);
            tree.insert(key(&secret), v)?;
        }
        self.flush_durably()?;
        for (k, _) in &plain {
            tree.remove(k)?;
        }
        self.flush_durably()?;
        tracing::info!(
            sessions = plain.len(),
            "cookie session secrets now stored hashed"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_written_before_origins_still_decode() {
        #[derive(Serialize)]
        struct V1 {
            user: PublicKey,
            caps: Vec<String>,
            created_at: u64,
        }
        let user =
            PublicKey::parse_z32("8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo").unwrap();
        let old = encode(&V1 {
            user,
            caps: vec!["/:rw".into()],
            created_at: 5,
        });
        let s = decode_session(&old).unwrap();
        assert_eq!((s.user, s.created_at, s.origin), (user, 5, None));
        let new = CookieSession {
            origin: Some("https://app.example".into()),
            ..s
        };
        assert_eq!(decode_session(&encode(&new)).unwrap(), new);
    }
}

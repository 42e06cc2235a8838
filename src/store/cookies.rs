//! Cookie sessions (the older AuthToken sign-in): secret → user and capabilities. They never
//! expire server-side; `DELETE /session` removes one.

use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::{Store, StoreError};
use crate::pubkey::PublicKey;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieSession {
    pub user: PublicKey,
    pub caps: Vec<String>,
    /// seconds since the epoch
    pub created_at: u64,
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
                .insert(secret.as_bytes(), encode(session))?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await
    }

    pub fn cookie_session(&self, secret: &str) -> Result<Option<CookieSession>, StoreError> {
        match self.0.t.cookie_sessions.get(secret.as_bytes())? {
            Some(v) => decode("cookie session", &v).map(Some),
            None => Ok(None),
        }
    }

    pub async fn delete_cookie_session(&self, secret: &str) -> Result<(), StoreError> {
        let ticket = {
            let _w = self.writer();
            self.0.t.cookie_sessions.remove(secret.as_bytes())?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await?;
        // Private event streams re-check their credential when woken.
        self.wake_subscribers();
        Ok(())
    }
}

//! What the admin API reads and changes: every user, enabling/disabling, per-user quota
//! overrides (`user_quotas`), signup tokens with the quota they hand to their redeemer
//! (`token_quotas`). Writes share the writer lock and group commit with everything else.

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::codec::{decode, encode};
use super::{tx_err, SignupToken, Store, StoreError, User};
use crate::pubkey::PublicKey;

/// A storage limit override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    Unlimited,
    Mb(u64),
}

/// Per-user overrides set by the operator; `None` = the server default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaOverrides {
    pub storage: Option<Limit>,
    /// Bandwidth strings (`"4mb/s"`) or `"unlimited"`.
    pub rate_read: Option<String>,
    pub rate_write: Option<String>,
    pub rate_read_burst: Option<u64>,
    pub rate_write_burst: Option<u64>,
    /// `None` = unrestricted; entries ending in `/` are prefixes, others exact files.
    pub allowed_write_paths: Option<Vec<String>>,
}

impl QuotaOverrides {
    /// The `User::quota_bytes` value these overrides imply.
    fn quota_bytes(&self) -> Option<u64> {
        match self.storage {
            None => None,
            Some(Limit::Unlimited) => Some(u64::MAX),
            Some(Limit::Mb(mb)) => Some(mb.saturating_mul(1 << 20)),
        }
    }
}

impl Store {
    /// Every account in key order.
    pub fn users(&self) -> Result<Vec<(PublicKey, User)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.0.t.users.iter() {
            let (k, v) = kv?;
            let bytes: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("user key".into()))?;
            let pk =
                PublicKey::from_bytes(bytes).map_err(|_| StoreError::Corrupt("user key".into()))?;
            out.push((pk, decode("user", &v)?));
        }
        Ok(out)
    }

    pub async fn set_disabled(&self, pk: &PublicKey, disabled: bool) -> Result<(), StoreError> {
        let ticket = {
            let _w = self.writer();
            let mut user = self.user(pk)?.ok_or(StoreError::UserNotFound)?;
            user.disabled = disabled;
            self.0.t.users.insert(pk.as_bytes(), encode(&user))?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await?;
        // The account's open private streams re-check their credential.
        self.wake_subscribers_of(pk);
        Ok(())
    }

    pub fn quota_overrides(&self, pk: &PublicKey) -> Result<QuotaOverrides, StoreError> {
        match self.0.t.user_quotas.get(pk.as_bytes())? {
            Some(v) => decode("user quota", &v),
            None => Ok(QuotaOverrides::default()),
        }
    }

    /// Replaces a user's overrides (and the storage limit the write path enforces).
    pub async fn set_quota_overrides(
        &self,
        pk: &PublicKey,
        q: &QuotaOverrides,
    ) -> Result<(), StoreError> {
        let ticket = {
            let _w = self.writer();
            let mut user = self.user(pk)?.ok_or(StoreError::UserNotFound)?;
            user.quota_bytes = q.quota_bytes();
            let t = &self.0.t;
            (&t.users, &t.user_quotas)
                .transaction(|(users, quotas)| {
                    users.insert(pk.as_bytes(), encode(&user))?;
                    quotas.insert(pk.as_bytes(), encode(q))?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await
    }

    /// A token whose redeemer gets `quota` (empty overrides = server defaults).
    pub async fn create_signup_token_with_quota(
        &self,
        token: &str,
        quota: &QuotaOverrides,
        now_secs: u64,
    ) -> Result<(), StoreError> {
        let ticket = {
            let _w = self.writer();
            let st = SignupToken {
                created_at: now_secs,
                used_by: None,
            };
            let t = &self.0.t;
            (&t.signup_tokens, &t.token_quotas)
                .transaction(|(tokens, quotas)| {
                    tokens.insert(token.as_bytes(), encode(&st))?;
                    if *quota != QuotaOverrides::default() {
                        quotas.insert(token.as_bytes(), encode(quota))?;
                    }
                    Ok(())
                })
                .map_err(tx_err)?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await
    }

    /// Revokes an unused signup token (with the quota it carried). A used one is kept: it
    /// records who signed up with it.
    pub async fn revoke_signup_token(&self, token: &str) -> Result<(), StoreError> {
        let ticket = {
            let _w = self.writer();
            let t = &self.0.t;
            let st: SignupToken = match t.signup_tokens.get(token.as_bytes())? {
                Some(v) => decode("signup token", &v)?,
                None => return Err(StoreError::TokenUnknown),
            };
            if st.used_by.is_some() {
                return Err(StoreError::TokenUsed);
            }
            (&t.signup_tokens, &t.token_quotas)
                .transaction(|(tokens, quotas)| {
                    tokens.remove(token.as_bytes())?;
                    quotas.remove(token.as_bytes())?;
                    Ok(())
                })
                .map_err(tx_err)?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await
    }

    /// Every signup token in token order, with the quota it carries.
    pub fn signup_tokens(&self) -> Result<Vec<(String, SignupToken, QuotaOverrides)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.0.t.signup_tokens.iter() {
            let (k, v) = kv?;
            let token = String::from_utf8(k.to_vec())
                .map_err(|_| StoreError::Corrupt("signup token key".into()))?;
            let quota = match self.0.t.token_quotas.get(&k)? {
                Some(q) => decode("token quota", &q)?,
                None => QuotaOverrides::default(),
            };
            out.push((token, decode("signup token", &v)?, quota));
        }
        Ok(out)
    }

    /// Applies a redeemed token's quota to its new user (called by `create_user`, under
    /// the writer lock).
    pub(super) fn token_quota(&self, token: &str) -> Result<Option<QuotaOverrides>, StoreError> {
        match self.0.t.token_quotas.get(token.as_bytes())? {
            Some(v) => decode("token quota", &v).map(Some),
            None => Ok(None),
        }
    }
}

/// Applies overrides to a user about to be created.
pub(super) fn apply(user: &mut User, q: &QuotaOverrides) {
    user.quota_bytes = q.quota_bytes();
}

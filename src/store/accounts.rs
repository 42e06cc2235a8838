//! Accounts and credentials: users, signup tokens, grants, bearer sessions and PoP nonces.
//! Writes use the same writer lock and group commit as files.

use sled::Transactional;

use super::codec::{decode, encode};
use super::{
    keys, space, tx_err, GrantRecord, SessionRecord, SignupToken, Store, StoreError, User,
};
use crate::pubkey::PublicKey;

/// PoP nonces are remembered this long (twice the allowed clock skew).
pub const NONCE_TTL_SECS: u64 = 360;

impl Store {
    /// Creates an account, consuming `token` when given (atomically with the account).
    pub async fn create_user(
        &self,
        pk: &PublicKey,
        token: Option<&str>,
        now_secs: u64,
    ) -> Result<(), StoreError> {
        self.ensure_space()?;
        let ticket = {
            let _w = self.writer();
            let t = &self.0.t;
            if t.users.contains_key(pk.as_bytes())? {
                return Err(StoreError::UserExists);
            }
            let used_token = match token {
                None => None,
                Some(tok) => {
                    let mut st = self.signup_token(tok)?.ok_or(StoreError::TokenUnknown)?;
                    if st.used_by.is_some() {
                        return Err(StoreError::TokenUsed);
                    }
                    st.used_by = Some(*pk);
                    Some((tok, st))
                }
            };
            let mut user = User {
                created_at: now_secs,
                disabled: false,
                quota_bytes: None,
                used_bytes: 0,
                signup_token: token.map(str::to_string),
            };
            // A token minted with a quota hands it to the account it creates.
            let quota = match token {
                Some(tok) => self.token_quota(tok)?,
                None => None,
            };
            if let Some(q) = &quota {
                super::quotas::apply(&mut user, q);
            }
            (&t.users, &t.signup_tokens, &t.user_quotas)
                .transaction(|(users, tokens, quotas)| {
                    users.insert(pk.as_bytes(), encode(&user))?;
                    if let Some((tok, st)) = &used_token {
                        tokens.insert(tok.as_bytes(), encode(st))?;
                    }
                    if let Some(q) = &quota {
                        quotas.insert(pk.as_bytes(), encode(q))?;
                    }
                    Ok(())
                })
                .map_err(tx_err)?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await
    }

    /// Keys of all accounts, in key order (the users' republisher walks them).
    pub fn user_keys(&self) -> Result<Vec<PublicKey>, StoreError> {
        let mut out = Vec::new();
        for kv in self.0.t.users.iter() {
            let (k, _) = kv?;
            let bytes: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("user key is not 32 bytes".into()))?;
            out.push(
                PublicKey::from_bytes(bytes)
                    .map_err(|_| StoreError::Corrupt("user key is not a valid key".into()))?,
            );
        }
        Ok(out)
    }

    pub async fn create_signup_token(&self, token: &str, now_secs: u64) -> Result<(), StoreError> {
        self.ensure_space()?;
        let ticket = {
            let _w = self.writer();
            let st = SignupToken {
                created_at: now_secs,
                used_by: None,
            };
            self.0
                .t
                .signup_tokens
                .insert(token.as_bytes(), encode(&st))?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await
    }

    pub fn signup_token(&self, token: &str) -> Result<Option<SignupToken>, StoreError> {
        match self.0.t.signup_tokens.get(token.as_bytes())? {
            Some(v) => decode("signup token", &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        match self.0.t.grants.get(id.as_bytes())? {
            Some(v) => decode("grant", &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn grants_of(&self, pk: &PublicKey) -> Result<Vec<GrantRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.0.t.user_grants.scan_prefix(pk.as_bytes()) {
            let (k, _) = kv?;
            let id = std::str::from_utf8(&k[32..])
                .map_err(|_| StoreError::Corrupt("grant index".into()))?;
            if let Some(g) = self.grant(id)? {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Stores `grant` unless a copy exists (the first stored copy wins), refuses revoked or
    /// expired grants and a stored grant of the same id that belongs to another user or
    /// client key (so nobody can unbind someone else's session by reusing its id), and makes
    /// `bearer_hash` the grant's only session.
    pub async fn open_session(
        &self,
        grant: GrantRecord,
        bearer_hash: [u8; 32],
        session_expires_at: u64,
        now_secs: u64,
    ) -> Result<GrantRecord, StoreError> {
        self.ensure_space()?;
        let (ticket, stored) = {
            let _w = self.writer();
            let mut stored = match self.grant(&grant.id)? {
                Some(g) if g.revoked => return Err(StoreError::GrantRevoked),
                Some(g) if g.user != grant.user || g.cnf != grant.cnf => {
                    return Err(StoreError::GrantConflict)
                }
                Some(g) if g.expires_at <= now_secs => return Err(StoreError::GrantExpired),
                Some(g) => g,
                None => grant,
            };
            let old = stored.bearer_hash.replace(bearer_hash);
            let session = SessionRecord {
                grant_id: stored.id.clone(),
                user: stored.user,
                expires_at: session_expires_at,
            };
            let t = &self.0.t;
            (&t.grants, &t.user_grants, &t.sessions)
                .transaction(|(grants, index, sessions)| {
                    grants.insert(stored.id.as_bytes(), encode(&stored))?;
                    index.insert(keys::user_grant(&stored.user, &stored.id), &[] as &[u8])?;
                    if let Some(o) = &old {
                        sessions.remove(o)?;
                    }
                    sessions.insert(&bearer_hash, encode(&session))?;
                    Ok(())
                })
                .map_err(tx_err)?;
            (self.0.commit.ticket(), stored)
        };
        self.durable(ticket).await?;
        Ok(stored)
    }

    /// The live session of a bearer hash with its grant; `None` when unknown, expired or
    /// revoked.
    pub fn session(
        &self,
        bearer_hash: &[u8; 32],
        now_secs: u64,
    ) -> Result<Option<(SessionRecord, GrantRecord)>, StoreError> {
        let Some(v) = self.0.t.sessions.get(bearer_hash)? else {
            return Ok(None);
        };
        let s: SessionRecord = decode("session", &v)?;
        if s.expires_at <= now_secs {
            return Ok(None);
        }
        match self.grant(&s.grant_id)? {
            Some(g)
                if !g.revoked && g.expires_at > now_secs && g.bearer_hash == Some(*bearer_hash) =>
            {
                Ok(Some((s, g)))
            }
            _ => Ok(None),
        }
    }

    /// Revokes a grant and drops its session; revoking twice is fine.
    pub async fn revoke_grant(&self, id: &str) -> Result<(), StoreError> {
        // Signing out only shrinks the store, so it may use the deletes' share of the reserve.
        space::ensure(&self.0.blobs.root, 0, space::DELETE_RESERVE_BYTES)?;
        let user;
        let ticket = {
            let _w = self.writer();
            let Some(mut g) = self.grant(id)? else {
                return Ok(());
            };
            user = g.user;
            g.revoked = true;
            let old = g.bearer_hash.take();
            let t = &self.0.t;
            (&t.grants, &t.sessions)
                .transaction(|(grants, sessions)| {
                    grants.insert(g.id.as_bytes(), encode(&g))?;
                    if let Some(o) = &old {
                        sessions.remove(o)?;
                    }
                    Ok(())
                })
                .map_err(tx_err)?;
            self.0.commit.ticket()
        };
        self.durable(ticket).await?;
        // Private event streams re-check their credential when woken.
        self.wake_subscribers_of(&user);
        Ok(())
    }

    /// Records a PoP nonce; `false` if it was seen within the last 6 minutes. The write
    /// becomes durable with the session or account change that follows it.
    pub async fn use_nonce(&self, nonce: &str, now_secs: u64) -> Result<bool, StoreError> {
        self.ensure_space()?;
        let mut w = self.writer();
        let nonces = &self.0.t.nonces;
        if now_secs.saturating_sub(w.last_nonce_gc) >= 60 {
            w.last_nonce_gc = now_secs;
            for kv in nonces.iter() {
                let (k, v) = kv?;
                let at: u64 = decode("nonce", &v)?;
                if now_secs.saturating_sub(at) > NONCE_TTL_SECS {
                    nonces.remove(k)?;
                }
            }
        }
        if let Some(v) = nonces.get(nonce.as_bytes())? {
            let at: u64 = decode("nonce", &v)?;
            if now_secs.saturating_sub(at) <= NONCE_TTL_SECS {
                return Ok(false);
            }
        }
        nonces.insert(nonce.as_bytes(), encode(&now_secs))?;
        self.0.commit.ticket();
        Ok(true)
    }
}

impl Store {
    /// `DiskFull` while the data filesystem is inside the reserve (see `space`).
    fn ensure_space(&self) -> Result<(), StoreError> {
        space::ensure(&self.0.blobs.root, 0, space::RESERVE_BYTES)
    }
}

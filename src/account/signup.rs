//! Signup and sign-in, once for grant clients (`/auth/grant/*`) and cookie clients
//! (`/signup`, `/session`): who may create an account under `general.signup_mode`, and who
//! may open a session. The caller has already proven the key (grant + PoP, or AuthToken).

use std::path::Path;

use super::access::ensure_enabled;
use super::{spool, Error};
use crate::config::SignupMode;
use crate::pubkey::PublicKey;
use crate::store::{Store, StoreError, User};

/// Creates the account for `user`. In `token_required` mode the token is redeemed (the
/// spool is imported first, so a token made by `pubky-edge token new` a moment ago works).
pub async fn create_account(
    store: &Store,
    data_dir: &Path,
    mode: SignupMode,
    user: &PublicKey,
    token: Option<String>,
    now: u64,
) -> Result<(), Error> {
    if store.user(user)?.is_some() {
        return Err(Error::UserExists);
    }
    let token = match mode {
        SignupMode::Open => None,
        SignupMode::TokenRequired => {
            let t = token.ok_or(Error::TokenRequired)?;
            spool::import(store, data_dir, now).await;
            Some(t)
        }
    };
    store.create_user(user, token.as_deref(), now).await?;
    Ok(())
}

/// Whether `user` may sign up with `token`, decided without writing anything (the spool
/// import aside): the account must not exist, and in `token_required` mode the token must
/// exist and be unused. [`create_account`] decides again, atomically, when it writes.
pub async fn may_sign_up(
    store: &Store,
    data_dir: &Path,
    mode: SignupMode,
    user: &PublicKey,
    token: Option<&str>,
    now: u64,
) -> Result<(), Error> {
    if store.user(user)?.is_some() {
        return Err(Error::UserExists);
    }
    if mode == SignupMode::TokenRequired {
        let t = token.ok_or(Error::TokenRequired)?;
        match spool::find(store, data_dir, t, now).await? {
            None => return Err(StoreError::TokenUnknown.into()),
            Some(t) if t.used_by.is_some() => return Err(StoreError::TokenUsed.into()),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The account `user` may open a session for: it exists and is enabled.
pub fn sign_in(store: &Store, user: &PublicKey) -> Result<User, Error> {
    let u = store.user(user)?.ok_or(Error::UnknownUser)?;
    ensure_enabled(&u)?;
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    const PK: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";

    #[test]
    fn signup_modes_tokens_and_sign_in() {
        smol::block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let cfg = StoreConfig {
                cache_capacity_bytes: 1 << 20,
                inline_max: 1024,
                durability: crate::config::Durability::Relaxed,
                default_quota_bytes: None,
            };
            let store = Store::open(dir.path(), cfg).unwrap();
            let pk = PublicKey::parse_z32(PK).unwrap();
            let required = SignupMode::TokenRequired;
            let r = create_account(&store, dir.path(), required, &pk, None, 1).await;
            assert!(matches!(r, Err(Error::TokenRequired)));
            assert!(matches!(sign_in(&store, &pk), Err(Error::UnknownUser)));
            // A token that only exists in the spool is imported and redeemed.
            let token = crate::auth::secrets::new_signup_token();
            spool::enqueue(dir.path(), &token).unwrap();
            create_account(&store, dir.path(), required, &pk, Some(token.clone()), 2)
                .await
                .unwrap();
            assert!(sign_in(&store, &pk).is_ok());
            let again = create_account(&store, dir.path(), SignupMode::Open, &pk, None, 3).await;
            assert!(matches!(again, Err(Error::UserExists)));
            store.set_disabled(&pk, true).await.unwrap();
            assert!(matches!(sign_in(&store, &pk), Err(Error::Disabled)));
            let used = store.signup_token(&token).unwrap().unwrap();
            assert_eq!(used.used_by, Some(pk));
            let other =
                PublicKey::parse_z32("yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no")
                    .unwrap();
            let r = create_account(&store, dir.path(), required, &other, Some(token), 4).await;
            assert!(matches!(r, Err(Error::Store(StoreError::TokenUsed))));
            store.close().await.unwrap();
        });
    }
}

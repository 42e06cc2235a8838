//! What a caller may read and write (§3.1 of the storage spec, in its check order): public
//! data is open to all, private data only to its owner's session with the capability for
//! the path, writes need the owner's session, an existing and enabled account, and a path
//! the admin has not fenced off. Event-stream filters follow the read rule.
//!
//! **Disabled** means frozen: the account's public data stays readable by anyone, and no
//! credential of the account (grant sessions and cookie sessions, old or new) authorises
//! anything: no sign-in, no PUT, no DELETE, no private read, no private event stream (open
//! ones end). Signing out still works. Re-enabling restores the sessions that have not
//! expired. (The reference homeserver still lets a disabled account delete and read its
//! private data; a box exposed to the internet should be able to stop an account at once.)

use super::{Caller, Error};
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;
use crate::store::{QuotaOverrides, Store, User};

/// §3.1 read checks: `/pub/` is public, `/priv/` needs the owner's session with `r`.
pub fn authorize_read(
    tenant: &PublicKey,
    path: &StoragePath,
    caller: Option<&Caller>,
) -> Result<(), Error> {
    if path.is_public() {
        return Ok(());
    }
    if !path.is_private() {
        return Err(Error::OutsideStorage { write: false });
    }
    let c = caller.ok_or(Error::AuthRequired)?;
    if c.user != *tenant {
        return Err(Error::WrongUser);
    }
    if c.disabled {
        return Err(Error::Disabled);
    }
    if !c.caps.can_read(path) {
        return Err(Error::NoAccess { write: false });
    }
    Ok(())
}

/// The read check for an event-stream filter; `tenant` is the stream's single user, if
/// it follows exactly one.
pub fn authorize_filter(
    filter: &StoragePath,
    caller: Option<&Caller>,
    tenant: Option<&PublicKey>,
) -> Result<(), Error> {
    match tenant {
        Some(t) => authorize_read(t, filter, caller),
        None if filter.is_private() => Err(match caller {
            Some(_) => Error::PrivateNeedsOneUser,
            None => Error::AuthRequired,
        }),
        None if filter.is_public() => Ok(()),
        None => Err(Error::OutsideStorage { write: false }),
    }
}

/// §3.1 write checks 1–7 (quota, collisions and existence follow in the store). Returns
/// the tenant's account.
pub fn authorize_write(
    store: &Store,
    tenant: &PublicKey,
    path: &StoragePath,
    caller: Option<&Caller>,
) -> Result<User, Error> {
    let user = authorize_release(store, tenant, path, caller)?;
    // PUT, DELETE and LOCK alike: a frozen account cannot empty itself either.
    ensure_enabled(&user)?;
    Ok(user)
}

/// Write checks 1–6 without the disabled rule: what `UNLOCK` needs, since releasing a
/// lock only gives up a claim (a disabled account may do it, as in the reference).
pub fn authorize_release(
    store: &Store,
    tenant: &PublicKey,
    path: &StoragePath,
    caller: Option<&Caller>,
) -> Result<User, Error> {
    let c = caller.ok_or(Error::NoSession)?;
    if path.is_dir() {
        return Err(Error::NotAFile);
    }
    if !path.is_public() && !path.is_private() {
        return Err(Error::OutsideStorage { write: true });
    }
    if c.user != *tenant {
        return Err(Error::WrongUser);
    }
    if !c.caps.can_write(path) {
        return Err(Error::NoAccess { write: true });
    }
    store.user(tenant)?.ok_or(Error::UnknownUser)
}

/// The one "disabled" rule (see the module notes): a disabled account may not sign in,
/// write or read privately.
pub fn ensure_enabled(user: &User) -> Result<(), Error> {
    if user.disabled {
        return Err(Error::Disabled);
    }
    Ok(())
}

/// §3.1 check 10: the operator may restrict a user to some paths.
pub fn authorize_path(store: &Store, tenant: &PublicKey, path: &StoragePath) -> Result<(), Error> {
    if !write_allowed(&store.quota_overrides(tenant)?, path) {
        return Err(Error::PathNotAllowed);
    }
    Ok(())
}

/// `allowed_write_paths`: may this user write `path`? Each entry covers itself and, when
/// it is a directory, everything below it.
pub fn write_allowed(q: &QuotaOverrides, path: &StoragePath) -> bool {
    match &q.allowed_write_paths {
        None => true,
        Some(list) => list
            .iter()
            .any(|p| StoragePath::covers_str(p, path.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AuthMethod;
    use crate::auth::capability::Capabilities;

    const PK: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
    const PK2: &str = "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no";

    fn p(s: &str) -> StoragePath {
        StoragePath::strict(s).unwrap()
    }

    fn caller(user: &str, caps: &str) -> Caller {
        Caller {
            user: PublicKey::parse_z32(user).unwrap(),
            caps: Capabilities::from_strings(&[caps.to_string()]).unwrap(),
            method: AuthMethod::Grant,
            disabled: false,
        }
    }

    #[test]
    fn reads_follow_the_spec_order() {
        let t = PublicKey::parse_z32(PK).unwrap();
        let own = caller(PK, "/priv/app/:r");
        assert!(authorize_read(&t, &p("/pub/x"), None).is_ok());
        assert!(matches!(
            authorize_read(&t, &p("/other/x"), Some(&own)),
            Err(Error::OutsideStorage { write: false })
        ));
        assert!(matches!(
            authorize_read(&t, &p("/priv/app/x"), None),
            Err(Error::AuthRequired)
        ));
        assert!(matches!(
            authorize_read(&t, &p("/priv/app/x"), Some(&caller(PK2, "/:rw"))),
            Err(Error::WrongUser)
        ));
        assert!(matches!(
            authorize_read(&t, &p("/priv/other/x"), Some(&own)),
            Err(Error::NoAccess { write: false })
        ));
        assert!(authorize_read(&t, &p("/priv/app/x"), Some(&own)).is_ok());
        // a disabled owner reads nothing private, public data stays open
        let frozen = Caller {
            disabled: true,
            ..caller(PK, "/:rw")
        };
        assert!(matches!(
            authorize_read(&t, &p("/priv/app/x"), Some(&frozen)),
            Err(Error::Disabled)
        ));
        assert!(authorize_read(&t, &p("/pub/x"), Some(&frozen)).is_ok());
    }

    #[test]
    fn filters_need_one_user_for_private_paths() {
        let t = PublicKey::parse_z32(PK).unwrap();
        let own = caller(PK, "/:rw");
        assert!(authorize_filter(&p("/pub/"), None, None).is_ok());
        assert!(matches!(
            authorize_filter(&p("/priv/"), None, None),
            Err(Error::AuthRequired)
        ));
        assert!(matches!(
            authorize_filter(&p("/priv/"), Some(&own), None),
            Err(Error::PrivateNeedsOneUser)
        ));
        assert!(authorize_filter(&p("/priv/"), Some(&own), Some(&t)).is_ok());
        assert!(matches!(
            authorize_filter(&p("/x/"), Some(&own), Some(&t)),
            Err(Error::OutsideStorage { write: false })
        ));
    }

    #[test]
    fn allowed_paths_cover_directories_and_files() {
        let q = QuotaOverrides {
            allowed_write_paths: Some(vec!["/pub/tokens/".into(), "/pub/f.json".into()]),
            ..Default::default()
        };
        assert!(write_allowed(&q, &p("/pub/tokens/foo.json")));
        assert!(write_allowed(&q, &p("/pub/f.json")));
        assert!(!write_allowed(&q, &p("/pub/f.json2")));
        assert!(!write_allowed(&q, &p("/pub/other/x")));
        assert!(write_allowed(&QuotaOverrides::default(), &p("/pub/x")));
    }
}

//! WebDAV write locks on storage files (`webdav-locks`): exclusive, depth 0, one per path,
//! each a bearer token that expires. `LOCK` takes or refreshes one, `UNLOCK` releases it,
//! and a `PUT` or `DELETE` must name the live lock of its path or is refused. A write that
//! names it holds it ([`Hold`]): the lock cannot expire while the write runs, and if its
//! owner releases it meanwhile the write is refused before it lands.
//!
//! Locks live in memory: each lasts at most [`MAX_SECS`], so a restart only ends locks a
//! minute early, and the holder learns it (412) on its next write. They are bounded per
//! user and in all, so nobody can fill a small board's memory with them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Error;
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;

/// Lifetime granted when the request asks for none (or for nothing readable).
pub const DEFAULT_SECS: u64 = 30;
/// Longest lifetime granted, whatever is asked; `Infinite` means this.
pub const MAX_SECS: u64 = 60;
/// A lock is kept at least this far ahead of the end of a write that held it.
pub const WRITE_HORIZON_SECS: u64 = 30;
/// Live locks one user may hold.
pub const MAX_PER_USER: usize = 256;
/// Live locks in all.
pub const MAX_LOCKS: usize = 4096;

type Key = (PublicKey, String);

struct Lock {
    token: String,
    expires: Instant,
    /// Writes running under this lock: while any runs, the lock does not expire.
    holders: u32,
}

impl Lock {
    fn live(&self, now: Instant) -> bool {
        self.holders > 0 || self.expires > now
    }
}

/// A lock granted or refreshed: its token and the seconds it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub token: String,
    pub secs: u64,
}

/// The live locks of this server.
#[derive(Default)]
pub struct Locks {
    table: Mutex<HashMap<Key, Lock>>,
}

/// A write running under a lock (see the module notes). Dropping it ends the hold and
/// keeps the lock for [`WRITE_HORIZON_SECS`] more, as a client that locked, wrote and will
/// unlock expects.
pub struct Hold<'a> {
    locks: &'a Locks,
    key: Key,
    token: String,
}

impl Locks {
    fn table(&self) -> MutexGuard<'_, HashMap<Key, Lock>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live locks now (a gauge).
    pub fn live(&self, now: Instant) -> usize {
        self.table().values().filter(|l| l.live(now)).count()
    }

    /// A new lock on `path` for `secs` seconds, or `Locked` while another lives.
    pub fn acquire(
        &self,
        user: &PublicKey,
        path: &StoragePath,
        secs: u64,
        now: Instant,
    ) -> Result<Granted, Error> {
        let mut t = self.table();
        t.retain(|_, l| l.live(now));
        let key = (*user, path.as_str().to_string());
        if t.contains_key(&key) {
            return Err(Error::Locked);
        }
        if t.len() >= MAX_LOCKS || t.keys().filter(|(u, _)| u == user).count() >= MAX_PER_USER {
            return Err(Error::TooManyLocks);
        }
        let token = new_token();
        let secs = secs.clamp(1, MAX_SECS);
        t.insert(
            key,
            Lock {
                token: token.clone(),
                expires: now + Duration::from_secs(secs),
                holders: 0,
            },
        );
        Ok(Granted { token, secs })
    }

    /// Gives the live lock named by one of `tokens` `secs` more seconds.
    pub fn refresh(
        &self,
        user: &PublicKey,
        path: &StoragePath,
        tokens: &[String],
        secs: u64,
        now: Instant,
    ) -> Result<Granted, Error> {
        let mut t = self.table();
        let key = (*user, path.as_str().to_string());
        let lock = t
            .get_mut(&key)
            .filter(|l| l.live(now) && tokens.contains(&l.token))
            .ok_or(Error::LockMismatch)?;
        let secs = secs.clamp(1, MAX_SECS);
        lock.expires = lock.expires.max(now + Duration::from_secs(secs));
        Ok(Granted {
            token: lock.token.clone(),
            secs,
        })
    }

    /// Ends the lock `token` on `path`.
    pub fn release(
        &self,
        user: &PublicKey,
        path: &StoragePath,
        token: &str,
        now: Instant,
    ) -> Result<(), Error> {
        let mut t = self.table();
        let key = (*user, path.as_str().to_string());
        match t.get(&key) {
            Some(l) if l.live(now) && l.token == token => {
                t.remove(&key);
                Ok(())
            }
            _ => Err(Error::NoSuchLock),
        }
    }

    /// May a write to `path` that names `tokens` (from its `If` header) start? Without
    /// tokens: only while no lock lives (`Locked`). With tokens: one must be the live lock
    /// (`LockMismatch`), which the write then holds.
    pub fn check_write(
        &self,
        user: &PublicKey,
        path: &StoragePath,
        tokens: &[String],
        now: Instant,
    ) -> Result<Option<Hold<'_>>, Error> {
        let mut t = self.table();
        let key = (*user, path.as_str().to_string());
        let live = t.get_mut(&key).filter(|l| l.live(now));
        match live {
            None if tokens.is_empty() => Ok(None),
            Some(_) if tokens.is_empty() => Err(Error::Locked),
            Some(l) if tokens.contains(&l.token) => {
                l.holders += 1;
                Ok(Some(Hold {
                    locks: self,
                    token: l.token.clone(),
                    key,
                }))
            }
            _ => Err(Error::LockMismatch),
        }
    }
}

impl Hold<'_> {
    /// The lock still exists (its owner has not released it): the write may land.
    pub fn ensure_held(&self) -> Result<(), Error> {
        let t = self.locks.table();
        match t.get(&self.key) {
            Some(l) if l.token == self.token => Ok(()),
            _ => Err(Error::LockLost),
        }
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut t = self.locks.table();
        if let Some(l) = t.get_mut(&self.key).filter(|l| l.token == self.token) {
            l.holders = l.holders.saturating_sub(1);
            let horizon = Instant::now() + Duration::from_secs(WRITE_HORIZON_SECS);
            l.expires = l.expires.max(horizon);
        }
    }
}

/// A random version-4 UUID, as WebDAV clients expect inside `opaquelocktoken:`.
pub fn new_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u8) -> PublicKey {
        let key = ed25519_dalek::SigningKey::from_bytes(&[n; 32]);
        key.verifying_key().into()
    }

    fn p(s: &str) -> StoragePath {
        StoragePath::strict(s).unwrap()
    }

    #[test]
    fn one_lock_per_path_until_it_expires_or_is_released() {
        let locks = Locks::default();
        let (u, t0) = (user(1), Instant::now());
        let g = locks.acquire(&u, &p("/pub/a"), 30, t0).unwrap();
        assert_eq!(g.secs, 30);
        assert_eq!(g.token.len(), 36);
        assert_eq!(&g.token[14..15], "4", "a version-4 UUID");
        assert!(matches!(
            locks.acquire(&u, &p("/pub/a"), 30, t0),
            Err(Error::Locked)
        ));
        // Another path and another user's same path are free.
        locks.acquire(&u, &p("/pub/b"), 30, t0).unwrap();
        locks.acquire(&user(2), &p("/pub/a"), 30, t0).unwrap();
        // Expired: gone.
        let later = t0 + Duration::from_secs(31);
        let again = locks.acquire(&u, &p("/pub/a"), 90, later).unwrap();
        assert_eq!(again.secs, MAX_SECS, "lifetimes are capped");
        assert!(matches!(
            locks.release(&u, &p("/pub/a"), &g.token, later),
            Err(Error::NoSuchLock)
        ));
        locks
            .release(&u, &p("/pub/a"), &again.token, later)
            .unwrap();
        locks.acquire(&u, &p("/pub/a"), 5, later).unwrap();
    }

    #[test]
    fn writes_name_the_live_lock_or_wait() {
        let locks = Locks::default();
        let (u, t0) = (user(1), Instant::now());
        let path = p("/pub/a");
        assert!(locks.check_write(&u, &path, &[], t0).unwrap().is_none());
        let g = locks.acquire(&u, &path, 10, t0).unwrap();
        assert!(matches!(
            locks.check_write(&u, &path, &[], t0),
            Err(Error::Locked)
        ));
        let stale = vec!["not-it".to_string()];
        assert!(matches!(
            locks.check_write(&u, &path, &stale, t0),
            Err(Error::LockMismatch)
        ));
        let named = vec!["x".to_string(), g.token.clone()];
        let hold = locks.check_write(&u, &path, &named, t0).unwrap().unwrap();
        // While held, the lock outlives its timeout.
        let late = t0 + Duration::from_secs(20);
        assert!(matches!(
            locks.acquire(&u, &path, 10, late),
            Err(Error::Locked)
        ));
        hold.ensure_held().unwrap();
        drop(hold);
        assert_eq!(locks.live(late), 1, "kept after the write ends");
        // A lock released while its write runs is lost to that write.
        let hold = locks.check_write(&u, &path, &named, t0).unwrap().unwrap();
        locks.release(&u, &path, &g.token, t0).unwrap();
        assert!(matches!(hold.ensure_held(), Err(Error::LockLost)));
        drop(hold);
        // A token once live is stale after expiry.
        let g = locks.acquire(&u, &path, 1, t0).unwrap();
        let after = t0 + Duration::from_secs(2);
        let named = vec![g.token.clone()];
        assert!(matches!(
            locks.check_write(&u, &path, &named, after),
            Err(Error::LockMismatch)
        ));
        assert!(locks.check_write(&u, &path, &[], after).unwrap().is_none());
    }

    #[test]
    fn refresh_needs_the_live_token() {
        let locks = Locks::default();
        let (u, t0) = (user(1), Instant::now());
        let path = p("/pub/a");
        let g = locks.acquire(&u, &path, 5, t0).unwrap();
        let named = vec![g.token.clone()];
        let r = locks.refresh(&u, &path, &named, 60, t0).unwrap();
        assert_eq!((r.token.as_str(), r.secs), (g.token.as_str(), 60));
        assert_eq!(locks.live(t0 + Duration::from_secs(30)), 1);
        let wrong = vec!["other".to_string()];
        assert!(matches!(
            locks.refresh(&u, &path, &wrong, 5, t0),
            Err(Error::LockMismatch)
        ));
    }

    #[test]
    fn one_user_cannot_hold_every_lock() {
        let locks = Locks::default();
        let (u, t0) = (user(1), Instant::now());
        for i in 0..MAX_PER_USER {
            locks.acquire(&u, &p(&format!("/pub/{i}")), 60, t0).unwrap();
        }
        let over = locks.acquire(&u, &p("/pub/over"), 60, t0);
        assert!(matches!(over, Err(Error::TooManyLocks)));
        locks.acquire(&user(2), &p("/pub/over"), 60, t0).unwrap();
        // Expired locks are swept before counting.
        let later = t0 + Duration::from_secs(61);
        locks.acquire(&u, &p("/pub/over"), 60, later).unwrap();
        assert_eq!(locks.live(later), 1);
    }
}

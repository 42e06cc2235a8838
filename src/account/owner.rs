//! The box's owner: one secret for the admin API, its WebDAV and the dashboard.
//!
//! Until the box is **claimed**, the secret is the one [`super::operator`] resolves (the
//! configured password, e.g. from `pubky-edge.txt` at first boot, else the generated
//! `<data>/admin-password`). Claiming stores the owner's password as an Argon2id hash in
//! `<data>/owner-password` and removes the generated file, so from then on there is one
//! secret and it is kept only hashed. Claiming needs the configured password when there is
//! one; on a box where nobody set one, the first visitor on the LAN sets it.
//!
//! Programs on the box itself (`pubky-edge admin …`, the nightly backup) use
//! `<data>/admin-local-token` instead: a random token only the service user can read, which
//! the admin API accepts from loopback only. Whoever can read the data directory holds the
//! homeserver's key anyway, so it grants nothing new.
//!
//! Every wrong password counts against the sender's address ([`Attempts`]), whichever
//! surface it came through.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::operator::{self, same_password, Refused};
use crate::auth::password;
use crate::config::Admin;
use crate::limits::attempts::Attempts;

/// The shortest password the owner may set.
pub const MIN_PASSWORD: usize = 8;
/// The longest accepted (hashing a megabyte would be a way to burn CPU).
pub const MAX_PASSWORD: usize = 256;

/// Where the hash lives once the box is claimed.
pub fn hash_file(data_dir: &Path) -> PathBuf {
    data_dir.join("owner-password")
}

/// The machine-local credential's file.
pub fn local_token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-local-token")
}

/// Why claiming or changing the password was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimError {
    AlreadyClaimed,
    NotClaimed,
    /// The configured (or current) password was not the one given.
    Wrong,
    Throttled(u64),
    /// The new password breaks a rule (the text says which).
    Weak(String),
    Io(String),
}

impl std::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimError::AlreadyClaimed => f.write_str("this box is already claimed"),
            ClaimError::NotClaimed => f.write_str("this box is not claimed yet"),
            ClaimError::Wrong => f.write_str("that is not the password"),
            ClaimError::Throttled(s) => write!(f, "too many wrong passwords: wait {s} s"),
            ClaimError::Weak(why) => f.write_str(why),
            ClaimError::Io(e) => write!(f, "cannot store the password: {e}"),
        }
    }
}

/// The owner's secret as the server holds it.
pub struct Owner {
    data_dir: PathBuf,
    /// The password before the box is claimed (configured or generated).
    initial: String,
    /// Whether `initial` came from the config (then claiming must give it).
    configured: bool,
    /// The Argon2id hash (PHC string) once claimed.
    hash: RwLock<Option<String>>,
    /// SHA-256 of the last password that matched `hash`, so the admin CLI's requests do not
    /// each pay for an Argon2 run.
    verified: Mutex<Option<[u8; 32]>>,
    /// One Argon2 run at a time.
    hashing: Mutex<()>,
    local_token: String,
    pub attempts: Attempts,
}

impl Owner {
    /// Loads the owner's secret at server start: the hash if claimed, else the initial
    /// password (generated into the data directory if nothing is configured), and the
    /// local token (created if missing).
    pub fn load(admin: &Admin, data_dir: &Path) -> Result<Owner, String> {
        let hash = match fs::read_to_string(hash_file(data_dir)) {
            Ok(h) => Some(
                password::parse_phc(h.trim())
                    .map(|_| h.trim().to_string())
                    .ok_or_else(|| {
                        format!("{} is not an Argon2id hash", hash_file(data_dir).display())
                    })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(format!(
                    "cannot read {}: {e}",
                    hash_file(data_dir).display()
                ))
            }
        };
        let configured = admin.password_file.is_some() || !admin.password.is_empty();
        let initial = if hash.is_some() {
            // Claimed: the initial password no longer opens anything.
            String::new()
        } else {
            operator::server_password(admin, data_dir)?
        };
        let local_token =
            operator::secret_file(&local_token_file(data_dir), "the admin local token")?;
        if local_token.is_empty() {
            return Err(format!(
                "{} is empty: delete it",
                local_token_file(data_dir).display()
            ));
        }
        if hash.is_some() && configured {
            tracing::info!("the box is claimed: the configured admin password is no longer used");
        }
        Ok(Owner {
            data_dir: data_dir.to_path_buf(),
            initial,
            configured,
            hash: RwLock::new(hash),
            verified: Mutex::new(None),
            hashing: Mutex::new(()),
            local_token,
            attempts: Attempts::default(),
        })
    }

    pub fn claimed(&self) -> bool {
        self.hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Whether claiming asks for the configured password (else the visitor sets one).
    pub fn claim_needs_configured(&self) -> bool {
        self.configured
    }

    /// The one check of a password given over the network (admin API header, WebDAV Basic,
    /// dashboard login). `peer` is the sender; the local token counts only from loopback.
    pub fn check(&self, peer: IpAddr, given: Option<&[u8]>, now: Instant) -> Result<(), Refused> {
        let matches = |g: &[u8]| {
            (peer.is_loopback() && same_password(g, &self.local_token)) || self.matches(g)
        };
        operator::check_password(&self.attempts, peer, given, matches, now)
    }

    /// [`Self::check`] with the Argon2 run (about a second on a Pi Zero) off the executor;
    /// the local token, a cached match and a throttled address are answered at once.
    pub async fn verify(
        self: &Arc<Self>,
        peer: IpAddr,
        given: Option<&[u8]>,
        now: Instant,
    ) -> Result<(), Refused> {
        let cheap = match given {
            None => true,
            Some(g) => {
                !self.claimed()
                    || (peer.is_loopback() && same_password(g, &self.local_token))
                    || self.attempts.check(peer, now).is_err()
                    || *self.verified.lock().unwrap_or_else(|e| e.into_inner())
                        == Some(Sha256::digest(g).into())
            }
        };
        if cheap {
            return self.check(peer, given, now);
        }
        let (me, given) = (self.clone(), given.map(<[u8]>::to_vec));
        smol::unblock(move || me.check(peer, given.as_deref(), now)).await
    }

    fn matches(&self, given: &[u8]) -> bool {
        let hash = self.hash.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(hash) = hash else {
            return !self.initial.is_empty() && same_password(given, &self.initial);
        };
        let digest: [u8; 32] = Sha256::digest(given).into();
        let cached = *self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cached == Some(digest) {
            return true;
        }
        if given.len() > MAX_PASSWORD {
            return false;
        }
        let ok = self.verify_hash(&hash, given);
        if ok {
            *self.verified.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
        }
        ok
    }

    fn verify_hash(&self, phc: &str, given: &[u8]) -> bool {
        let _one = self.hashing.lock().unwrap_or_else(|e| e.into_inner());
        password::matches(phc, given)
    }

    /// Claims the box: `configured` is what the visitor typed as the configured password
    /// (ignored when none is configured), `new` the owner's password (`None`: keep the
    /// configured one).
    pub fn claim(
        &self,
        peer: IpAddr,
        configured: Option<&str>,
        new: Option<&str>,
        now: Instant,
    ) -> Result<(), ClaimError> {
        if self.claimed() {
            return Err(ClaimError::AlreadyClaimed);
        }
        self.attempts
            .check(peer, now)
            .map_err(ClaimError::Throttled)?;
        let password = if self.configured {
            let given = configured.unwrap_or("");
            if !same_password(given.as_bytes(), &self.initial) {
                self.attempts.failed(peer, now);
                return Err(ClaimError::Wrong);
            }
            self.attempts.succeeded(peer);
            new.filter(|n| !n.is_empty()).unwrap_or(given)
        } else {
            new.unwrap_or("")
        };
        acceptable(password)?;
        self.store_hash(password)?;
        if !self.configured {
            let _ = fs::remove_file(operator::generated_file(&self.data_dir));
        }
        tracing::info!("the box was claimed by its owner");
        Ok(())
    }

    /// Replaces the owner's password (the current one must be given).
    pub fn change(
        &self,
        peer: IpAddr,
        current: &str,
        new: &str,
        now: Instant,
    ) -> Result<(), ClaimError> {
        if !self.claimed() {
            return Err(ClaimError::NotClaimed);
        }
        match self.check(peer, Some(current.as_bytes()), now) {
            Ok(()) => {}
            Err(Refused::Throttled(s)) => return Err(ClaimError::Throttled(s)),
            Err(_) => return Err(ClaimError::Wrong),
        }
        acceptable(new)?;
        self.store_hash(new)?;
        tracing::info!("the owner changed the password");
        Ok(())
    }

    fn store_hash(&self, password: &str) -> Result<(), ClaimError> {
        let phc = {
            let _one = self.hashing.lock().unwrap_or_else(|e| e.into_inner());
            password::hash_password(password).map_err(ClaimError::Io)?
        };
        crate::backup::write_private(&hash_file(&self.data_dir), format!("{phc}\n").as_bytes())
            .map_err(|e| ClaimError::Io(format!("{e:#}")))?;
        *self.hash.write().unwrap_or_else(|e| e.into_inner()) = Some(phc);
        *self.verified.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }
}

/// The rules for a password the owner sets.
fn acceptable(pw: &str) -> Result<(), ClaimError> {
    let n = pw.chars().count();
    if n < MIN_PASSWORD {
        return Err(ClaimError::Weak(format!(
            "the password needs at least {MIN_PASSWORD} characters"
        )));
    }
    if pw.len() > MAX_PASSWORD {
        return Err(ClaimError::Weak(format!(
            "the password may have at most {MAX_PASSWORD} bytes"
        )));
    }
    if pw == operator::WEAK_PASSWORD || pw.trim() != pw {
        return Err(ClaimError::Weak(
            "choose another password (no spaces at either end)".into(),
        ));
    }
    Ok(())
}

/// The credential a program on this machine sends: the local token when the server has
/// made one, else the configured or generated password.
pub fn client_credential(admin: &Admin, data_dir: &Path) -> Result<String, String> {
    match fs::read_to_string(local_token_file(data_dir)) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => operator::client_password(admin, data_dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(password: &str) -> Admin {
        Admin {
            enabled: true,
            listen_socket: "127.0.0.1:0".parse().unwrap(),
            password: password.into(),
            password_file: None,
        }
    }

    #[test]
    fn an_unconfigured_box_is_claimed_by_its_first_visitor_and_then_only_the_hash_counts() {
        let dir = tempfile::tempdir().unwrap();
        let o = Owner::load(&admin(""), dir.path()).unwrap();
        let generated = operator::client_password(&admin(""), dir.path()).unwrap();
        let (lan, lo): (IpAddr, IpAddr) = ("192.168.1.20".parse().unwrap(), [127, 0, 0, 1].into());
        let now = Instant::now();
        assert!(!o.claimed() && !o.claim_needs_configured());
        assert_eq!(o.check(lan, Some(generated.as_bytes()), now), Ok(()));
        assert!(matches!(
            o.claim(lan, None, Some("short"), now),
            Err(ClaimError::Weak(_))
        ));
        o.claim(lan, None, Some("family-box-2026"), now).unwrap();
        assert_eq!(
            o.claim(lan, None, Some("another-one"), now),
            Err(ClaimError::AlreadyClaimed)
        );
        assert!(
            !operator::generated_file(dir.path()).exists(),
            "one secret only"
        );
        assert_eq!(
            o.check(lan, Some(generated.as_bytes()), now),
            Err(Refused::Wrong)
        );
        assert_eq!(o.check(lan, Some(b"family-box-2026"), now), Ok(()));
        let stored = fs::read_to_string(hash_file(dir.path())).unwrap();
        assert!(!stored.contains("family-box-2026") && stored.starts_with("$argon2id$"));
        // The local token: loopback only.
        let token = client_credential(&admin(""), dir.path()).unwrap();
        assert_eq!(o.check(lo, Some(token.as_bytes()), now), Ok(()));
        assert_eq!(
            o.check(lan, Some(token.as_bytes()), now),
            Err(Refused::Wrong)
        );
        // A restart reads the hash back.
        let again = Owner::load(&admin(""), dir.path()).unwrap();
        assert!(again.claimed());
        assert_eq!(again.check(lan, Some(b"family-box-2026"), now), Ok(()));
        again
            .change(lan, "family-box-2026", "new-secret-99", now)
            .unwrap();
        assert_eq!(
            again.check(lan, Some(b"family-box-2026"), now),
            Err(Refused::Wrong)
        );
        assert_eq!(again.check(lan, Some(b"new-secret-99"), now), Ok(()));
    }

    #[test]
    fn a_configured_password_must_be_given_to_claim_and_wrong_ones_are_throttled() {
        let dir = tempfile::tempdir().unwrap();
        let o = Owner::load(&admin("from-the-card"), dir.path()).unwrap();
        let lan: IpAddr = "10.0.0.7".parse().unwrap();
        let now = Instant::now();
        assert!(o.claim_needs_configured());
        for _ in 0..crate::limits::attempts::MAX_FAILURES {
            assert_eq!(
                o.claim(lan, Some("guess"), None, now),
                Err(ClaimError::Wrong)
            );
        }
        assert!(matches!(
            o.claim(lan, Some("from-the-card"), None, now),
            Err(ClaimError::Throttled(_))
        ));
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        o.claim(other, Some("from-the-card"), None, now).unwrap();
        assert!(o.claimed());
        assert_eq!(o.check(other, Some(b"from-the-card"), now), Ok(()));
    }
}

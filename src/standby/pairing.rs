//! The primary's side of pairing, kept in `<data>/standby/primary.json`: pairing codes
//! waiting to be used (their hashes, one hour each, one use), and the paired standby: its
//! replication token's hash, its age recipient, whether it may take over, and how far it
//! has read the log (the first event it has not read is the "takeover point" a fenced box
//! reports from). One standby at a time: pairing another replaces it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::wire::{PairReply, PairRequest};
use crate::auth::secrets::{bearer_hash, new_bearer};
use crate::pubkey::PublicKey;

const FILE: &str = "primary.json";
/// How long a pairing code stays usable.
pub const CODE_LIFETIME_SECS: u64 = 3600;
/// How often the standby's position is synced to disk while it follows.
const SYNC_POSITION_SECS: u64 = 5;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    codes: Vec<Code>,
    standby: Option<Paired>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Code {
    hash: String,
    expires_at: u64,
    takeover: bool,
}

/// The paired standby, as the primary knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Paired {
    pub recipient: String,
    token_hash: String,
    pub takeover: bool,
    pub paired_at: u64,
    /// The last event id the standby has read (it asked for events after it).
    pub position: u64,
    /// When it last asked (seconds; 0: never).
    pub last_seen: u64,
    /// When it last asked holding everything this box had (seconds; 0: never).
    #[serde(default)]
    pub caught_up_at: u64,
}

/// The pairing state of this box as a primary.
pub struct Pairing {
    path: PathBuf,
    state: Mutex<State>,
    /// The position last written, and when it was last synced.
    saved_at: Mutex<(u64, u64)>,
}

/// Why a pairing attempt was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PairError {
    /// No such code, spent, or expired.
    BadCode,
    BadRecipient,
}

fn hash_hex(secret: &str) -> String {
    crate::store::to_hex(&bearer_hash(secret))
}

impl Pairing {
    pub fn load(data_dir: &Path) -> Pairing {
        let path = data_dir.join(super::role::DIR).join(FILE);
        let state = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Pairing {
            path,
            state: Mutex::new(state),
            saved_at: Mutex::new((0, 0)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain data, valid after a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, state: &State) -> Result<()> {
        let dir = self.path.parent().context("standby directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Invariant: strings and numbers always serialize.
        let text = serde_json::to_vec_pretty(state).expect("pairing state serializes");
        crate::backup::write_private(&self.path, &text)
    }

    /// [`Self::save`] without the syncs: the file is replaced whole, and survives the
    /// process (not a power cut).
    fn save_unsynced(&self, state: &State) -> Result<()> {
        // Invariant: strings and numbers always serialize.
        let text = serde_json::to_vec_pretty(state).expect("pairing state serializes");
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            std::io::Write::write_all(&mut f, &text)?;
        }
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    /// A new one-time pairing code for this homeserver: `<homeserver key>:<secret>`.
    pub fn new_code(&self, homeserver: &PublicKey, takeover: bool, now: u64) -> Result<String> {
        let (secret, _) = new_bearer();
        let mut st = self.state();
        st.codes.retain(|c| c.expires_at > now);
        st.codes.push(Code {
            hash: hash_hex(&secret),
            expires_at: now + CODE_LIFETIME_SECS,
            takeover,
        });
        self.save(&st)?;
        Ok(format!("{homeserver}:{secret}"))
    }

    /// Spends a code: the standby that showed it becomes the paired one (replacing any
    /// other), with the homeserver key sealed to its recipient if the code allows takeover.
    /// `seed` reads the homeserver's secret key; it is asked for only once the code is
    /// good, and only when the code allows takeover.
    pub fn pair(
        &self,
        req: &PairRequest,
        seed: impl FnOnce() -> Result<[u8; 32]>,
        now: u64,
    ) -> Result<PairReply> {
        let recipient = crate::backup::crypt::parse_recipient(&req.recipient)
            .map_err(|_| anyhow::Error::new(PairErrorBox(PairError::BadRecipient)))?;
        let mut st = self.state();
        let hash = hash_hex(&req.code);
        let Some(i) = st
            .codes
            .iter()
            .position(|c| c.hash == hash && c.expires_at > now)
        else {
            bail!(PairErrorBox(PairError::BadCode));
        };
        let sealed_key = if st.codes[i].takeover {
            use std::io::Write;
            let mut out = Vec::new();
            let mut w = crate::backup::crypt::encrypt_to(&recipient, &mut out)?;
            w.write_all(&seed()?)?;
            w.finish()?;
            Some(B64.encode(out))
        } else {
            None
        };
        let code = st.codes.remove(i);
        let (token, token_hash) = new_bearer();
        st.standby = Some(Paired {
            recipient: req.recipient.trim().to_string(),
            token_hash: crate::store::to_hex(&token_hash),
            takeover: code.takeover,
            paired_at: now,
            position: 0,
            last_seen: 0,
            caught_up_at: 0,
        });
        self.save(&st)?;
        tracing::info!(takeover = code.takeover, "a standby box paired");
        Ok(PairReply {
            token,
            takeover: code.takeover,
            sealed_key,
        })
    }

    /// Whether `token` is the paired standby's replication token.
    pub fn authorized(&self, token: &str) -> bool {
        let given = hash_hex(token);
        self.state().standby.as_ref().is_some_and(|s| {
            crate::auth::password::same_password(given.as_bytes(), s.token_hash.as_bytes())
        })
    }

    /// The standby asked for events after `position`, when this box's log ended at
    /// `head`: it holds everything up to `position`. Returns its lag (events, seconds).
    pub fn record_position(&self, position: u64, head: u64, now: u64) -> (u64, u64) {
        let (snapshot, lag) = {
            let mut st = self.state();
            let Some(s) = st.standby.as_mut() else {
                return (0, 0);
            };
            s.position = s.position.max(position);
            s.last_seen = now;
            if s.position >= head {
                s.caught_up_at = now;
            }
            let behind = head.saturating_sub(s.position);
            let secs = if behind == 0 {
                0
            } else {
                now.saturating_sub(s.caught_up_at.max(s.paired_at))
            };
            (st.clone(), (behind, secs))
        };
        let mut saved = self.saved_at.lock().unwrap_or_else(|e| e.into_inner());
        if saved.0 != snapshot.standby.as_ref().map_or(0, |s| s.position) {
            // Written through at each move (a killed process loses nothing) and synced at
            // most every few seconds (a power cut may lose the last moves: the position
            // then reads lower, and a fence lists more events, never fewer).
            let sync = now >= saved.1 + SYNC_POSITION_SECS;
            let r = if sync {
                self.save(&snapshot)
            } else {
                self.save_unsynced(&snapshot)
            };
            match r {
                Ok(()) => {
                    saved.0 = snapshot.standby.as_ref().map_or(0, |s| s.position);
                    if sync {
                        saved.1 = now;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot write down the standby's position"),
            }
        }
        lag
    }

    /// Forgets the paired standby (its token stops working) and any unused code.
    pub fn revoke(&self) -> Result<bool> {
        let mut st = self.state();
        let had = st.standby.take().is_some();
        st.codes.clear();
        self.save(&st)?;
        if had {
            tracing::info!("the standby box was unpaired");
        }
        Ok(had)
    }

    pub fn standby(&self) -> Option<Paired> {
        self.state().standby.clone()
    }

    /// Writes the standby's position down now (at shutdown and when fencing).
    pub fn flush(&self) {
        let st = self.state().clone();
        if st.standby.is_some() {
            let _ = self.save(&st);
        }
    }
}

/// A [`PairError`] carried in an `anyhow::Error`, for the handler to map.
#[derive(Debug)]
pub struct PairErrorBox(pub PairError);

impl std::fmt::Display for PairErrorBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            PairError::BadCode => "unknown, used or expired pairing code",
            PairError::BadRecipient => "the standby's key is not an age X25519 recipient",
        })
    }
}

impl std::error::Error for PairErrorBox {}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(code: &str, recipient: &str) -> PairRequest {
        PairRequest {
            code: code.split_once(':').unwrap().1.to_string(),
            recipient: recipient.to_string(),
        }
    }

    #[test]
    fn a_code_pairs_once_within_its_hour_and_seals_the_key_only_for_takeover() {
        let dir = tempfile::tempdir().unwrap();
        let hs = crate::identity::Identity::from_seed([7; 32]).public_key();
        let p = Pairing::load(dir.path());
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();

        let code = p.new_code(&hs, true, 1000).unwrap();
        assert!(code.starts_with(&format!("{hs}:")));
        let reply = p
            .pair(&request(&code, &recipient), || Ok([9; 32]), 1001)
            .unwrap();
        assert!(reply.takeover);
        let sealed = B64.decode(reply.sealed_key.unwrap()).unwrap();
        let mut seed = Vec::new();
        std::io::Read::read_to_end(
            &mut crate::backup::crypt::decrypt_with(&id, &sealed[..]).unwrap(),
            &mut seed,
        )
        .unwrap();
        assert_eq!(seed, [9; 32]);
        assert!(p.authorized(&reply.token));
        assert!(!p.authorized("x".repeat(43).as_str()));
        // Spent.
        let again = p.pair(&request(&code, &recipient), || Ok([9; 32]), 1002);
        assert!(again
            .unwrap_err()
            .to_string()
            .contains("unknown, used or expired"));

        // Survives a restart; a code without takeover seals nothing; an old one is refused.
        let p = Pairing::load(dir.path());
        assert!(p.authorized(&reply.token));
        let late = p.new_code(&hs, false, 2000).unwrap();
        assert!(p
            .pair(
                &request(&late, &recipient),
                || Ok([9; 32]),
                2000 + CODE_LIFETIME_SECS
            )
            .is_err());
        let plain = p.new_code(&hs, false, 9000).unwrap();
        let r2 = p
            .pair(
                &request(&plain, &recipient),
                || unreachable!("no key without takeover"),
                9001,
            )
            .unwrap();
        assert!(!r2.takeover && r2.sealed_key.is_none());
        // The new pairing replaced the old one.
        assert!(!p.authorized(&reply.token) && p.authorized(&r2.token));
        assert!(p.revoke().unwrap());
        assert!(!p.authorized(&r2.token));
        assert!(Pairing::load(dir.path()).standby().is_none());
    }

    #[test]
    fn a_bad_recipient_does_not_spend_the_code() {
        let dir = tempfile::tempdir().unwrap();
        let hs = crate::identity::Identity::from_seed([7; 32]).public_key();
        let p = Pairing::load(dir.path());
        let code = p.new_code(&hs, true, 10).unwrap();
        let e = p
            .pair(&request(&code, "age1nope"), || Ok([1; 32]), 11)
            .unwrap_err();
        assert!(e.to_string().contains("not an age X25519 recipient"));
        let ok = age::x25519::Identity::generate().to_public().to_string();
        assert!(p.pair(&request(&code, &ok), || Ok([1; 32]), 12).is_ok());
    }
}

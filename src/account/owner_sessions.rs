//! The owner's signed-in browsers. A session is a random cookie secret (only its SHA-256 is
//! kept) with its own CSRF token, an expiry, and where and when it started, so the owner
//! can see and end each one. Sessions live in memory: a restart signs everyone out, which
//! is the safe side for a box that restarts rarely. At most [`MAX_SESSIONS`]; a new one
//! beyond that ends the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Browsers signed in at once.
pub const MAX_SESSIONS: usize = 32;

#[derive(Debug, Clone)]
pub struct OwnerSession {
    /// A short public name for the session (the first characters of its key's hash), shown
    /// in the list and used to end it.
    pub id: String,
    /// The token every state-changing form of this session carries.
    pub csrf: String,
    pub created_secs: u64,
    pub expires_secs: u64,
    pub peer: IpAddr,
    pub agent: String,
}

#[derive(Default)]
pub struct OwnerSessions {
    map: Mutex<HashMap<[u8; 32], OwnerSession>>,
}

fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl OwnerSessions {
    /// Opens a session; returns the cookie secret (the only copy) and the session.
    pub fn open(
        &self,
        peer: IpAddr,
        agent: &str,
        now: u64,
        ttl_secs: u64,
    ) -> (String, OwnerSession) {
        let cookie = crate::auth::secrets::new_cookie_secret();
        let k = key(&cookie);
        let s = OwnerSession {
            id: crate::auth::secrets::crockford(&k[..5]),
            csrf: crate::auth::secrets::new_cookie_secret(),
            created_secs: now,
            expires_secs: now.saturating_add(ttl_secs),
            peer,
            agent: agent.chars().take(120).collect(),
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires_secs > now);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.created_secs)
                .map(|(k, _)| *k);
            if let Some(o) = oldest {
                map.remove(&o);
            }
        }
        map.insert(k, s.clone());
        (cookie, s)
    }

    /// The live session a cookie names.
    pub fn get(&self, cookie: &str, now: u64) -> Option<OwnerSession> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let k = key(cookie);
        match map.get(&k) {
            Some(s) if s.expires_secs > now => Some(s.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends the session with this public id; false if there is none.
    pub fn end(&self, id: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let before = map.len();
        map.retain(|_, s| s.id != id);
        map.len() != before
    }

    /// Ends every session (a password change does this).
    pub fn end_all(&self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Live sessions, newest first.
    pub fn list(&self, now: u64) -> Vec<OwnerSession> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<OwnerSession> = map
            .values()
            .filter(|s| s.expires_secs > now)
            .cloned()
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.created_secs));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_end_and_stay_bounded() {
        let s = OwnerSessions::default();
        let peer: IpAddr = "192.168.0.2".parse().unwrap();
        let (cookie, first) = s.open(peer, "phone", 100, 60);
        assert_eq!(s.get(&cookie, 159).unwrap().csrf, first.csrf);
        assert!(s.get(&cookie, 160).is_none(), "expired");
        assert!(s.get("made-up", 100).is_none());
        let (c2, two) = s.open(peer, "laptop", 200, 60);
        assert!(s.end(&two.id) && s.get(&c2, 201).is_none() && !s.end(&two.id));
        let cookies: Vec<String> = (0..MAX_SESSIONS + 3)
            .map(|i| s.open(peer, "x", 300 + i as u64, 600).0)
            .collect();
        assert_eq!(s.list(400).len(), MAX_SESSIONS);
        assert!(s.get(&cookies[0], 400).is_none(), "the oldest made room");
        assert!(s.get(cookies.last().unwrap(), 400).is_some());
        s.end_all();
        assert!(s.list(400).is_empty());
    }
}

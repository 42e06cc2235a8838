//! Key encodings of the sled trees (see the table in `store/mod.rs`). Keys sort bytewise,
//! so `user ‖ path` keys list a user's files in C-collation path order.

use crate::pubkey::PublicKey;

/// `user (32 bytes) ‖ path (UTF-8)`: entries and inline content.
pub fn entry(user: &PublicKey, path: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + path.len());
    k.extend_from_slice(user.as_bytes());
    k.extend_from_slice(path.as_bytes());
    k
}

/// The path part of an entry key.
pub fn entry_path(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(32..)?).ok()
}

/// The smallest key greater than every key that starts with `prefix` (prefix ends in `/`).
pub fn after_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    // Invariant: directory prefixes end in '/' (0x2F), so incrementing never overflows.
    if let Some(last) = k.last_mut() {
        *last += 1;
    }
    k
}

/// The smallest key strictly greater than `key`.
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// `user ‖ grant id`: index of a user's grants.
pub fn user_grant(user: &PublicKey, grant_id: &str) -> Vec<u8> {
    entry(user, grant_id)
}

/// `user ‖ event id`: index of a user's events.
pub fn user_event(user: &PublicKey, id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(user.as_bytes());
    k.extend_from_slice(&event(id));
    k
}

/// Event ids as big-endian so they sort numerically.
pub fn event(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering() {
        let u =
            PublicKey::parse_z32("8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo").unwrap();
        let a = entry(&u, "/pub/a/");
        assert!(entry(&u, "/pub/a/zzz") < after_prefix(&a));
        assert!(entry(&u, "/pub/a0") >= after_prefix(&a));
        assert!(successor(&entry(&u, "/pub/a")) > entry(&u, "/pub/a"));
        assert!(successor(&entry(&u, "/pub/a")) < entry(&u, "/pub/a-"));
        assert_eq!(entry_path(&a), Some("/pub/a/"));
        assert!(event(2) > event(1) && event(256) > event(255));
    }
}

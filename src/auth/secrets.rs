//! Secrets handed to clients: bearer tokens (32 random bytes, base64url, 43 characters;
//! only their SHA-256 is stored), signup tokens (`XXXX-XXXX-XXXX`, Crockford base32 of
//! 7 random bytes) and cookie session secrets (16 random bytes, Crockford base32, 26
//! characters).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

pub const BEARER_LEN: usize = 43;
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // Invariant: the OS random source is available on every supported platform.
    getrandom::fill(&mut b).expect("OS randomness");
    b
}

/// A fresh bearer token and the hash to store.
pub fn new_bearer() -> (String, [u8; 32]) {
    let token = bearer_from_bytes(random::<32>());
    let hash = bearer_hash(&token);
    (token, hash)
}

fn bearer_from_bytes(b: [u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub fn bearer_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: Bearer <token>` header; anything else is `None`.
pub fn bearer_from_header(value: &[u8]) -> Option<&str> {
    let token = std::str::from_utf8(value.strip_prefix(b"Bearer ")?).ok()?;
    (token.len() == BEARER_LEN).then_some(token)
}

/// A fresh operator password: 15 random bytes in Crockford base32, 24 characters.
pub fn new_password() -> String {
    crockford(&random::<15>())
}

/// A fresh cookie session secret: 16 random bytes in Crockford base32 (upper case, no
/// padding), 26 characters.
pub fn new_cookie_secret() -> String {
    crockford(&random::<16>())
}

/// Crockford base32, upper case, no padding.
pub fn crockford(bytes: &[u8]) -> String {
    crate::pubkey::base32_with(CROCKFORD, bytes)
}

pub fn new_signup_token() -> String {
    let bytes = random::<7>();
    let mut bits: u64 = 0;
    for b in bytes {
        bits = (bits << 8) | b as u64;
    }
    bits <<= 4; // 56 bits → 60 bits = 12 symbols
    let mut out = String::with_capacity(14);
    for i in 0..12 {
        if i == 4 || i == 8 {
            out.push('-');
        }
        let v = (bits >> (55 - 5 * i)) & 31;
        out.push(CROCKFORD[v as usize] as char);
    }
    out
}

pub fn is_signup_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 14
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 9 => *c == b'-',
            _ => CROCKFORD.contains(c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn bearer_vectors() {
        let t = bearer_from_bytes([0u8; 32]);
        assert_eq!(t, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            hex(&bearer_hash(&t)),
            "0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a"
        );
        let (t, h) = new_bearer();
        assert_eq!(t.len(), BEARER_LEN);
        assert_eq!(bearer_hash(&t), h);
    }

    #[test]
    fn authorization_header_forms() {
        let t = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        assert_eq!(
            bearer_from_header(format!("Bearer {t}").as_bytes()),
            Some(t)
        );
        assert_eq!(bearer_from_header(b"Bearer "), None);
        assert_eq!(bearer_from_header(b"Basic Zm9vOmJhcg=="), None);
        assert_eq!(bearer_from_header(format!("bearer {t}").as_bytes()), None);
        assert_eq!(bearer_from_header(format!("Bearer  {t}").as_bytes()), None);
        assert_eq!(bearer_from_header(b"Bearer \xff\xfe"), None);
    }

    #[test]
    fn signup_tokens() {
        assert!(is_signup_token("JZY0-D6MY-ZFNG"));
        for bad in [
            "JZY0D6MYZFNG",
            "jzy0-d6my-zfng",
            "JZY0-D6MY-ZFNI",
            "JZY0-D6MY-ZFN",
            "",
        ] {
            assert!(!is_signup_token(bad), "{bad}");
        }
        let t = new_signup_token();
        assert!(is_signup_token(&t), "{t}");
        assert_ne!(new_signup_token(), t);
    }
}

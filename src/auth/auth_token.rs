//! AuthToken: the signed blob older SDKs send to `POST /signup` and `POST /session`.
//!
//! Layout: signature (64) ‖ `PUBKY:AUTH` (10) ‖ version (1, = 0) ‖ timestamp (8, µs,
//! big-endian) ‖ user key (32) ‖ capabilities (LEB128 length + UTF-8, comma-joined). The
//! signature covers bytes `[65..]` — one byte into the namespace, exactly as the reference
//! signs it. Pure: `now` is a parameter; the replay guard is a small in-memory set.

use std::collections::HashMap;
use std::sync::Mutex;

use ed25519_dalek::Signature;

use super::capability::Capabilities;
use crate::pubkey::PublicKey;

pub const NAMESPACE: &[u8; 10] = b"PUBKY:AUTH";
/// Allowed clock difference, in microseconds.
pub const WINDOW_US: u64 = 180 * 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthTokenError {
    UnknownVersion,
    TooFarInTheFuture,
    Expired,
    InvalidSignature,
    Parsing(&'static str),
    AlreadyUsed,
}

impl std::fmt::Display for AuthTokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthTokenError::UnknownVersion => f.write_str("Unknown version"),
            AuthTokenError::TooFarInTheFuture => {
                f.write_str("AuthToken has a timestamp that is more than 3 minutes in the future")
            }
            AuthTokenError::Expired => {
                f.write_str("AuthToken has a timestamp that is more than 3 minutes in the past")
            }
            AuthTokenError::InvalidSignature => f.write_str("Invalid Signature"),
            AuthTokenError::Parsing(m) => write!(f, "Invalid AuthToken: {m}"),
            AuthTokenError::AlreadyUsed => f.write_str("AuthToken already used"),
        }
    }
}

impl std::error::Error for AuthTokenError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthToken {
    /// µs since the epoch
    pub timestamp: u64,
    pub user: PublicKey,
    pub caps: Capabilities,
    /// The capabilities exactly as sent (stored without normalisation).
    pub caps_text: String,
}

/// Reads a LEB128 `u32` length; returns it and the bytes it took.
fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(5) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return usize::try_from(v).ok().map(|v| (v, i + 1));
        }
    }
    None
}

/// Checks format, version, timestamp window and signature (not replay).
pub fn verify(bytes: &[u8], now_us: u64) -> Result<AuthToken, AuthTokenError> {
    let version = *bytes.get(74).ok_or(AuthTokenError::Parsing("too short"))?;
    if version > 0 {
        return Err(AuthTokenError::UnknownVersion);
    }
    let short = AuthTokenError::Parsing("too short");
    let ts: [u8; 8] = bytes
        .get(75..83)
        .ok_or(short.clone())?
        .try_into()
        .map_err(|_| short.clone())?;
    let key: [u8; 32] = bytes
        .get(83..115)
        .ok_or(short.clone())?
        .try_into()
        .map_err(|_| short.clone())?;
    let (len, used) = varint(bytes.get(115..).unwrap_or_default()).ok_or(short.clone())?;
    let start = 115 + used;
    let caps_bytes = bytes.get(start..start + len).ok_or(short)?;
    // The namespace is signed from its second byte (the reference's off-by-one): those nine
    // bytes must be `UBKY:AUTH`, so a signature made for another purpose is never a token.
    if bytes.get(65..74) != Some(&NAMESPACE[1..]) {
        return Err(AuthTokenError::Parsing("not an AuthToken namespace"));
    }
    let caps_text = std::str::from_utf8(caps_bytes)
        .map_err(|_| AuthTokenError::Parsing("capabilities are not UTF-8"))?;
    let caps = Capabilities::parse(caps_text)
        .map_err(|_| AuthTokenError::Parsing("invalid capabilities"))?;
    let user =
        PublicKey::from_bytes(key).map_err(|_| AuthTokenError::Parsing("invalid public key"))?;
    let timestamp = u64::from_be_bytes(ts);
    if timestamp > now_us.saturating_add(WINDOW_US) {
        return Err(AuthTokenError::TooFarInTheFuture);
    }
    if timestamp < now_us.saturating_sub(WINDOW_US) {
        return Err(AuthTokenError::Expired);
    }
    let sig: [u8; 64] = bytes[..64]
        .try_into()
        .map_err(|_| AuthTokenError::Parsing("too short"))?;
    // Strict: no small-order R, canonical s (the key itself was checked by `from_bytes`).
    user.verifying_key()
        .verify_strict(&bytes[65..], &Signature::from_bytes(&sig))
        .map_err(|_| AuthTokenError::InvalidSignature)?;
    Ok(AuthToken {
        timestamp,
        user,
        caps,
        caps_text: caps_text.to_string(),
    })
}

/// Builds a signed token (tests and tools; the server only verifies).
pub fn sign(key: &ed25519_dalek::SigningKey, timestamp_us: u64, caps: &str) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let mut b = vec![0u8; 64];
    b.extend_from_slice(NAMESPACE);
    b.push(0);
    b.extend_from_slice(&timestamp_us.to_be_bytes());
    b.extend_from_slice(key.verifying_key().as_bytes());
    let mut n = caps.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            b.push(byte);
            break;
        }
        b.push(byte | 0x80);
    }
    b.extend_from_slice(caps.as_bytes());
    let sig = key.sign(&b[65..]);
    b[..64].copy_from_slice(&sig.to_bytes());
    b
}

/// Remembers (timestamp, key) of accepted tokens for twice the window, so each token is
/// usable once.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(u64, [u8; 32]), ()>>,
}

impl ReplayGuard {
    /// Records the token; `AlreadyUsed` if it was seen before.
    pub fn check(&self, t: &AuthToken, now_us: u64) -> Result<(), AuthTokenError> {
        // The map holds plain keys; a panic elsewhere cannot leave it inconsistent.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = now_us.saturating_sub(2 * WINDOW_US);
        seen.retain(|(ts, _), _| *ts >= oldest);
        if seen.insert((t.timestamp, *t.user.as_bytes()), ()).is_some() {
            return Err(AuthTokenError::AlreadyUsed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const TS: u64 = 1_700_000_000_000_000;

    /// A token for the identity key with signature R = identity, s = 0: it "verifies"
    /// under non-strict checks, so anyone could sign in as that key.
    fn forged_identity_token(ts: u64) -> Vec<u8> {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut t = vec![0u8; 64];
        t[0] = 1; // R = identity, s = 0
        t.extend_from_slice(NAMESPACE);
        t.push(0);
        t.extend_from_slice(&ts.to_be_bytes());
        t.extend_from_slice(&identity);
        t.push(4);
        t.extend_from_slice(b"/:rw");
        t
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        assert_eq!(
            verify(&forged_identity_token(TS), TS),
            Err(AuthTokenError::Parsing("invalid public key"))
        );
        // A genuine signature over another namespace is not a token.
        use ed25519_dalek::Signer;
        let mut t = sign(&user(), TS, "/:rw");
        t[65..74].copy_from_slice(b"UBKY:OTHE");
        let sig = user().sign(&t[65..]).to_bytes();
        t[..64].copy_from_slice(&sig);
        assert_eq!(
            verify(&t, TS),
            Err(AuthTokenError::Parsing("not an AuthToken namespace"))
        );
    }

    fn user() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[0; 32])
    }

    #[test]
    fn spec_vectors() {
        let root = hex("072028a652776bb0aa92409809ad200896ac39894ccb96c2078158efdec3b7e093300a437dedf23d77f0cf7cf899b359e7ffbbb937a79ada3e812dbb9fe53106 5055424b593a41555448 00 00060a24181e4000 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29 04 2f3a7277");
        assert_eq!(root.len(), 120);
        assert_eq!(sign(&user(), TS, "/:rw"), root);
        let t = verify(&root, TS).unwrap();
        assert_eq!(t.timestamp, TS);
        assert_eq!(t.caps_text, "/:rw");
        assert!(t.caps.is_root());
        assert_eq!(
            t.user.to_z32(),
            "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"
        );
        let two = hex("0163fa3de0b022ee67390d73a79d9f1bc9863695eafd5a234382ab96f13ff7a6c1012cf60b59e042103ac50ada7395acdd46970a5be41b44cc72e0813ef1db00 5055424b593a41555448 00 00060a24181e4000 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29 23 2f7075622f6d792d636f6f6c2d6170702f3a72772c2f7075622f666f6f2e7478743a72");
        assert_eq!(two.len(), 151);
        assert_eq!(
            sign(&user(), TS, "/pub/my-cool-app/:rw,/pub/foo.txt:r"),
            two
        );
        assert_eq!(
            verify(&two, TS).unwrap().caps_text,
            "/pub/my-cool-app/:rw,/pub/foo.txt:r"
        );
    }

    #[test]
    fn rejections() {
        let t = sign(&user(), TS, "/:rw");
        for len in 0..t.len() {
            assert!(
                matches!(verify(&t[..len], TS), Err(AuthTokenError::Parsing(_))),
                "{len}"
            );
        }
        let mut v1 = t.clone();
        v1[74] = 1;
        assert_eq!(verify(&v1, TS), Err(AuthTokenError::UnknownVersion));
        let s = 1_000_000;
        assert_eq!(verify(&t, TS + 181 * s), Err(AuthTokenError::Expired));
        assert_eq!(
            verify(&t, TS - 185 * s),
            Err(AuthTokenError::TooFarInTheFuture)
        );
        assert!(verify(&t, TS + 175 * s).is_ok());
        assert!(verify(&t, TS - 175 * s).is_ok());
        let mut bad = t.clone();
        bad[10] ^= 1;
        assert_eq!(verify(&bad, TS), Err(AuthTokenError::InvalidSignature));
        // byte 64 is outside the signed range, exactly as the reference signs it
        let mut ns = t.clone();
        ns[64] = b'X';
        assert!(verify(&ns, TS).is_ok());
        let g = ReplayGuard::default();
        let ok = verify(&t, TS).unwrap();
        assert_eq!(g.check(&ok, TS), Ok(()));
        assert_eq!(g.check(&ok, TS), Err(AuthTokenError::AlreadyUsed));
        assert_eq!(g.check(&ok, TS + 361 * s), Ok(()));
        assert!(matches!(
            verify(&sign(&user(), TS, "nope"), TS),
            Err(AuthTokenError::Parsing(_))
        ));
    }
}

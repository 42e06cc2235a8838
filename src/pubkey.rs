//! Public keys as the Pubky protocol names them: 32-byte ed25519 keys written in z-base32
//! (52 characters, no padding). Used for tenants, grant issuers, cookie names and listing
//! lines; the binary form goes into store keys.

use std::cell::RefCell;
use std::fmt;

const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
/// Length of a z-base32 encoded 32-byte key.
pub const Z32_LEN: usize = 52;

/// A validated ed25519 public key (the point decompresses).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not 52 characters of the z-base32 alphabet, or non-canonical trailing bits.
    Encoding,
    /// Decodes to 32 bytes that are not an ed25519 point.
    NotAPoint,
    /// A point of small order: any signature "verifies" under it with a forged R and s = 0,
    /// so nobody can own it.
    SmallOrder,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Encoding => f.write_str("not a z-base32 encoded public key"),
            KeyError::NotAPoint => f.write_str("not a valid ed25519 public key"),
            KeyError::SmallOrder => f.write_str("a small-order ed25519 key, which nobody owns"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Keys this thread recently proved to be points. Decompressing a point costs a field
/// square root (~40k instructions, most of a small GET's CPU); a request names the same few
/// keys again and again (tenant in the URL, user and client key in the stored session and
/// grant). Only proven-valid keys are kept, so a hit is as good as the check.
const RECENT_KEYS: usize = 8;

thread_local! {
    static RECENT: RefCell<RecentKeys> = const {
        RefCell::new(RecentKeys { keys: [[0; 32]; RECENT_KEYS], filled: 0, next: 0 })
    };
}

struct RecentKeys {
    keys: [[u8; 32]; RECENT_KEYS],
    filled: usize,
    next: usize,
}

fn recently_validated(bytes: &[u8; 32]) -> bool {
    RECENT.with(|r| {
        let r = r.borrow();
        r.keys[..r.filled].contains(bytes)
    })
}

fn remember_valid(bytes: [u8; 32]) {
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        let i = r.next;
        r.keys[i] = bytes;
        r.next = (i + 1) % RECENT_KEYS;
        r.filled = (r.filled + 1).min(RECENT_KEYS);
    });
}

impl PublicKey {
    /// Wraps raw bytes after checking they are a valid ed25519 point of large order. Every
    /// key the server meets (URLs, tokens, grants, proofs, records) comes through here, so
    /// a small-order key can never sign in or become an account.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        if !recently_validated(&bytes) {
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPoint)?;
            if key.is_weak() {
                return Err(KeyError::SmallOrder);
            }
            remember_valid(bytes);
        }
        Ok(PublicKey(bytes))
    }

    /// Parses exactly a bare 52-character z-base32 key (no `pubky` prefix, no labels).
    pub fn parse_z32(s: &str) -> Result<Self, KeyError> {
        Self::from_bytes(decode_z32(s)?)
    }

    /// Parses a host value: a bare key, or `<label(s)>.<key>` (e.g. `_pubky.<key>`), with an
    /// optional trailing dot. A `:port` suffix is not accepted (as in the reference).
    pub fn parse_host(host: &str) -> Result<Self, KeyError> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let last = host.rsplit('.').next().unwrap_or(host);
        Self::parse_z32(last)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The ed25519 verifying key (always valid: checked at construction).
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        // Invariant: every PublicKey was checked with VerifyingKey::from_bytes.
        ed25519_dalek::VerifyingKey::from_bytes(&self.0).expect("validated at construction")
    }

    pub fn to_z32(&self) -> String {
        encode_z32(&self.0)
    }
}

impl From<ed25519_dalek::VerifyingKey> for PublicKey {
    fn from(k: ed25519_dalek::VerifyingKey) -> Self {
        PublicKey(k.to_bytes())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z32())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_z32())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse_z32(s)
    }
}

/// Stored as the 32 raw bytes (postcard values in the store).
impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = <[u8; 32]>::deserialize(d)?;
        PublicKey::from_bytes(bytes).map_err(serde::de::Error::custom)
    }
}

/// z-base32 of 32 bytes, whether or not they are a key (tests and messages).
pub fn encode_z32(bytes: &[u8; 32]) -> String {
    base32_with(ALPHABET, bytes)
}

/// Base32 of `bytes` with `alphabet`, most significant bits first, no padding (z-base-32
/// here; the cookie secrets use Crockford's alphabet).
pub(crate) fn base32_with(alphabet: &[u8; 32], bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(alphabet[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(alphabet[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn decode_z32(s: &str) -> Result<[u8; 32], KeyError> {
    let s = s.as_bytes();
    if s.len() != Z32_LEN {
        return Err(KeyError::Encoding);
    }
    let mut out = [0u8; 32];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut n = 0;
    for &c in s {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or(KeyError::Encoding)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[n] = (acc >> bits) as u8;
            n += 1;
        }
        acc &= (1 << bits) - 1;
    }
    // 52 chars = 260 bits: the last 4 bits must be zero so each key has one spelling.
    if acc != 0 {
        return Err(KeyError::Encoding);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_order_keys_are_refused() {
        // The identity (y = 1) and a point of order 4 (y = 0): valid encodings, no owner.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for bytes in [identity, [0u8; 32]] {
            assert_eq!(PublicKey::from_bytes(bytes), Err(KeyError::SmallOrder));
            assert_eq!(
                PublicKey::parse_z32(&encode_z32(&bytes)),
                Err(KeyError::SmallOrder)
            );
        }
        let real = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert!(PublicKey::from_bytes(real.to_bytes()).is_ok());
    }

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn pkarr_vector() {
        let k = PublicKey::from_bytes(hex(
            "01b467a3b7913ab27a04a8edf2f3fb074cfe0ecf4babe108d67be3853b0f26c5",
        ))
        .unwrap();
        assert_eq!(
            k.to_z32(),
            "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no"
        );
        assert_eq!(
            PublicKey::parse_z32("yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no").unwrap(),
            k
        );
    }

    #[test]
    fn zero_seed_vector() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[0u8; 32]);
        let k = PublicKey::from(sk.verifying_key());
        assert_eq!(
            k.to_z32(),
            "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"
        );
        assert_eq!(
            k.as_bytes(),
            &hex("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29")
        );
    }

    #[test]
    fn host_forms() {
        let z = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
        let k = PublicKey::parse_z32(z).unwrap();
        assert_eq!(PublicKey::parse_host(&format!("_pubky.{z}")).unwrap(), k);
        assert_eq!(PublicKey::parse_host(&format!("a.b.{z}.")).unwrap(), k);
        assert!(PublicKey::parse_host(&format!("{z}:6287")).is_err());
        assert!(PublicKey::parse_host(&format!("pubky{z}")).is_err());
        assert!(PublicKey::parse_z32(&format!("pubky{z}")).is_err());
        assert!(PublicKey::parse_z32("short").is_err());
    }

    #[test]
    fn rejects_non_canonical_and_bad_chars() {
        let z = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
        // 'o' = 0b10000: one data bit, four zero padding bits. 't' = 0b10001 keeps the data
        // bit but sets a padding bit: the same key spelled differently must be refused.
        let bad = format!("{}t", &z[..51]);
        assert_eq!(decode_z32(&bad), Err(KeyError::Encoding));
        assert_eq!(decode_z32(&"0".repeat(52)), Err(KeyError::Encoding));
        assert_eq!(decode_z32(&"Y".repeat(52)), Err(KeyError::Encoding));
    }

    #[test]
    fn recent_key_memory_never_admits_a_non_point() {
        let not_a_point = (2u8..=255)
            .map(|i| {
                let mut b = [0u8; 32];
                b[0] = i;
                b
            })
            .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
            .expect("some small y is not on the curve");
        let valid = *PublicKey::parse_z32("8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo")
            .unwrap()
            .as_bytes();
        for _ in 0..3 {
            assert!(PublicKey::from_bytes(valid).is_ok());
            assert_eq!(PublicKey::from_bytes(not_a_point), Err(KeyError::NotAPoint));
        }
        // more distinct keys than the memory holds: old entries rotate out, all stay valid
        for seed in 0..20u8 {
            let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
            assert!(PublicKey::from_bytes(k.to_bytes()).is_ok());
        }
        assert_eq!(PublicKey::from_bytes(not_a_point), Err(KeyError::NotAPoint));
    }
}

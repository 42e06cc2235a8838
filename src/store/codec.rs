//! Versioned value codec for everything the store writes: one version byte, then postcard.
//! Bytes that do not decode are reported as `StoreError::Corrupt`, never a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

/// Current encoding version of stored values.
pub const VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = vec![VERSION];
    // Invariant: postcard serialisation into a Vec only fails for unsupported types
    // (e.g. unsized sequences); every stored type is a plain struct.
    postcard::to_extend(value, out).expect("stored values serialise")
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!("{what}: unknown version {v}"))),
        None => Err(StoreError::Corrupt(format!("{what}: empty value"))),
    }
}

/// [`encode`] followed by raw bytes (an entry with its inline body): the postcard part
/// delimits itself, so [`decode_with_tail`] finds where the tail starts.
pub fn encode_with_tail<T: Serialize>(value: &T, tail: &[u8]) -> Vec<u8> {
    let mut out = encode(value);
    out.extend_from_slice(tail);
    out
}

/// The value and the raw bytes after it; see [`encode_with_tail`].
pub fn decode_with_tail<'a, T: DeserializeOwned>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<(T, &'a [u8]), StoreError> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => {
            postcard::take_from_bytes(rest).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!("{what}: unknown version {v}"))),
        None => Err(StoreError::Corrupt(format!("{what}: empty value"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EntryMeta, User};

    #[test]
    fn round_trip_and_corruption() {
        let m = EntryMeta {
            hash: [7; 32],
            len: 5,
            content_type: "text/plain".into(),
            created_at: 1,
            modified_at: 2,
            inline: true,
        };
        let b = encode(&m);
        assert_eq!(b[0], VERSION);
        assert_eq!(decode::<EntryMeta>("entry", &b).unwrap(), m);
        assert!(matches!(
            decode::<EntryMeta>("entry", &[]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode::<EntryMeta>("entry", &[9, 1, 2]),
            Err(StoreError::Corrupt(_))
        ));
        let with = encode_with_tail(&m, b"body");
        let (back, tail) = decode_with_tail::<EntryMeta>("entry", &with).unwrap();
        assert_eq!((back, tail), (m.clone(), &b"body"[..]));
        let (_, tail) = decode_with_tail::<EntryMeta>("entry", &b).unwrap();
        assert!(tail.is_empty());
        for cut in 1..b.len() {
            assert!(
                decode::<EntryMeta>("entry", &b[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 256) as u8).collect();
        let mut g = vec![VERSION];
        g.extend_from_slice(&garbage);
        let _ = decode::<User>("user", &g); // must not panic, whatever it returns
    }
}

//! A release: its manifest (version, target, size and BLAKE3 of the binary, the oldest
//! version that may upgrade to it, the store format it writes, notes) signed with the
//! release key. The signed file is JSON that carries the manifest as the exact text that
//! was signed, so no canonical form has to be agreed on:
//!
//! ```json
//! {"format":"pubky-edge-release/1","key":"<z-base-32>","manifest":"{…}","signature":"<base64url>"}
//! ```
//!
//! The signature is ed25519 (strict verification) over `pubky-edge-release/1\n` followed by
//! the manifest text. A box trusts one key; it reads a manifest only when that key signed
//! it, and keeps a downloaded binary only when its size and hash are the manifest's.

use std::cmp::Ordering;

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::pubkey::PublicKey;

/// The version this binary is.
pub const RUNNING: &str = env!("CARGO_PKG_VERSION");

/// The envelope's format, also the signature's context.
pub const FORMAT: &str = "pubky-edge-release/1";
/// A signed manifest is a few hundred bytes; anything far larger is not one.
pub const MAX_SIGNED_BYTES: usize = 64 * 1024;

/// Reads a signed manifest from `r`, stopping one byte past [`MAX_SIGNED_BYTES`]: enough
/// for [`open`] to refuse a larger one without holding it whole.
pub fn read_signed(r: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut signed = Vec::new();
    r.take(MAX_SIGNED_BYTES as u64 + 1)
        .read_to_end(&mut signed)?;
    Ok(signed)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `MAJOR.MINOR.PATCH`, optionally `-pre` (ordered before the plain version).
    pub version: String,
    /// The Rust target triple the binary was built for.
    pub target: String,
    /// The binary's length in bytes.
    pub size: u64,
    /// BLAKE3 of the binary, 64 hex characters.
    pub blake3: String,
    /// The oldest version that may upgrade to this one directly.
    pub min_from: String,
    /// The store's on-disk format this version writes: a box never goes back across a
    /// change of it without restoring the backup made before the update.
    pub store_format: u32,
    /// Release notes, plain text.
    #[serde(default)]
    pub notes: String,
    /// When the release was signed, seconds since the epoch.
    pub released_at: u64,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    key: String,
    manifest: String,
    signature: String,
}

/// Why a release is refused; each says what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseError {
    /// Not a signed manifest at all.
    Malformed(String),
    /// Signed by another key than the one this box trusts.
    WrongKey { signed_by: String, trusted: String },
    /// The signature does not match the manifest (altered, or forged).
    BadSignature,
    /// The binary is not the one the manifest names.
    WrongBinary(String),
    /// A release for another target.
    OtherTarget { release: String, this: String },
    /// Not newer than what runs.
    NotNewer { release: String, running: String },
    /// This version is too old to upgrade to it directly.
    TooOld { min_from: String, running: String },
}

impl std::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseError::Malformed(why) => write!(f, "not a signed release manifest: {why}"),
            ReleaseError::WrongKey { signed_by, trusted } => write!(
                f,
                "signed by {signed_by}, not by the release key this box trusts ({trusted})"
            ),
            ReleaseError::BadSignature => {
                f.write_str("the signature does not match the manifest (altered or forged)")
            }
            ReleaseError::WrongBinary(why) => {
                write!(f, "the binary is not the released one: {why}")
            }
            ReleaseError::OtherTarget { release, this } => {
                write!(f, "a release for {release}; this box is {this}")
            }
            ReleaseError::NotNewer { release, running } => {
                write!(
                    f,
                    "release {release} is not newer than the running {running}"
                )
            }
            ReleaseError::TooOld { min_from, running } => write!(
                f,
                "release needs at least version {min_from} to upgrade from; this box runs {running}"
            ),
        }
    }
}

impl std::error::Error for ReleaseError {}

fn signed_bytes(manifest_text: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(FORMAT.len() + 1 + manifest_text.len());
    m.extend_from_slice(FORMAT.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(manifest_text.as_bytes());
    m
}

/// The signed manifest file for `manifest`, signed with the release key.
pub fn sign(manifest: &Manifest, key: &SigningKey) -> String {
    // Invariant: a struct of strings and numbers always serializes.
    let text = serde_json::to_string_pretty(manifest).expect("a manifest serializes");
    let signature = key.sign(&signed_bytes(&text));
    let envelope = Envelope {
        format: FORMAT.into(),
        key: PublicKey::from(key.verifying_key()).to_z32(),
        manifest: text,
        signature: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.to_bytes()),
    };
    serde_json::to_string_pretty(&envelope).expect("an envelope serializes") + "\n"
}

/// Reads a signed manifest that `trusted` signed; anything else is refused.
pub fn open(signed: &[u8], trusted: &PublicKey) -> Result<Manifest, ReleaseError> {
    let bad = |why: String| ReleaseError::Malformed(why);
    if signed.len() > MAX_SIGNED_BYTES {
        return Err(bad(format!("{} bytes, more than a manifest", signed.len())));
    }
    let env: Envelope = serde_json::from_slice(signed).map_err(|e| bad(e.to_string()))?;
    if env.format != FORMAT {
        return Err(bad(format!("format {:?}, not {FORMAT:?}", env.format)));
    }
    let key = PublicKey::parse_z32(&env.key).map_err(|e| bad(format!("key: {e}")))?;
    if key != *trusted {
        return Err(ReleaseError::WrongKey {
            signed_by: key.to_z32(),
            trusted: trusted.to_z32(),
        });
    }
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(env.signature.as_bytes())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| bad("the signature is not 64 bytes of base64url".into()))?;
    key.verifying_key()
        .verify_strict(&signed_bytes(&env.manifest), &Signature::from_bytes(&sig))
        .map_err(|_| ReleaseError::BadSignature)?;
    let m: Manifest = serde_json::from_str(&env.manifest).map_err(|e| bad(e.to_string()))?;
    Version::parse(&m.version).ok_or_else(|| bad(format!("version {:?}", m.version)))?;
    Version::parse(&m.min_from).ok_or_else(|| bad(format!("min_from {:?}", m.min_from)))?;
    if m.blake3.len() != 64 || !m.blake3.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "blake3 {:?} is not 64 hex characters",
            m.blake3
        )));
    }
    Ok(m)
}

impl Manifest {
    /// Whether `binary` is the released binary: its size, then its hash.
    pub fn check_binary(&self, binary: &[u8]) -> Result<(), ReleaseError> {
        self.check_hashed(binary.len() as u64, blake3::hash(binary).to_hex().as_str())
    }

    /// [`check_binary`](Self::check_binary) for a binary hashed while it streamed: its
    /// length and BLAKE3 in hex.
    pub fn check_hashed(&self, size: u64, hash: &str) -> Result<(), ReleaseError> {
        if size != self.size {
            return Err(ReleaseError::WrongBinary(format!(
                "{size} bytes, the release has {} (truncated or another file)",
                self.size
            )));
        }
        if !hash.eq_ignore_ascii_case(&self.blake3) {
            return Err(ReleaseError::WrongBinary(format!(
                "BLAKE3 {hash}, the release has {}",
                self.blake3
            )));
        }
        Ok(())
    }

    /// Whether a box of `target` running `running` may upgrade to this release.
    pub fn applies_to(&self, target: &str, running: &str) -> Result<(), ReleaseError> {
        if self.target != target {
            return Err(ReleaseError::OtherTarget {
                release: self.target.clone(),
                this: target.into(),
            });
        }
        let parse = |v: &str| {
            Version::parse(v).ok_or_else(|| ReleaseError::Malformed(format!("version {v:?}")))
        };
        let (release, now, min) = (
            parse(&self.version)?,
            parse(running)?,
            parse(&self.min_from)?,
        );
        if release <= now {
            return Err(ReleaseError::NotNewer {
                release: self.version.clone(),
                running: running.into(),
            });
        }
        if now < min {
            return Err(ReleaseError::TooOld {
                min_from: self.min_from.clone(),
                running: running.into(),
            });
        }
        Ok(())
    }
}

/// A version: `MAJOR.MINOR.PATCH` and an optional pre-release tag, which orders before the
/// plain version (`0.2.0-rc1` < `0.2.0`); tags compare as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    numbers: [u64; 3],
    pre: Option<String>,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, Some(p.to_string())),
            Some(_) => return None,
            None => (s, None),
        };
        let mut parts = core.split('.');
        let mut numbers = [0u64; 3];
        for n in &mut numbers {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *n = part.parse().ok()?;
        }
        parts.next().is_none().then_some(Version { numbers, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers
            .cmp(&other.numbers)
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn manifest(binary: &[u8]) -> Manifest {
        Manifest {
            version: "0.2.0".into(),
            target: "aarch64-unknown-linux-musl".into(),
            size: binary.len() as u64,
            blake3: blake3::hash(binary).to_hex().to_string(),
            min_from: "0.1.0".into(),
            store_format: 1,
            notes: "Faster listings.".into(),
            released_at: 1_800_000_000,
        }
    }

    #[test]
    fn a_signed_manifest_opens_with_its_key_only() {
        let m = manifest(b"the binary");
        let signed = sign(&m, &key(1));
        let trusted = PublicKey::from(key(1).verifying_key());
        assert_eq!(open(signed.as_bytes(), &trusted), Ok(m.clone()));
        let other = PublicKey::from(key(2).verifying_key());
        assert!(matches!(
            open(signed.as_bytes(), &other),
            Err(ReleaseError::WrongKey { .. })
        ));
        // Another key that names the trusted one in the envelope: the signature fails.
        let forged = sign(&m, &key(2)).replace(&other.to_z32(), &trusted.to_z32());
        assert_eq!(
            open(forged.as_bytes(), &trusted),
            Err(ReleaseError::BadSignature)
        );
    }

    #[test]
    fn an_altered_manifest_is_refused() {
        let m = manifest(b"the binary");
        let signed = sign(&m, &key(1));
        let trusted = PublicKey::from(key(1).verifying_key());
        // The size changed inside the signed text (escaped in the envelope).
        let altered = signed.replace("\\\"size\\\": 10", "\\\"size\\\": 11");
        assert_ne!(altered, signed);
        assert_eq!(
            open(altered.as_bytes(), &trusted),
            Err(ReleaseError::BadSignature)
        );
        for junk in [&b"{}"[..], b"not json", &vec![b' '; MAX_SIGNED_BYTES + 1]] {
            assert!(matches!(
                open(junk, &trusted),
                Err(ReleaseError::Malformed(_))
            ));
        }
    }

    #[test]
    fn the_binary_must_be_the_released_one() {
        let binary = b"the binary".to_vec();
        let m = manifest(&binary);
        assert_eq!(m.check_binary(&binary), Ok(()));
        let e = m.check_binary(&binary[..5]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = m.check_binary(b"the binarY").unwrap_err();
        assert!(e.to_string().contains("BLAKE3"), "{e}");
    }

    #[test]
    fn a_release_applies_to_its_target_from_old_enough_versions() {
        let m = manifest(b"x");
        assert_eq!(m.applies_to("aarch64-unknown-linux-musl", "0.1.0"), Ok(()));
        assert_eq!(
            m.applies_to("aarch64-unknown-linux-musl", "0.2.0-rc1"),
            Ok(())
        );
        assert!(matches!(
            m.applies_to("armv7-unknown-linux-musleabihf", "0.1.0"),
            Err(ReleaseError::OtherTarget { .. })
        ));
        assert!(matches!(
            m.applies_to("aarch64-unknown-linux-musl", "0.2.0"),
            Err(ReleaseError::NotNewer { .. })
        ));
        assert!(matches!(
            m.applies_to("aarch64-unknown-linux-musl", "0.0.9"),
            Err(ReleaseError::TooOld { .. })
        ));
    }

    #[test]
    fn versions_order_numerically_with_pre_releases_first() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("0.10.0") > v("0.9.9"));
        assert!(v("1.0.0-rc1") < v("1.0.0"));
        assert!(v("1.0.0-rc1") < v("1.0.0-rc2"));
        assert_eq!(v("1.2.3"), v("1.2.3"));
        for bad in ["1.2", "1.2.3.4", "1.x.3", "", "1.2.3-", "-1.2.3", "1..3"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }
}

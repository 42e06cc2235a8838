//! A user's recovery file, as Pubky Ring and the SDKs export it: the line
//! `pubky.org/recovery` (older files: `pkarr.org/recovery`), a newline, then the 32-byte
//! ed25519 secret key sealed with XSalsa20-Poly1305 (24-byte nonce first) under a key
//! derived from the passphrase with Argon2id (default parameters, salt `recovery`). Only
//! read here (by `move`, the user's own tool); the box never stores a user's secret.

use argon2::Argon2;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;

#[derive(Debug, PartialEq, Eq)]
pub enum RecoveryError {
    NotARecoveryFile,
    WrongPassphrase,
    Malformed,
}

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecoveryError::NotARecoveryFile => "not a Pubky recovery file",
            RecoveryError::WrongPassphrase => "wrong recovery passphrase (or a damaged file)",
            RecoveryError::Malformed => "the recovery file does not hold a 32-byte key",
        })
    }
}

impl std::error::Error for RecoveryError {}

fn file_key(passphrase: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    // Invariant: 32 bytes is a valid Argon2 output length.
    Argon2::default()
        .hash_password_into(passphrase.as_bytes(), b"recovery", &mut key)
        .expect("32-byte Argon2 output");
    key
}

/// The user's secret key seed.
pub fn decrypt(file: &[u8], passphrase: &str) -> Result<[u8; 32], RecoveryError> {
    let nl = file
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(RecoveryError::NotARecoveryFile)?;
    let spec = &file[..nl];
    if !(spec.starts_with(b"pubky.org/recovery") || spec.starts_with(b"pkarr.org/recovery")) {
        return Err(RecoveryError::NotARecoveryFile);
    }
    let sealed = &file[nl + 1..];
    if sealed.len() < 24 {
        return Err(RecoveryError::Malformed);
    }
    let cipher = XSalsa20Poly1305::new(&file_key(passphrase).into());
    let plain = cipher
        .decrypt(sealed[..24].into(), &sealed[24..])
        .map_err(|_| RecoveryError::WrongPassphrase)?;
    plain.try_into().map_err(|_| RecoveryError::Malformed)
}

/// Seals `seed` into a recovery file (for tests and tools that make one).
pub fn encrypt(seed: &[u8; 32], passphrase: &str) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    // Invariant: the OS random source is available on every supported platform.
    getrandom::fill(&mut nonce).expect("OS randomness");
    let cipher = XSalsa20Poly1305::new(&file_key(passphrase).into());
    // Invariant: sealing a 32-byte message in memory cannot fail.
    let sealed = cipher.encrypt((&nonce).into(), &seed[..]).expect("seal");
    let mut out = b"pubky.org/recovery\n".to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_opens_with_its_passphrase_only() {
        let seed = [9u8; 32];
        let file = encrypt(&seed, "pass phrase");
        assert_eq!(file.len(), 19 + 24 + 32 + 16);
        assert_eq!(decrypt(&file, "pass phrase"), Ok(seed));
        assert_eq!(decrypt(&file, "other"), Err(RecoveryError::WrongPassphrase));
        assert_eq!(
            decrypt(b"hello\nworld", "x"),
            Err(RecoveryError::NotARecoveryFile)
        );
        let mut old = b"pkarr.org/recovery\n".to_vec();
        old.extend_from_slice(&file[19..]);
        assert_eq!(decrypt(&old, "pass phrase"), Ok(seed));
    }
}

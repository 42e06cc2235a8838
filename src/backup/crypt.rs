//! The age side of backups. Each box has one backup key: an age X25519 identity whose
//! secret half is kept only inside `key.age`, encrypted with the household's passphrase
//! (age's scrypt recipient), and whose public half (`age1…`) the box keeps in the clear.
//! Backups are encrypted to the public half, so the nightly backup needs no secret; reading
//! one needs `key.age` and the passphrase, exactly as the `age` tool does it:
//! `age -d -i key.age points/<point>.age`.

use std::io::{self, Read, Write};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use anyhow::{anyhow, bail, Context, Result};

/// Shortest passphrase accepted for a new key.
pub const MIN_PASSPHRASE: usize = 8;

/// A new backup key: `key.age` (the identity encrypted with `passphrase`) and its recipient.
pub fn new_key(passphrase: &str) -> Result<(Vec<u8>, String)> {
    if passphrase.chars().count() < MIN_PASSPHRASE {
        bail!("the backup passphrase must be at least {MIN_PASSPHRASE} characters");
    }
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let enc = age::Encryptor::with_user_passphrase(SecretString::from(passphrase.to_string()));
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out)?;
    // The age key file format: a comment line with the public key, then the secret key.
    writeln!(w, "# public key: {recipient}")?;
    writeln!(w, "{}", identity.to_string().expose_secret())?;
    w.finish()?;
    Ok((out, recipient))
}

/// The identity inside `key.age`; a wrong passphrase is said as such.
pub fn open_key(key_age: &[u8], passphrase: &str) -> Result<age::x25519::Identity> {
    let dec = age::Decryptor::new(key_age).context("key.age is not an age file")?;
    if !dec.is_scrypt() {
        bail!("key.age is not protected by a passphrase");
    }
    let pass = age::scrypt::Identity::new(SecretString::from(passphrase.to_string()));
    let mut r = dec
        .decrypt(std::iter::once(&pass as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
                anyhow!("wrong backup passphrase")
            }
            other => anyhow!("key.age cannot be read: {other}"),
        })?;
    let mut text = String::new();
    r.read_to_string(&mut text).context("key.age is damaged")?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .context("key.age holds no age secret key")?;
    age::x25519::Identity::from_str(line).map_err(|e| anyhow!("key.age: {e}"))
}

/// Checks that a recipient string is an age X25519 recipient.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(s.trim()).map_err(|e| anyhow!("backup recipient: {e}"))
}

/// Wraps `out` so that what is written is encrypted to `recipient`; `finish` the writer.
pub fn encrypt_to<W: Write>(
    recipient: &age::x25519::Recipient,
    out: W,
) -> io::Result<age::stream::StreamWriter<W>> {
    let enc = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| io::Error::other(e.to_string()))?;
    enc.wrap_output(out)
}

/// Reads `input` decrypted with the backup identity. A damaged file fails while reading
/// (age authenticates every 64 KiB chunk and the end), never with wrong bytes.
pub fn decrypt_with<R: Read>(
    identity: &age::x25519::Identity,
    input: R,
) -> io::Result<age::stream::StreamReader<R>> {
    let dec = age::Decryptor::new(input).map_err(|e| io::Error::other(e.to_string()))?;
    dec.decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_opens_with_its_passphrase_only_and_decrypts_what_was_sent_to_it() {
        let (key, recipient) = new_key("correct horse").unwrap();
        assert!(recipient.starts_with("age1"));
        let Err(e) = open_key(&key, "wrong horse!") else {
            panic!("a wrong passphrase opened the key");
        };
        assert_eq!(e.to_string(), "wrong backup passphrase");
        let id = open_key(&key, "correct horse").unwrap();
        assert_eq!(id.to_public().to_string(), recipient);

        let mut sealed = Vec::new();
        let mut w = encrypt_to(&parse_recipient(&recipient).unwrap(), &mut sealed).unwrap();
        w.write_all(b"the family photos").unwrap();
        w.finish().unwrap();
        let mut plain = Vec::new();
        decrypt_with(&id, &sealed[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"the family photos");

        // one flipped byte in the payload: an error, not altered bytes
        let last = sealed.len() - 5;
        sealed[last] ^= 1;
        let mut out = Vec::new();
        assert!(decrypt_with(&id, &sealed[..])
            .unwrap()
            .read_to_end(&mut out)
            .is_err());
        assert!(new_key("short").is_err());
    }
}

//! Passwords kept as Argon2id hashes in the PHC string format
//! (`$argon2id$v=19$m=…,t=…,p=1$<salt>$<hash>`), and comparing secrets in constant time.
//! The owner's password (`account::owner`) is stored this way.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Argon2id at OWASP's smallest-memory setting (7 MiB, 5 passes): a Pi Zero has 512 MB
/// and this runs one at a time, so a burst of logins cannot take the box's memory.
const M_COST_KIB: u32 = 7 * 1024;
const T_COST: u32 = 5;
/// Compares via digests so the time taken does not depend on where the values differ.
pub fn same_password(given: &[u8], expected: impl AsRef<[u8]>) -> bool {
    Sha256::digest(given) == Sha256::digest(expected.as_ref())
}

/// Whether `given` is the password the PHC string `phc` was made from (an Argon2 run at
/// the string's own costs; false for a string that is not Argon2id).
pub fn matches(phc: &str, given: &[u8]) -> bool {
    let Some((params, salt, expected)) = parse_phc(phc) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    a.hash_password_into(given, &salt, &mut out).is_ok() && same_password(&out, &expected)
}

/// `$argon2id$v=19$m=…,t=…,p=1$<salt>$<hash>` (the PHC string format).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let params = Params::new(M_COST_KIB, T_COST, 1, Some(32)).map_err(|e| e.to_string())?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "$argon2id$v=19$m={M_COST_KIB},t={T_COST},p=1${}${}",
        B64.encode(salt),
        B64.encode(out)
    ))
}

pub fn parse_phc(phc: &str) -> Option<(Params, Vec<u8>, Vec<u8>)> {
    let mut parts = phc.strip_prefix("$argon2id$v=19$")?.split('$');
    let (costs, salt, hash) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in costs.split(',') {
        let (k, v) = kv.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return None,
        }
    }
    let (salt, hash) = (B64.decode(salt).ok()?, B64.decode(hash).ok()?);
    if !(16..=64).contains(&hash.len()) {
        return None;
    }
    let params = Params::new(m?, t?, p?, Some(hash.len())).ok()?;
    Some((params, salt, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_reject_other_passwords() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{phc}");
        let (params, salt, hash) = parse_phc(&phc).unwrap();
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(b"correct horse", &salt, &mut out)
            .unwrap();
        assert_eq!(out.as_slice(), hash.as_slice());
        assert!(parse_phc("$argon2i$v=19$m=1,t=1,p=1$AAAA$AAAA").is_none());
        assert!(parse_phc(&format!("{phc}$extra")).is_none());
    }
}

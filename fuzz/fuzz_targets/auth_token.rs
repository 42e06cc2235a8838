//! AuthToken (cookie sign-in) parsing: the input as a whole token, and as everything after
//! the fixed header of a token signed by a fixed key (so the capability section's length
//! prefix and text are parsed after a valid signature).
#![no_main]

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use pubky_edge::auth::auth_token::{verify, NAMESPACE};

const NOW_US: u64 = 1_750_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let _ = verify(data, NOW_US);
    let key = SigningKey::from_bytes(&[5; 32]);
    let mut token = vec![0u8; 64];
    token.extend_from_slice(NAMESPACE);
    token.push(0);
    token.extend_from_slice(&NOW_US.to_be_bytes());
    token.extend_from_slice(key.verifying_key().as_bytes());
    token.extend_from_slice(data);
    // The signature covers everything from one byte into the namespace.
    let sig = key.sign(&token[65..]).to_bytes();
    token[..64].copy_from_slice(&sig);
    if let Ok(t) = verify(&token, NOW_US) {
        assert_eq!(t.timestamp, NOW_US);
        assert_eq!(t.user.as_bytes(), key.verifying_key().as_bytes());
    }
});

//! Grant and PoP JWS: the input is tried as a compact JWS, and as a claims payload signed
//! with a fixed key (so claim parsing and every check after the signature run too).
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use pubky_edge::auth::grant::{
    check_signup_grant, verify_grant, verify_pop, GrantClaims, PopClaims,
};
use pubky_edge::auth::jws::{self, Jws};
use pubky_edge::pubkey::PublicKey;

const NOW: u64 = 1_750_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(j) = Jws::decode(s) {
            let _ = j.verify(&SigningKey::from_bytes(&[1; 32]).verifying_key());
        }
        let _ = verify_grant(s, NOW, true);
    }
    let _ = GrantClaims::from_json(data);
    let _ = PopClaims::from_json(data);
    // The payload signed by a fixed key: when it names that key as `iss`, the grant
    // verifies and the signup and PoP checks get a real grant to work on.
    let key = SigningKey::from_bytes(&[7; 32]);
    let grant_jws = jws::sign("pubky-grant", data, &key);
    if let Ok(grant) = verify_grant(&grant_jws, NOW, false) {
        let _ = check_signup_grant(&grant, NOW);
        let roundtrip = GrantClaims::from_json(grant.to_json().as_bytes());
        assert!(roundtrip.is_some(), "printed claims parse");
        let hs = PublicKey::from(key.verifying_key());
        let _ = verify_pop(&jws::sign("pubky-pop", data, &key), &grant, &hs, NOW);
    }
});

//! The pkarr relay's `PUT /pkarr/<key>` body: the input as a raw relay payload, and as the
//! DNS packet of a payload signed by a fixed key (so DNS parsing and the checks after the
//! signature run), then what the device reads from an accepted packet.
#![no_main]

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use pubky_edge::announce::packet::homeserver_of;
use pubky_edge::announce::relay::Relay;
use pubky_edge::pubkey::PublicKey;

const NOW_US: u64 = 1_750_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[9; 32]);
    let pk = PublicKey::from(key.verifying_key());
    let _ = Relay::verify(&pk, data, NOW_US);
    // pkarr signs `3:seqi<ts>e1:v<len>:<dns>`; the payload is signature ‖ ts ‖ dns.
    let ts = NOW_US - 1_000_000;
    let mut signable = format!("3:seqi{ts}e1:v{}:", data.len()).into_bytes();
    signable.extend_from_slice(data);
    let mut payload = key.sign(&signable).to_bytes().to_vec();
    payload.extend_from_slice(&ts.to_be_bytes());
    payload.extend_from_slice(data);
    if let Ok(p) = Relay::verify(&pk, &payload, NOW_US) {
        let _ = homeserver_of(&p);
    }
});

//! The stored-value codec: decoding any bytes as any stored type returns a value or
//! `Corrupt`, never panics or allocates without bound; decoded values re-encode to bytes
//! that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubky_edge::store::codec::{decode, encode};
use pubky_edge::store::{EntryMeta, EventRecord, GrantRecord, SessionRecord, SignupToken, User};

fn roundtrip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = decode::<T>("fuzz", data) {
        let again: T = decode("fuzz", &encode(&v)).expect("re-encoded value decodes");
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    roundtrip::<EntryMeta>(data);
    roundtrip::<User>(data);
    roundtrip::<EventRecord>(data);
    roundtrip::<GrantRecord>(data);
    roundtrip::<SessionRecord>(data);
    roundtrip::<SignupToken>(data);
    roundtrip::<u64>(data);
});

//! Capability lists: parsing never panics, and a parsed list prints back to strings that
//! parse to the same list; normalising keeps the storage access it grants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubky_edge::auth::capability::Capabilities;
use pubky_edge::storage_path::StoragePath;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(caps) = Capabilities::parse(s) else {
        return;
    };
    let printed = caps.to_strings();
    let again = Capabilities::from_strings(&printed).expect("printed capabilities parse");
    assert_eq!(again, caps);
    let probes: Vec<StoragePath> = caps.0.iter().map(|c| c.scope.clone()).collect();
    let normal = caps.clone().normalize();
    for p in &probes {
        assert_eq!(caps.can_read(p), normal.can_read(p));
        assert_eq!(caps.can_write(p), normal.can_write(p));
    }
    // Not compared: `is_root`. Root is judged per entry (`/:r,/:w` is not root, as in the
    // reference server), while normalising merges equal scopes into `/:rw`.
});

//! Path parsing and normalisation: never panics, and whatever `normalize` accepts is
//! canonical (accepted unchanged by `strict`, a fixed point of `normalize`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubky_edge::storage_path::{percent_decode, StoragePath};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = percent_decode(s);
    let _ = StoragePath::from_url_path(s);
    if let Ok(p) = StoragePath::normalize(s) {
        let strict = StoragePath::strict(p.as_str()).expect("normalized paths are canonical");
        assert_eq!(strict.as_str(), p.as_str());
        let again = StoragePath::normalize(p.as_str()).expect("normalize is idempotent");
        assert_eq!(again.as_str(), p.as_str());
        let _ = (
            p.is_dir(),
            p.is_public(),
            p.is_private(),
            p.ancestors().count(),
        );
        assert!(p.covers(&p) || !p.is_dir());
    }
    if let Ok(p) = StoragePath::strict(s) {
        let n = StoragePath::normalize(s).expect("canonical paths normalise");
        assert_eq!(n.as_str(), p.as_str());
    }
});

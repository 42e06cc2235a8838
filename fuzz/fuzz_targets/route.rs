//! Request routing: method, path, query and host headers from the input (split on `\n`)
//! → an endpoint or a 4xx, with and without websites; storage endpoints always carry a
//! canonical path, and a website page never names a file outside its site's folder.
#![no_main]

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::Method;
use libfuzzer_sys::fuzz_target;
use pubky_edge::http::route::{route, Endpoint};
use pubky_edge::http::route::Sites;
use pubky_edge::pubkey::PublicKey;
use pubky_edge::storage_path::StoragePath;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |b| *b == b'\n');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let query = parts.next();
    let host = parts.next();
    let pubky_host = parts.next();
    let method = Method::from_bytes(method).unwrap_or(Method::GET);
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let query = query.and_then(|q| std::str::from_utf8(q).ok());
    let mut headers = HeaderMap::new();
    for (name, value) in [("host", host), ("pubky-host", pubky_host)] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let sites = Sites {
        homeserver: PublicKey::parse_z32("yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no")
            .expect("a valid key"),
        domains: vec!["sites.example.org".into()],
    };
    for sites in [None, Some(&sites)] {
        match route(&method, path, query, &headers, sites) {
            Ok(Endpoint::Storage { path, .. }) => {
                assert!(StoragePath::strict(path.as_str()).is_ok(), "{path:?}");
            }
            Ok(Endpoint::Website(site)) => {
                let t = site.target.as_str();
                assert!(StoragePath::strict(t).is_ok(), "{t:?}");
                assert!(t.starts_with(&format!("{}/", site.root)), "{t:?} outside {}", site.root);
                assert!(!t.ends_with('/'), "{t:?} is a folder");
            }
            _ => {}
        }
    }
});

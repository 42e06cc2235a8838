//! Request routing: method, path, query and host headers from the input (split on `\n`)
//! → an endpoint or a 4xx; storage endpoints always carry a canonical path.
#![no_main]

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::Method;
use libfuzzer_sys::fuzz_target;
use pubky_edge::http::route::{route, Endpoint};
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
    if let Ok(Endpoint::Storage { path, .. }) = route(&method, path, query, &headers) {
        assert!(StoragePath::strict(path.as_str()).is_ok(), "{path:?}");
    }
});

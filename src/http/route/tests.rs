//! Tests of `route`.

use super::*;
use hyper::header::HeaderValue;

const PK: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
const PK2: &str = "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no";

fn r(m: Method, p: &str, q: Option<&str>, h: &[(&str, &str)]) -> Result<Endpoint, RouteError> {
    let mut map = HeaderMap::new();
    for (k, v) in h {
        map.insert(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    route(&m, p, q, &map, None)
}

fn storage(ep: Endpoint) -> (StorageOp, Option<String>, String, Addressing) {
    match ep {
        Endpoint::Storage {
            op,
            tenant,
            path,
            addressing,
            ..
        } => (
            op,
            tenant.map(|t| t.to_z32()),
            path.as_str().to_string(),
            addressing,
        ),
        other => panic!("not storage: {other:?}"),
    }
}

#[test]
fn path_addressed() {
    let ep = r(
        Method::PUT,
        &format!("/storage/{PK}/pub/foo.txt"),
        None,
        &[],
    )
    .unwrap();
    assert_eq!(
        storage(ep),
        (
            StorageOp::Put,
            Some(PK.into()),
            "/pub/foo.txt".into(),
            Addressing::Path
        )
    );
    // host headers are ignored on the path-addressed form
    let ep = r(
        Method::GET,
        &format!("/storage/{PK}/pub/a%20b/"),
        Some(&format!("pubky-host={PK2}")),
        &[("pubky-host", PK2)],
    )
    .unwrap();
    assert_eq!(storage(ep).1.unwrap(), PK);
}

#[test]
fn malformed_path_addressing() {
    let bad = |p: &str| match r(Method::GET, p, None, &[]) {
        Err(RouteError::BadRequest(m)) => m,
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(bad("/storage"), "Missing storage owner or path");
    assert_eq!(bad("/storage/"), "Missing storage owner or path");
    assert_eq!(
        bad("/storage/short/pub/file.txt"),
        "Invalid storage owner public key"
    );
    assert_eq!(
        bad(&format!("/storage/pubky{PK}/pub/file.txt")),
        "Invalid storage owner public key"
    );
    assert_eq!(bad(&format!("/storage/{PK}/")), "Missing storage path");
    assert_eq!(bad(&format!("/storage/{PK}")), "Missing storage path");
    assert!(bad(&format!("/storage/{PK}/pub/%FF")).contains("UTF-8"));
    assert!(bad(&format!("/storage/{PK}/pub/../..")).starts_with("Invalid storage path"));
    assert!(bad(&format!("/storage/{PK}/pub/report%20")).contains("whitespace"));
}

#[test]
fn legacy_tenant_resolution() {
    let t =
        |h: &[(&str, &str)], q: Option<&str>| storage(r(Method::GET, "/pub/x", q, h).unwrap()).1;
    assert_eq!(t(&[("host", &format!("_pubky.{PK}"))], None).unwrap(), PK);
    assert_eq!(t(&[("host", PK), ("pubky-host", PK2)], None).unwrap(), PK2);
    assert_eq!(
        t(&[("host", PK), ("pubky-host", "junk")], None).unwrap(),
        PK
    );
    assert_eq!(
        t(
            &[("host", "localhost:6286")],
            Some(&format!("a=1&pubky-host={PK2}"))
        )
        .unwrap(),
        PK2
    );
    assert_eq!(t(&[("pubky-host", &format!("pubky{PK}"))], None), None);
    assert_eq!(t(&[("host", "localhost")], None), None);
}

#[test]
fn fixed_routes_and_methods() {
    assert_eq!(r(Method::GET, "/info", None, &[]), Ok(Endpoint::Info));
    assert_eq!(
        r(Method::POST, "/info", None, &[]),
        Err(RouteError::MethodNotAllowed("GET"))
    );
    assert_eq!(
        r(Method::OPTIONS, "/pub/x", None, &[]),
        Ok(Endpoint::Preflight)
    );
    assert_eq!(
        r(Method::DELETE, "/auth/grant/session/abc", None, &[]),
        Ok(Endpoint::GrantRevoke { gid: "abc".into() })
    );
    assert_eq!(
        r(Method::POST, "/pub/x", None, &[]),
        Err(RouteError::MethodNotAllowed(LEGACY_ALLOW))
    );
    // Locks are taken on the path-addressed form only.
    let lock = Method::from_bytes(b"LOCK").unwrap();
    let unlock = Method::from_bytes(b"UNLOCK").unwrap();
    assert_eq!(
        r(lock.clone(), "/pub/x", None, &[("host", PK)]),
        Err(RouteError::MethodNotAllowed(LEGACY_ALLOW))
    );
    let (op, _, path, _) = storage(r(lock, &format!("/storage/{PK}/pub/x"), None, &[]).unwrap());
    assert_eq!((op, path.as_str()), (StorageOp::Lock, "/pub/x"));
    let (op, ..) = storage(r(unlock, &format!("/storage/{PK}/pub/x"), None, &[]).unwrap());
    assert_eq!(op, StorageOp::Unlock);
    assert_eq!(
        r(Method::PATCH, &format!("/storage/{PK}/pub/x"), None, &[]),
        Err(RouteError::MethodNotAllowed(STORAGE_ALLOW))
    );
    let (op, _, path, a) = storage(r(Method::DELETE, "/pub/a/../b", None, &[]).unwrap());
    assert_eq!(
        (op, path.as_str(), a),
        (StorageOp::Delete, "/pub/b", Addressing::Legacy)
    );
}

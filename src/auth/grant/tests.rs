//! Tests of `grant`.

use super::*;
use crate::auth::jws::sign;
use crate::auth::mint::client_request_body;
use ed25519_dalek::SigningKey;

const T: u64 = 1_700_000_000;
const POP_VECTOR: &str = "eyJhbGciOiJFZERTQSIsInR5cCI6InB1Ymt5LXBvcCJ9.eyJhdWQiOiJvcmh6cWRpZXh3bWk2aWlka3R1Y2d1ZDYzdWZhNW53dHN1emR4ZTE3NmE4aXpkNmpzcWt5IiwiZ2lkIjoiQUFBQUFBQUFBQUFBQUFBQUFBQUFBQSIsIm5vbmNlIjoiX19fX19fX19fX19fX19fX19fX19fdyIsImlhdCI6MTcwMDAwMDAwMH0._l_vSxjoCMYDFpDGs-VV0Vek-X7hTg6Upohil_02AsBarPR2H_3pDklPthRayd0OnlDiBbyKiLG7HTGwVa20Dw";

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}
fn pk(b: u8) -> PublicKey {
    PublicKey::from(key(b).verifying_key())
}

#[test]
fn a_client_request_body_verifies_as_grant_and_proof() {
    let hs = pk(9);
    let body = client_request_body(
        &key(1),
        &key(2),
        hs,
        "app",
        Capabilities::parse("/pub/:rw").unwrap(),
        T,
        60,
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let grant = verify_grant(v["grant"].as_str().unwrap(), T + 30, true).unwrap();
    assert_eq!(grant.iss, pk(1));
    assert_eq!(grant.cnf, pk(2));
    assert_eq!(grant.client_id, "app");
    assert_eq!(grant.exp, T + 60);
    assert!(verify_grant(v["grant"].as_str().unwrap(), T + 61, true).is_err());
    verify_pop(v["pop"].as_str().unwrap(), &grant, &hs, T).unwrap();
    assert!(verify_pop(v["pop"].as_str().unwrap(), &grant, &pk(8), T).is_err());
}

fn claims() -> GrantClaims {
    GrantClaims {
        iss: pk(0),
        client_id: "test.app".into(),
        caps: Capabilities::parse("/:rw").unwrap(),
        cnf: pk(1),
        jti: GrantId::parse("AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
        iat: T,
        exp: T + 3600,
    }
}

fn pop(c: &PopClaims) -> String {
    sign(POP_TYP, c.to_json().as_bytes(), &key(1))
}

fn pop_claims() -> PopClaims {
    PopClaims {
        aud: pk(2),
        gid: GrantId::parse("AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
        nonce: GrantId::parse("_____________________w").unwrap(),
        iat: T,
    }
}

#[test]
fn spec_vectors_verify() {
    let grant = sign(GRANT_TYP, claims().to_json().as_bytes(), &key(0));
    assert!(grant.ends_with("ElOsseN2bCg"));
    let g = verify_grant(&grant, T + 10, true).unwrap();
    assert_eq!(g, claims());
    assert_eq!(pop(&pop_claims()), POP_VECTOR);
    let p = verify_pop(POP_VECTOR, &g, &pk(2), T + 100).unwrap();
    assert_eq!(p.nonce.as_str(), "_____________________w");
}

#[test]
fn grant_rejections() {
    let c = claims();
    let good = sign(GRANT_TYP, c.to_json().as_bytes(), &key(0));
    assert_eq!(
        verify_grant(&good, T + 3600, true),
        Err(GrantError::Expired)
    );
    assert!(verify_grant(&good, T + 3600, false).is_ok());
    let forged = sign(GRANT_TYP, c.to_json().as_bytes(), &key(9));
    assert_eq!(verify_grant(&forged, T, true), Err(GrantError::Signature));
    let wrong_typ = sign(POP_TYP, c.to_json().as_bytes(), &key(0));
    assert_eq!(
        verify_grant(&wrong_typ, T, true),
        Err(GrantError::HeaderType)
    );
    let bad_caps = c.to_json().replace("/:rw", "nope");
    let bad = sign(GRANT_TYP, bad_caps.as_bytes(), &key(0));
    assert_eq!(verify_grant(&bad, T, true), Err(GrantError::Format));
    assert_eq!(verify_grant("a.b.c", T, true), Err(GrantError::Format));
    let bad_id = c.to_json().replace("AAAAAAAAAAAAAAAAAAAAAA", "a/b");
    let bad = sign(GRANT_TYP, bad_id.as_bytes(), &key(0));
    assert_eq!(verify_grant(&bad, T, true), Err(GrantError::Format));
}

#[test]
fn pop_rejections() {
    let g = claims();
    let mut p = pop_claims();
    p.aud = pk(3);
    assert_eq!(verify_pop(&pop(&p), &g, &pk(2), T), Err(PopError::Audience));
    let mut p = pop_claims();
    p.gid = GrantId::parse("other").unwrap();
    assert_eq!(verify_pop(&pop(&p), &g, &pk(2), T), Err(PopError::GrantId));
    let p = pop_claims();
    assert_eq!(
        verify_pop(&pop(&p), &g, &pk(2), T + 181),
        Err(PopError::Timestamp)
    );
    assert_eq!(
        verify_pop(&pop(&p), &g, &pk(2), T - 181),
        Err(PopError::Timestamp)
    );
    assert!(verify_pop(&pop(&p), &g, &pk(2), T + 180).is_ok());
    let by_other = sign(POP_TYP, p.to_json().as_bytes(), &key(7));
    assert_eq!(
        verify_pop(&by_other, &g, &pk(2), T),
        Err(PopError::Signature)
    );
    let wrong_typ = sign(GRANT_TYP, p.to_json().as_bytes(), &key(1));
    assert_eq!(
        verify_pop(&wrong_typ, &g, &pk(2), T),
        Err(PopError::HeaderType)
    );
}

#[test]
fn signup_rules() {
    let mut g = claims();
    g.client_id = SIGNUP_CLIENT_ID.into();
    g.exp = g.iat + 300;
    assert_eq!(check_signup_grant(&g, T), Ok(()));
    g.exp = g.iat + 301;
    assert_eq!(check_signup_grant(&g, T), Err(SignupGrantError::Lifetime));
    g.exp = g.iat + 300;
    assert_eq!(
        check_signup_grant(&g, T - 181),
        Err(SignupGrantError::IssuedInFuture)
    );
    g.caps = Capabilities::parse("/pub/:rw").unwrap();
    assert_eq!(check_signup_grant(&g, T), Err(SignupGrantError::NotRoot));
    g.client_id = "x".into();
    assert_eq!(check_signup_grant(&g, T), Err(SignupGrantError::ClientId));
}

#[test]
fn grant_ids() {
    for ok in ["abc123", "AZaz09-_", "a"] {
        assert!(GrantId::parse(ok).is_some(), "{ok}");
    }
    let long = "a".repeat(23);
    for bad in [
        ".",
        "..",
        "a/b",
        "a?b",
        "a#b",
        "a+b",
        "a=b",
        "a b",
        "",
        long.as_str(),
    ] {
        assert!(GrantId::parse(bad).is_none(), "{bad:?}");
    }
    let r = GrantId::random();
    assert_eq!(r.as_str().len(), 22);
    assert!(GrantId::parse(r.as_str()).is_some());
}

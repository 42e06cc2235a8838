//! Compact JWS with EdDSA (ed25519): `b64url(header).b64url(payload).b64url(signature)`,
//! base64url without padding, header `{"alg":"EdDSA","typ":"<typ>"}`. Used for grants and
//! proofs of possession (`auth::grant`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Deserialize;

/// Longest compact JWS accepted; grants with many capabilities stay far below this.
pub const MAX_JWS_LEN: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwsError {
    TooLong,
    NotThreeParts,
    Base64,
    Header,
    UnsupportedAlgorithm,
    SignatureLength,
}

impl std::fmt::Display for JwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwsError::TooLong => "JWS is too long",
            JwsError::NotThreeParts => "JWS must have three dot-separated parts",
            JwsError::Base64 => "JWS part is not base64url",
            JwsError::Header => "JWS header is not valid JSON",
            JwsError::UnsupportedAlgorithm => "JWS algorithm must be EdDSA",
            JwsError::SignatureLength => "JWS signature must be 64 bytes",
        })
    }
}

impl std::error::Error for JwsError {}

/// A decoded, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub struct Jws {
    pub typ: String,
    pub payload: Vec<u8>,
    signing_input: String,
    signature: [u8; 64],
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: String,
}

/// Signs `payload_json` as a compact JWS of type `typ`.
pub fn sign(typ: &str, payload_json: &[u8], key: &SigningKey) -> String {
    let header = serde_json::json!({ "alg": "EdDSA", "typ": typ }).to_string();
    let mut input = URL_SAFE_NO_PAD.encode(header.as_bytes());
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(payload_json));
    let sig = key.sign(input.as_bytes());
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    input
}

impl Jws {
    pub fn decode(s: &str) -> Result<Jws, JwsError> {
        if s.len() > MAX_JWS_LEN {
            return Err(JwsError::TooLong);
        }
        let mut parts = s.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::NotThreeParts);
        };
        let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwsError::Base64)?;
        let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwsError::Header)?;
        if header.alg != "EdDSA" {
            return Err(JwsError::UnsupportedAlgorithm);
        }
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| JwsError::Base64)?;
        let sig_bytes = URL_SAFE_NO_PAD.decode(sig).map_err(|_| JwsError::Base64)?;
        let signature: [u8; 64] = sig_bytes
            .try_into()
            .map_err(|_| JwsError::SignatureLength)?;
        Ok(Jws {
            typ: header.typ,
            payload,
            signing_input: s[..h.len() + 1 + p.len()].to_string(),
            signature,
        })
    }

    /// Strict ed25519 verification of the signature over `header.payload`.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        key.verify_strict(
            self.signing_input.as_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const GRANT_VECTOR: &str = "eyJhbGciOiJFZERTQSIsInR5cCI6InB1Ymt5LWdyYW50In0.eyJpc3MiOiI4cGlueHhncXM0MW40YWlkaWRlbnc1YXBxcDF1cmZtemR6dHI4anQ0YWJya2RuNDM1ZXdvIiwiY2xpZW50X2lkIjoidGVzdC5hcHAiLCJjYXBzIjpbIi86cnciXSwiY25mIjoidGtycTh6bXdiOGEzbTlrMTVjc3UzcTE3cW1mZ3FucDlkc2ticmc5dXExcnlkcHl4cDdxeSIsImp0aSI6IkFBQUFBQUFBQUFBQUFBQUFBQUFBQUEiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.AxaeQyP7yEDNIwHVcbkU9uImaEMd0EDIp6SwV4lI-WHkOeRiUSaRnuo3tlaC8RQY-Oh9R8xI7l-ElOsseN2bCg";

    #[test]
    fn reproduces_and_verifies_the_grant_vector() {
        let user = SigningKey::from_bytes(&[0u8; 32]);
        let payload = r#"{"iss":"8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo","client_id":"test.app","caps":["/:rw"],"cnf":"tkrq8zmwb8a3m9k15csu3q17qmfgqnp9dskbrg9uq1rydpyxp7qy","jti":"AAAAAAAAAAAAAAAAAAAAAA","iat":1700000000,"exp":1700003600}"#;
        assert_eq!(sign("pubky-grant", payload.as_bytes(), &user), GRANT_VECTOR);
        let jws = Jws::decode(GRANT_VECTOR).unwrap();
        assert_eq!(jws.typ, "pubky-grant");
        assert_eq!(jws.payload, payload.as_bytes());
        assert!(jws.verify(&user.verifying_key()));
        let other = SigningKey::from_bytes(&[1u8; 32]);
        assert!(!jws.verify(&other.verifying_key()));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let user = SigningKey::from_bytes(&[0u8; 32]);
        let parts: Vec<&str> = GRANT_VECTOR.split('.').collect();
        let other_payload = URL_SAFE_NO_PAD.encode(b"{\"iss\":\"x\"}");
        let forged = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
        assert!(!Jws::decode(&forged).unwrap().verify(&user.verifying_key()));
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert!(!Jws::decode(&forged).unwrap().verify(&user.verifying_key()));
    }

    #[test]
    fn malformed_inputs() {
        assert_eq!(Jws::decode("a.b").unwrap_err(), JwsError::NotThreeParts);
        assert_eq!(Jws::decode("a.b.c.d").unwrap_err(), JwsError::NotThreeParts);
        assert_eq!(Jws::decode("!!.b.c").unwrap_err(), JwsError::Base64);
        let h = URL_SAFE_NO_PAD.encode(b"{\"alg\":\"HS256\",\"typ\":\"x\"}");
        assert_eq!(
            Jws::decode(&format!("{h}.e30.AAAA")).unwrap_err(),
            JwsError::UnsupportedAlgorithm
        );
        let h = URL_SAFE_NO_PAD.encode(b"{\"alg\":\"EdDSA\"}");
        assert_eq!(
            Jws::decode(&format!("{h}.e30.AAAA")).unwrap_err(),
            JwsError::SignatureLength
        );
        assert_eq!(
            Jws::decode(&"a".repeat(MAX_JWS_LEN + 1)).unwrap_err(),
            JwsError::TooLong
        );
    }
}

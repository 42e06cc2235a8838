//! Grants and proofs of possession: claim shapes, verification in the reference's order,
//! and the extra rules for signup grants. Each error's `Display` is the body the client
//! sees; `http::response` maps variants to statuses.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::capability::Capabilities;
use super::jws::Jws;
use crate::pubkey::PublicKey;

pub const GRANT_TYP: &str = "pubky-grant";
pub const POP_TYP: &str = "pubky-pop";
/// Allowed clock difference for PoP timestamps and signup grant `iat`.
pub const MAX_SKEW_SECS: u64 = 180;
/// Longest lifetime of a signup grant.
pub const MAX_SIGNUP_LIFETIME_SECS: u64 = 300;
pub const SIGNUP_CLIENT_ID: &str = "pubky.signup";

/// Grant ids and nonces: 1–22 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantId(String);

impl GrantId {
    /// `None` unless `s` has the id shape.
    pub fn parse(s: &str) -> Option<GrantId> {
        let ok = (1..=22).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| GrantId(s.to_string()))
    }

    /// 16 random bytes as base64url (22 characters).
    pub fn random() -> GrantId {
        let mut b = [0u8; 16];
        // Invariant: the OS random source is available on every supported platform.
        getrandom::fill(&mut b).expect("OS randomness");
        GrantId(URL_SAFE_NO_PAD.encode(b))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantClaims {
    pub iss: PublicKey,
    pub client_id: String,
    pub caps: Capabilities,
    pub cnf: PublicKey,
    pub jti: GrantId,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopClaims {
    pub aud: PublicKey,
    pub gid: GrantId,
    pub nonce: GrantId,
    pub iat: u64,
}

#[derive(Serialize, Deserialize)]
struct RawGrant {
    iss: String,
    client_id: String,
    caps: Vec<String>,
    cnf: String,
    jti: String,
    iat: u64,
    exp: u64,
}

#[derive(Serialize, Deserialize)]
struct RawPop {
    aud: String,
    gid: String,
    nonce: String,
    iat: u64,
}

impl GrantClaims {
    pub fn from_json(bytes: &[u8]) -> Option<GrantClaims> {
        let raw: RawGrant = serde_json::from_slice(bytes).ok()?;
        if raw.client_id.is_empty() || raw.client_id.len() > 253 {
            return None;
        }
        Some(GrantClaims {
            iss: PublicKey::parse_z32(&raw.iss).ok()?,
            client_id: raw.client_id,
            caps: Capabilities::from_strings(&raw.caps).ok()?,
            cnf: PublicKey::parse_z32(&raw.cnf).ok()?,
            jti: GrantId::parse(&raw.jti)?,
            iat: raw.iat,
            exp: raw.exp,
        })
    }

    /// The claims as JSON, fields in the reference order.
    pub fn to_json(&self) -> String {
        let raw = RawGrant {
            iss: self.iss.to_z32(),
            client_id: self.client_id.clone(),
            caps: self.caps.to_strings(),
            cnf: self.cnf.to_z32(),
            jti: self.jti.0.clone(),
            iat: self.iat,
            exp: self.exp,
        };
        // Invariant: a struct of strings and integers always serialises.
        serde_json::to_string(&raw).expect("grant claims serialise")
    }
}

impl PopClaims {
    pub fn from_json(bytes: &[u8]) -> Option<PopClaims> {
        let raw: RawPop = serde_json::from_slice(bytes).ok()?;
        Some(PopClaims {
            aud: PublicKey::parse_z32(&raw.aud).ok()?,
            gid: GrantId::parse(&raw.gid)?,
            nonce: GrantId::parse(&raw.nonce)?,
            iat: raw.iat,
        })
    }

    pub fn to_json(&self) -> String {
        let raw = RawPop {
            aud: self.aud.to_z32(),
            gid: self.gid.0.clone(),
            nonce: self.nonce.0.clone(),
            iat: self.iat,
        };
        // Invariant: a struct of strings and integers always serialises.
        serde_json::to_string(&raw).expect("pop claims serialise")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantError {
    /// 400: not a JWS, or claims that do not parse.
    Format,
    /// 400: header `typ` is not `pubky-grant`.
    HeaderType,
    /// 401: not signed by `iss`.
    Signature,
    /// 401: `exp` is not in the future.
    Expired,
}

impl std::fmt::Display for GrantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GrantError::Format => "Invalid grant: invalid grant format",
            GrantError::HeaderType => {
                "Invalid grant: invalid grant header type, expected pubky-grant"
            }
            GrantError::Signature => "Invalid grant: invalid grant signature",
            GrantError::Expired => "Invalid grant: grant has expired",
        })
    }
}

impl std::error::Error for GrantError {}

/// Every PoP failure is a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopError {
    Format,
    Signature,
    HeaderType,
    Audience,
    GrantId,
    Timestamp,
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PopError::Format => "Invalid PoP proof: invalid PoP format",
            PopError::Signature => "Invalid PoP proof: invalid PoP signature",
            PopError::HeaderType => {
                "Invalid PoP proof: invalid PoP header type, expected pubky-pop"
            }
            PopError::Audience => "Invalid PoP proof: PoP audience mismatch",
            PopError::GrantId => "Invalid PoP proof: PoP grant ID mismatch",
            PopError::Timestamp => "Invalid PoP proof: PoP timestamp out of range",
        })
    }
}

impl std::error::Error for PopError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignupGrantError {
    /// 400
    ClientId,
    /// 403
    NotRoot,
    /// 400
    IssuedInFuture,
    /// 400
    Lifetime,
}

impl std::fmt::Display for SignupGrantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignupGrantError::ClientId => "signup grants must use client_id pubky.signup",
            SignupGrantError::NotRoot => "Root capability required",
            SignupGrantError::IssuedInFuture => "signup grant is issued in the future",
            SignupGrantError::Lifetime => "signup grant lifetime exceeds 5 minutes",
        })
    }
}

impl std::error::Error for SignupGrantError {}

/// Verifies a grant JWS: claims parse → signature by `iss` → `typ` → expiry (unless
/// `check_expiry` is false, as for revocation by proof).
pub fn verify_grant(jws: &str, now: u64, check_expiry: bool) -> Result<GrantClaims, GrantError> {
    let jws = Jws::decode(jws).map_err(|_| GrantError::Format)?;
    let claims = GrantClaims::from_json(&jws.payload).ok_or(GrantError::Format)?;
    if !jws.verify(&claims.iss.verifying_key()) {
        return Err(GrantError::Signature);
    }
    if jws.typ != GRANT_TYP {
        return Err(GrantError::HeaderType);
    }
    if check_expiry && claims.exp <= now {
        return Err(GrantError::Expired);
    }
    Ok(claims)
}

/// Verifies a PoP against its grant: signature by `cnf` → `typ` → audience → grant id →
/// timestamp within ±180 s. The nonce's freshness is the caller's (it needs storage).
pub fn verify_pop(
    jws: &str,
    grant: &GrantClaims,
    homeserver: &PublicKey,
    now: u64,
) -> Result<PopClaims, PopError> {
    let jws = Jws::decode(jws).map_err(|_| PopError::Format)?;
    if !jws.verify(&grant.cnf.verifying_key()) {
        return Err(PopError::Signature);
    }
    let claims = PopClaims::from_json(&jws.payload).ok_or(PopError::Format)?;
    if jws.typ != POP_TYP {
        return Err(PopError::HeaderType);
    }
    if claims.aud != *homeserver {
        return Err(PopError::Audience);
    }
    if claims.gid != grant.jti {
        return Err(PopError::GrantId);
    }
    if claims.iat.abs_diff(now) > MAX_SKEW_SECS {
        return Err(PopError::Timestamp);
    }
    Ok(claims)
}

/// The extra rules for `POST /auth/grant/signup`.
pub fn check_signup_grant(grant: &GrantClaims, now: u64) -> Result<(), SignupGrantError> {
    if grant.client_id != SIGNUP_CLIENT_ID {
        return Err(SignupGrantError::ClientId);
    }
    if !grant.caps.is_root() {
        return Err(SignupGrantError::NotRoot);
    }
    if grant.iat > now + MAX_SKEW_SECS {
        return Err(SignupGrantError::IssuedInFuture);
    }
    if grant.exp.saturating_sub(grant.iat) > MAX_SIGNUP_LIFETIME_SECS {
        return Err(SignupGrantError::Lifetime);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! Grant authentication endpoints (`/auth/grant/*`): signup, session create/get/delete,
//! listing and revoking an account's grants. Signatures and claims are checked by the pure
//! `auth::grant`; grants, sessions and nonces persist in the store.

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::body::{read_limited, Body, BodyError};
use super::head::Head;
use super::response::ApiError;
use super::response::{empty, json};
use super::App;
use crate::account::{signup as accounts, GrantSession};
use crate::auth::grant::{self, GrantClaims, GrantId, PopClaims};
use crate::auth::secrets;
use crate::clock;
use crate::store::GrantRecord;

/// Longest bearer lifetime; the SDK refreshes before expiry.
const BEARER_LIFETIME_SECS: u64 = 3600;

#[derive(Deserialize)]
struct Proof {
    grant: String,
    pop: String,
}

#[derive(Serialize)]
struct SessionInfo<'a> {
    homeserver: String,
    pubky: String,
    client_id: &'a str,
    capabilities: &'a [String],
    grant_id: &'a str,
    token_expires_at: u64,
    grant_expires_at: u64,
    created_at: u64,
}

#[derive(Serialize)]
struct GrantInfo<'a> {
    grant_id: &'a str,
    client_id: &'a str,
    capabilities: String,
    issued_at: u64,
    expires_at: u64,
}

/// Reads `{"grant": JWS, "pop": JWS}`; `Ok(None)` for an empty body when `optional`.
async fn read_proof(
    app: &App,
    head: &Head,
    body: Incoming,
    optional: bool,
) -> Result<Option<Proof>, ApiError> {
    let is_json = head.json;
    let limit = app.config.limits.max_json_body_bytes;
    let pace = app.config.limits.body_pace;
    let body = read_limited(body, limit, pace).await.map_err(|e| match e {
        BodyError::TooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large: the limit is {limit} bytes"),
        ),
        other => ApiError::from(other),
    })?;
    if optional && body.is_empty() {
        return Ok(None);
    }
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected request with `Content-Type: application/json`",
        ));
    }
    let proof: Proof = serde_json::from_slice(&body).map_err(|e| {
        if e.is_data() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Invalid body: {e}"),
            )
        } else {
            ApiError::bad_request(format!("Malformed JSON: {e}"))
        }
    })?;
    let three_parts = |s: &str| s.split('.').count() == 3;
    if !three_parts(&proof.grant) || !three_parts(&proof.pop) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "grant and pop must be compact JWS strings",
        ));
    }
    Ok(Some(proof))
}

/// Checks the PoP against the grant (pure: nothing is written yet).
fn check_pop(
    app: &App,
    proof: &Proof,
    claims: &GrantClaims,
    now: u64,
) -> Result<PopClaims, ApiError> {
    Ok(grant::verify_pop(&proof.pop, claims, &app.homeserver, now)?)
}

/// Records the PoP's nonce (replays are refused). Called only once the request is known
/// to concern an account here, so strangers cannot make the box write.
async fn spend_nonce(app: &App, pop: &PopClaims, now: u64) -> Result<(), ApiError> {
    if !app.store.use_nonce(pop.nonce.as_str(), now).await? {
        return Err(ApiError::unauthorized("PoP nonce already used"));
    }
    Ok(())
}

/// `POST /auth/grant/signup[?signup_token=…]`: creates the account; mints no session.
pub async fn signup(
    app: &App,
    head: &Head,
    body: Incoming,
    token: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let proof = read_proof(app, head, body, false)
        .await?
        .ok_or_else(ApiError::no_session)?;
    let now = clock::now_secs();
    let claims = grant::verify_grant(&proof.grant, now, true)?;
    grant::check_signup_grant(&claims, now)?;
    let pop = check_pop(app, &proof, &claims, now)?;
    let mode = app.config.general.signup_mode;
    let (store, dir) = (&app.store, &app.data_dir);
    accounts::may_sign_up(store, dir, mode, &claims.iss, token.as_deref(), now).await?;
    spend_nonce(app, &pop, now).await?;
    accounts::create_account(store, dir, mode, &claims.iss, token, now).await?;
    app.metrics.signup();
    tracing::info!(user = %claims.iss, "signed up");
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /auth/grant/session`: stores the grant (first copy wins) and mints a bearer.
pub async fn create_session(
    app: &App,
    head: &Head,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let proof = read_proof(app, head, body, false)
        .await?
        .ok_or_else(ApiError::no_session)?;
    let now = clock::now_secs();
    let claims = grant::verify_grant(&proof.grant, now, true)?;
    if app
        .store
        .grant(claims.jti.as_str())?
        .is_some_and(|g| g.revoked)
    {
        return Err(ApiError::unauthorized("Grant has been revoked"));
    }
    let pop = check_pop(app, &proof, &claims, now)?;
    accounts::sign_in(&app.store, &claims.iss)?;
    spend_nonce(app, &pop, now).await?;
    let record = GrantRecord {
        id: claims.jti.as_str().to_string(),
        user: claims.iss,
        client_id: claims.client_id.clone(),
        caps: claims.caps.to_strings(),
        cnf: claims.cnf,
        issued_at: claims.iat,
        expires_at: claims.exp,
        created_at: now,
        revoked: false,
        bearer_hash: None,
    };
    let (bearer, hash) = secrets::new_bearer();
    let expires = (now + BEARER_LIFETIME_SECS).min(claims.exp);
    let stored = app.store.open_session(record, hash, expires, now).await?;
    if stored.user != claims.iss || stored.cnf != claims.cnf {
        return Err(ApiError::forbidden(
            "Grant does not belong to authenticated user",
        ));
    }
    let info = session_info(app, &stored, expires, now);
    json(
        StatusCode::OK,
        &serde_json::json!({ "token": bearer, "session": info }),
    )
}

fn session_info<'a>(
    app: &App,
    g: &'a GrantRecord,
    token_expires_at: u64,
    created_at: u64,
) -> SessionInfo<'a> {
    SessionInfo {
        homeserver: app.homeserver.to_z32(),
        pubky: g.user.to_z32(),
        client_id: &g.client_id,
        capabilities: &g.caps,
        grant_id: &g.id,
        token_expires_at,
        grant_expires_at: g.expires_at,
        created_at,
    }
}

/// `GET /auth/grant/session`: the bearer's session.
pub fn get_session(app: &App, head: &Head) -> Result<Response<Body>, ApiError> {
    let s = bearer_session(app, head)?.ok_or_else(ApiError::no_session)?;
    let info = session_info(app, &s.grant, s.token_expires_at, s.grant.created_at);
    json(StatusCode::OK, &info)
}

/// `DELETE /auth/grant/session`: revoke by JSON proof (preferred) or by bearer; without
/// credentials it is a no-op, so repeated sign-outs succeed.
pub async fn delete_session(
    app: &App,
    head: &Head,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let session = bearer_session(app, head)?;
    if let Some(proof) = read_proof(app, head, body, true).await? {
        let now = clock::now_secs();
        let claims = grant::verify_grant(&proof.grant, now, false)?;
        let pop = check_pop(app, &proof, &claims, now)?;
        let stored = app
            .store
            .grant(claims.jti.as_str())?
            .ok_or_else(ApiError::not_found)?;
        if stored.user != claims.iss || stored.cnf != claims.cnf {
            return Err(ApiError::forbidden(
                "Grant does not belong to authenticated user",
            ));
        }
        spend_nonce(app, &pop, now).await?;
        app.store.revoke_grant(&stored.id).await?;
    } else if let Some(s) = session {
        app.store.revoke_grant(&s.grant.id).await?;
    }
    Ok(empty(StatusCode::OK))
}

fn root_session(app: &App, head: &Head) -> Result<GrantSession, ApiError> {
    let s = bearer_session(app, head)?.ok_or_else(ApiError::no_session)?;
    if !s.caps.is_root() {
        return Err(ApiError::forbidden("Root capability required"));
    }
    Ok(s)
}

/// `GET /auth/grant/sessions`: the account's active grants (root session only).
pub fn list_grants(app: &App, head: &Head) -> Result<Response<Body>, ApiError> {
    let s = root_session(app, head)?;
    let now = clock::now_secs();
    let grants = app.store.grants_of(&s.user)?;
    let list: Vec<GrantInfo> = grants
        .iter()
        .filter(|g| !g.revoked && g.expires_at > now)
        .map(|g| GrantInfo {
            grant_id: &g.id,
            client_id: &g.client_id,
            capabilities: g.caps.join(","),
            issued_at: g.issued_at,
            expires_at: g.expires_at,
        })
        .collect();
    json(StatusCode::OK, &list)
}

/// `DELETE /auth/grant/session/{gid}`: revoke one of the account's grants (root only).
pub async fn revoke(app: &App, head: &Head, gid: &str) -> Result<Response<Body>, ApiError> {
    let s = root_session(app, head)?;
    let gid =
        GrantId::parse(gid).ok_or_else(|| ApiError::bad_request("Invalid grant ID format"))?;
    let g = app
        .store
        .grant(gid.as_str())?
        .ok_or_else(ApiError::not_found)?;
    if g.user != s.user {
        return Err(ApiError::forbidden(
            "Grant does not belong to authenticated user",
        ));
    }
    app.store.revoke_grant(&g.id).await?;
    Ok(empty(StatusCode::OK))
}

/// The grant session of the request's bearer, if any.
fn bearer_session(app: &App, head: &Head) -> Result<Option<GrantSession>, ApiError> {
    Ok(GrantSession::resolve(
        &app.store,
        &head.creds,
        clock::now_secs(),
    )?)
}

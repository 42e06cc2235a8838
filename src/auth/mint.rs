//! What a client sends, built here for the tools, examples and benchmarks that act as one
//! (the server itself only verifies, in [`super::grant`]).

use super::capability::Capabilities;
use super::grant::{GrantClaims, GrantId, PopClaims};
use super::jws;
use crate::pubkey::PublicKey;

/// The JSON body a client sends to `/auth/grant/signup` or `/auth/grant/session`: a grant
/// from `user` to `client` for `caps`, valid `lifetime` seconds from `now`, with the
/// client's proof for homeserver `hs` (fresh grant id and nonce). For the tools, examples
/// and benchmarks that act as a client; the server itself only verifies.
pub fn client_request_body(
    user: &ed25519_dalek::SigningKey,
    client: &ed25519_dalek::SigningKey,
    hs: PublicKey,
    client_id: &str,
    caps: Capabilities,
    now: u64,
    lifetime: u64,
) -> String {
    let jti = GrantId::random();
    let grant = GrantClaims {
        iss: PublicKey::from(user.verifying_key()),
        client_id: client_id.into(),
        caps,
        cnf: PublicKey::from(client.verifying_key()),
        jti: jti.clone(),
        iat: now,
        exp: now + lifetime,
    };
    let pop = PopClaims {
        aud: hs,
        gid: jti,
        nonce: GrantId::random(),
        iat: now,
    };
    serde_json::json!({
        "grant": jws::sign("pubky-grant", grant.to_json().as_bytes(), user),
        "pop": jws::sign("pubky-pop", pop.to_json().as_bytes(), client),
    })
    .to_string()
}

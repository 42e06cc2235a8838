//! Pure protocol checks for authentication; no I/O, no clock (`now` is a parameter).
//!
//! Grant flow: an app holds a client keypair and asks the user's signer for a *grant* — a
//! JWS signed by the user (`iss`) naming the app (`client_id`), the capabilities it may
//! use (`caps`), the app's key (`cnf`), an id (`jti`) and a lifetime. To open a session the
//! app sends the grant together with a fresh *proof of possession* (PoP): a JWS signed by
//! the `cnf` key, addressed to this homeserver (`aud`), naming the grant (`gid`), with a
//! single-use `nonce` and a timestamp within ±180 s. The homeserver verifies both
//! ([`grant::verify_grant`], [`grant::verify_pop`]), records the nonce, stores the grant and
//! mints a bearer token ([`secrets::new_bearer`]) whose SHA-256 it keeps. Storage requests
//! then carry `Authorization: Bearer …` and are checked against the grant's
//! [`capability::Capabilities`]. [`secrets`] mints every secret handed out (bearer, signup
//! token, cookie secret); [`mint`] builds what a *client* sends, for the tools and
//! benchmarks that act as one; [`password`] keeps the owner's password as an Argon2id hash.

pub mod auth_token;
pub mod capability;
pub mod grant;
pub mod jws;
pub mod mint;
pub mod password;
pub mod recovery_file;
pub mod secrets;

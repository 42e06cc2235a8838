//! pubky-edge: a Pubky Core homeserver for a small box at home.
//!
//! Architecture map:
//! - `main` parses argv and hands a validated [`config::Config`] to [`app::start`], which
//!   brings the pieces up in order: data directory, [`identity`], [`store`], listeners.
//! - [`http`] accepts connections (`http::server`), routes each request to an endpoint
//!   (`http::route`, pure), checks who is asking (`http::session` → [`auth`]) and runs the
//!   endpoint family (`http::storage`, `http::listing`, `http::grant`, `http::cookie`,
//!   `http::events` with `http::event_stream`). `http::operator` runs the admin API
//!   (`http::admin`) and Prometheus [`metrics`] on their own listeners; [`ratelimit`] holds
//!   the request-count and bandwidth buckets checked before and during each request.
//! - [`auth`] holds the pure protocol checks: capabilities, grant/PoP JWS, tokens.
//! - [`store`] is the only owner of disk state: sled trees for metadata, sessions and events,
//!   BLAKE3-addressed blob files for large bodies, group-committed flushes.
//!
//! Data path of a PUT: accept (`http::server`) → `route::route` resolves the tenant and
//! normalises the path → `Session::from_headers` + the write checks of `http::storage` →
//! the body streams into `store::Upload` (hashed while it arrives, spilled to a temp file
//! past `inline_max_bytes`) → `Store::put` commits entry, event and quota usage in one
//! transaction and waits for the group flush that covers it → `201 Created`.

pub mod account;
pub mod announce;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod pubkey;
pub mod runtime;
pub mod storage_path;
pub mod store;

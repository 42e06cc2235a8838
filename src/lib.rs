//! pubky-edge: a Pubky Core homeserver for a small box at home.
//!
//! The crate is built in floors; a module imports only from its own floor or those below:
//!
//! 1. Ground: [`pubkey`] (keys, z-base-32), [`storage_path`] (canonical paths and the one
//!    coverage rule), [`clock`], [`metrics`] (counters and their rendering) and [`runtime`]
//!    (executor pool, shutdown, systemd, logging, process probes).
//! 2. [`config`]: raw TOML layers → one validated, typed [`config::Config`]. Imports nothing
//!    but the key vocabulary.
//! 3. [`store`] (the only owner of disk state: sled trees, BLAKE3-addressed blob files,
//!    group-committed flushes), [`auth`] (pure protocol checks: capabilities, grant/PoP JWS,
//!    AuthTokens, token minting) and [`identity`] (the homeserver key file).
//! 4. The household's rules, free of HTTP types: [`account`] (who is asking, what they may
//!    read and write, signup and sign-in, the token spool, WebDAV locks, the owner's one
//!    secret and signed-in browsers) and [`limits`] (request rates,
//!    bandwidth budgets, the event-stream cap, body deadlines, per-address shares), and
//!    [`backup`] (encrypted, incremental points in time of the whole box, and restore).
//! 5. Surfaces: [`http`] (client API, PubkyTLS, relay and operator listeners, the
//!    household's dashboard) and
//!    [`announce`] (DHT record, relay, UPnP, NAT-PMP, PCP, IPv6 pinhole, mDNS) and
//!    [`tunnel`] (the relay rung out of carrier-grade NAT, from either side), [`client`]
//!    (this box as a client of another homeserver), [`update`] (signed releases,
//!    found over Pubky) and [`standby`] (a second box that follows this one's log and can
//!    take over).
//! 6. Assembly: [`app`] (the start-up runbook and its teardown in reverse).
//! 7. [`cli`], the command line, which runs the server through `app`; `main.rs` only maps
//!    argv to an exit code through it.
//!
//! Data path of a PUT: accept (`http::server`) → `http::route::route` resolves the tenant,
//! normalises the path and parses the query → `http::handle` checks the request-rate limit
//! ([`limits::rate`]) and reads the credentials and headers once (`http::head`) →
//! `http::storage` resolves the caller ([`account::Caller`]) and asks [`account::access`]
//! whether it may write there → the body streams into `store::Upload` (hashed while it
//! arrives, spilled to a temp file past `inline_max_bytes`, paced by [`limits::bandwidth`])
//! → `Store::put` commits entry, event and quota usage in one transaction and waits for the
//! group flush that covers it → `201 Created`. A refusal anywhere is an [`account::Error`]
//! or `store::StoreError` that `http::response` turns into a status in one table.

// Unsafe code is refused except where a function says why it needs it (`#[allow]` with a
// reason), and every unsafe block carries a `SAFETY:` comment.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod account;
pub mod announce;
pub mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod http;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod pubkey;
pub mod runtime;
pub mod standby;
pub mod storage_path;
pub mod store;
pub mod tls;
pub mod tunnel;
pub mod update;

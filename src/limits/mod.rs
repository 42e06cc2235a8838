//! Limits that protect a small board, free of HTTP types: request counts per IP or user
//! ([`rate`]), bandwidth budgets that pace bodies ([`bandwidth`]), the cap on open event
//! streams ([`streams`]), wrong operator passwords per address ([`attempts`]), how long a
//! request body may take ([`body`]) and who a request is from, with each address's share of
//! the caps ([`peer`]). The rules come parsed from [`crate::config`]; the transport,
//! `http::dispatch` and the handlers consult them.

pub mod attempts;
pub mod bandwidth;
pub mod body;
pub mod peer;
pub mod rate;
pub mod streams;

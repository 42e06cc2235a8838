//! Limits that protect a small board, free of HTTP types: request counts per IP or user
//! ([`rate`]), bandwidth budgets that pace bodies ([`bandwidth`]), the cap on open event
//! streams ([`streams`]) and wrong operator passwords per address ([`attempts`]). The rules come parsed from [`crate::config`]; `http::dispatch` and
//! the handlers consult them.

pub mod attempts;
pub mod bandwidth;
pub mod rate;
pub mod streams;

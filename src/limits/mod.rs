//! Limits that protect a small board, free of HTTP types: request counts per IP or user
//! ([`rate`]), bandwidth budgets that pace bodies ([`bandwidth`]), and the cap on open event
//! streams ([`streams`]). The rules come parsed from [`crate::config`]; `http::dispatch` and
//! the handlers consult them.

pub mod bandwidth;
pub mod rate;
pub mod streams;

//! pubky-edge: a Pubky Core homeserver for a small box at home.
pub mod http;
pub mod pubkey;
pub mod shutdown;
pub mod storage_path;

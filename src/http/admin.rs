//! The admin API on its own listener (§8): signup tokens, users, quotas, entry deletion,
//! server info and the all-events stream, behind `X-Admin-Password`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct AdminConfig {
    pub enabled: bool,
    pub listen_socket: SocketAddr,
    pub password: String,
    pub password_file: Option<PathBuf>,
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

//! What the port mapper reports in `<data>/upnp.json` (the name predates NAT-PMP and PCP):
//! the protocols tried, the one the router answered, the mappings, the external address.
//! `pubky-edge status`, the dashboard, the verdict and the metrics read it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::mapping::{NatKind, Protocol};

pub const STATE_FILE: &str = "upnp.json";

/// A mapping the gateway accepted, as reported in `upnp.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingState {
    pub name: String,
    pub internal: String,
    pub external_port: u16,
    /// 0 = permanent.
    pub lease_secs: u32,
    pub renewed_secs: u64,
    pub renewals: u32,
}

/// One protocol tried in the last search for the router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rung {
    pub protocol: Protocol,
    /// Whether the router answered in it.
    pub answered: bool,
    /// The router's answer, or why there was none.
    pub result: String,
    /// How long the try took.
    pub took_ms: u64,
}

/// What the port mapper knows; persisted for `pubky-edge status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpnpState {
    /// "searching", "mapped", "no_gateway", "refused", "error", "stopped", "off"
    pub state: String,
    /// The protocol the router answered (`gateway` is where).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// The protocols tried, in order, the last time the router was searched for.
    #[serde(default)]
    pub ladder: Vec<Rung>,
    pub gateway: Option<String>,
    pub local_ip: Option<String>,
    pub external_ip: Option<String>,
    pub nat: Option<NatKind>,
    pub mappings: Vec<MappingState>,
    pub last_error: Option<String>,
    pub updated_secs: u64,
}

impl UpnpState {
    pub fn load(data_dir: &std::path::Path) -> Option<UpnpState> {
        super::worker::load_json(data_dir, STATE_FILE)
    }

    /// The external address the router named.
    pub fn external_addr(&self) -> Option<IpAddr> {
        self.external_ip.as_deref()?.parse().ok()
    }
}

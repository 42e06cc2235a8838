//! The first stage of the config: the TOML layers as written. The embedded defaults, an
//! optional board overlay and the user's file merge key by key into these serde sections;
//! keys the defaults do not know are reported by name; then `config::validate` checks every
//! value in one place and converts the whole into the typed [`super::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::{Table, Value};

use super::rates::RuleConfig;
use super::{Durability, Loaded, SignupMode};

/// The sample config shipped in the repository, which is also the built-in default.
pub const DEFAULT_TOML: &str = include_str!("../../config.sample.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    pub general: General,
    pub drive: Drive,
    pub storage: Storage,
    pub limits: Limits,
    pub pkdns: Pkdns,
    pub pkarr_relay: PkarrRelay,
    pub logging: Logging,
    pub events: Events,
    pub admin: Admin,
    pub metrics: Metrics,
    pub dashboard: Dashboard,
    pub default_quotas: DefaultQuotas,
    pub upnp: Upnp,
    pub mdns: Mdns,
    pub tunnel: Tunnel,
    pub update: Update,
    pub standby: Standby,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pkdns {
    pub dht: bool,
    pub public_ip: String,
    pub public_pubky_tls_port: u16,
    pub public_icann_http_port: u16,
    pub icann_domain: String,
    pub dht_bootstrap_nodes: Vec<String>,
    pub dht_request_timeout_ms: u64,
    pub republish_interval_ms: u64,
    pub publish_retry_min_ms: u64,
    pub user_keys_republish_interval_ms: u64,
    pub user_keys_republish_first_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PkarrRelay {
    pub enabled: bool,
    pub listen_socket: String,
    pub cache_entries: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct General {
    pub signup_mode: SignupMode,
    pub data_dir: PathBuf,
    pub worker_threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Drive {
    pub icann_listen_socket: SocketAddr,
    pub pubky_listen_socket: SocketAddr,
    pub trusted_proxies: Vec<String>,
    pub icann_client_identity: ClientIdentity,
    pub pubky_client_identity: ClientIdentity,
    pub websites: bool,
    pub website_domains: Vec<String>,
    pub rate_limits: Vec<RuleConfig>,
}

/// `{ mode = "direct" }` or `{ mode = "proxy_protocol", trusted_proxies = [...] }`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClientIdentity {
    pub mode: String,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Storage {
    pub default_quota_mb: Option<u64>,
    pub inline_max_bytes: usize,
    pub cache_capacity_mb: u64,
    pub durability: Durability,
    pub max_upload_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout_ms: u64,
    pub max_requests_per_connection: u32,
    pub max_json_body_bytes: usize,
    pub shutdown_drain_ms: u64,
    pub write_stall_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub min_body_bytes_per_sec: u64,
    pub max_connections_per_ip: Option<usize>,
    pub memory_budget_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Logging {
    pub level: String,
    pub module_levels: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Events {
    pub max_streams: Option<usize>,
    pub max_streams_per_ip: Option<usize>,
    pub keep_alive_ms: u64,
    pub max_lag: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Admin {
    pub enabled: bool,
    pub listen_socket: SocketAddr,
    pub password: String,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metrics {
    pub enabled: bool,
    pub listen_socket: SocketAddr,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DefaultQuotas {
    pub rate_read: Option<String>,
    pub rate_write: Option<String>,
    pub rate_read_burst: Option<u64>,
    pub rate_write_burst: Option<u64>,
    pub unauthenticated_ip_rate_read: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Upnp {
    pub enabled: bool,
    pub protocols: Vec<String>,
    pub map_http_port: bool,
    pub lease_ms: u64,
    pub check_interval_ms: u64,
    pub discovery_timeout_ms: u64,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub alternative_ports: u16,
    pub description: String,
    pub ipv6: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Dashboard {
    pub enabled: bool,
    pub listen_socket: SocketAddr,
    pub hosts: Vec<String>,
    pub session_hours: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    pub release_key: String,
    pub channel: String,
    pub check_interval_ms: u64,
    pub automatic: bool,
    pub window: String,
    pub health_deadline_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Standby {
    pub check_interval_ms: u64,
    pub retry_min_ms: u64,
    pub auto_promote_after_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tunnel {
    pub via: String,
    pub use_relay: String,
    pub check_interval_ms: u64,
    pub listen_socket: String,
    pub boxes: Vec<TunnelBox>,
    pub max_connections_per_box: usize,
    pub max_kib_per_second_per_box: u64,
}

/// One `tunnel.boxes` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelBox {
    pub key: String,
    pub port: u16,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Mdns {
    pub enabled: bool,
    pub interfaces: Vec<String>,
    pub skip_interfaces: Vec<String>,
}

/// Defaults, then each `(name, toml text)` layer in order, validated into a [`super::Config`].
pub fn load_layers(layers: &[(&str, &str)]) -> Result<Loaded, String> {
    let mut merged: Table =
        toml::from_str(DEFAULT_TOML).map_err(|e| format!("built-in config: {e}"))?;
    let known = merged.clone();
    let mut warnings = Vec::new();
    for (name, text) in layers {
        let layer: Table = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            match e.span() {
                Some(span) => format!("{name}: line {}: {msg}", line_of(text, span.start)),
                None => format!("{name}: {msg}"),
            }
        })?;
        let mut layer = layer;
        super::reference::translate(&mut layer, name, &mut warnings)?;
        unknown_keys(&known, &layer, "", name, &mut warnings);
        merge(&mut merged, layer);
    }
    let raw: RawConfig = Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| format!("config: {}", e.message().trim()))?;
    let config = raw.validate()?;
    Ok(Loaded { config, warnings })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Tables merge key by key; any other value (arrays included) replaces.
fn merge(base: &mut Table, layer: Table) {
    for (k, v) in layer {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(l)) => merge(b, l),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Keys the defaults do not know. Optional keys that are commented out in the sample are
/// listed in `OPTIONAL` so they are not reported.
fn unknown_keys(known: &Table, layer: &Table, prefix: &str, file: &str, out: &mut Vec<String>) {
    const OPTIONAL: &[&str] = &[
        "storage.default_quota_mb",
        "admin.password_file",
        "drive.icann_client_identity.trusted_proxies",
        "drive.pubky_client_identity.trusted_proxies",
        "limits.max_connections_per_ip",
        "events.max_streams",
        "events.max_streams_per_ip",
        "default_quotas.rate_read",
        "default_quotas.rate_write",
        "default_quotas.rate_read_burst",
        "default_quotas.rate_write_burst",
        "default_quotas.unauthenticated_ip_rate_read",
    ];
    for (k, v) in layer {
        let full = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (known.get(k), v) {
            (Some(Value::Table(kt)), Value::Table(lt)) => unknown_keys(kt, lt, &full, file, out),
            (Some(_), _) => {}
            (None, _) if OPTIONAL.contains(&full.as_str()) => {}
            (None, _) => out.push(format!("{file}: unknown key `{full}` ignored")),
        }
    }
}

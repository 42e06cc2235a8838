//! Configuration, the ground floor: every other module reads a [`Config`] by value and none
//! of it reads TOML. Two stages: [`raw`] merges the embedded defaults (`config.sample.toml`,
//! so defaults live in exactly one place), an optional [`board`] overlay and the user's file
//! key by key, reports unknown keys by name, and validates everything in one pass into this
//! typed `Config` (socket addresses, `Duration`s, parsed rates and sizes). An invalid value
//! stops start-up with a one-line reason naming its key.
//!
//! This module imports nothing from the rest of the crate but the pure key vocabulary
//! (`pubkey`, to check user keys in rate-limit whitelists).

pub mod board;
mod proxies;
mod reference;

pub use proxies::{Net, TrustedProxies};
pub mod rates;
mod validate;

pub mod raw;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use rates::{Bandwidth, KeyKind, Rule};
pub use raw::DEFAULT_TOML;

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupMode {
    Open,
    TokenRequired,
}

/// When a write is acknowledged (`storage.durability`); the store follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Acknowledge after the covering flush (the default).
    Strict,
    /// Acknowledge once applied in memory; a background flush every second bounds what a
    /// power cut can take.
    Relaxed,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
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
    /// `[default_quotas]`: the bandwidth every user gets unless the admin overrides it.
    pub bandwidth: DefaultBandwidth,
    pub upnp: Upnp,
    pub mdns: Mdns,
    pub tunnel: Tunnel,
    pub update: Update,
    pub standby: Standby,
}

/// `[standby]`: a second box that keeps a copy (see `crate::standby`).
#[derive(Debug, Clone)]
pub struct Standby {
    /// How often a primary whose standby may take over looks at its own record.
    pub check_interval: Duration,
    /// The first wait after a failed attempt to follow the primary (doubling up to 30 s).
    pub retry_min: Duration,
    /// A standby paired with takeover promotes itself after the primary has been out of
    /// reach this long; `None`: only `standby promote` does.
    pub auto_promote_after: Option<Duration>,
}

/// `[update]`: where releases come from.
#[derive(Debug, Clone)]
pub struct Update {
    /// The key whose signature a release needs: `update.release_key`, else the one this
    /// binary was built with (`PUBKY_EDGE_RELEASE_KEY` at build time), else none (no
    /// release is ever taken).
    pub release_key: Option<crate::pubkey::PublicKey>,
    /// The channel's path segment: `stable`, `testing`.
    pub channel: String,
    /// How often the running server looks at the channel; zero: only `update check`.
    pub check_interval: Duration,
    /// Whether the server installs what its look finds (else only `update now`).
    pub automatic: bool,
    /// When automatic updates may restart the server: minutes of the UTC day, start and
    /// end (end may be smaller: past midnight); `None`: any time.
    pub window: Option<(u32, u32)>,
    /// How long a new version has to report healthy before it is rolled back.
    pub health_deadline: Duration,
}

impl Update {
    /// Whether `secs` (since the epoch) falls in the window.
    pub fn in_window(&self, secs: u64) -> bool {
        let Some((from, to)) = self.window else {
            return true;
        };
        let minute = ((secs % 86_400) / 60) as u32;
        if from <= to {
            (from..to).contains(&minute)
        } else {
            minute >= from || minute < to
        }
    }

    /// The window as `HH:MM-HH:MM UTC`, or `None` for any time.
    pub fn window_text(&self) -> Option<String> {
        let (from, to) = self.window?;
        Some(format!(
            "{:02}:{:02}-{:02}:{:02} UTC",
            from / 60,
            from % 60,
            to / 60,
            to % 60
        ))
    }

    /// How long from `secs` until the window opens (zero inside it).
    pub fn until_window(&self, secs: u64) -> Duration {
        match self.window {
            Some((from, _)) if !self.in_window(secs) => {
                let now = secs % 86_400;
                let start = u64::from(from) * 60;
                Duration::from_secs((start + 86_400 - now) % 86_400)
            }
            _ => Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
pub struct General {
    pub signup_mode: SignupMode,
    /// Empty when not set (then `--data-dir` or the per-user default decides).
    pub data_dir: PathBuf,
    /// Executor threads; 0 is one per CPU core (see [`Config::worker_threads`]).
    pub worker_threads: usize,
}

#[derive(Debug, Clone)]
pub struct Drive {
    pub icann_listen_socket: SocketAddr,
    pub pubky_listen_socket: SocketAddr,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`drive.trusted_proxies`).
    pub trusted_proxies: TrustedProxies,
    /// Who the client of a plain-HTTP connection is (`drive.icann_client_identity`).
    pub icann_client_identity: ClientIdentity,
    /// Who the client of a PubkyTLS connection is (`drive.pubky_client_identity`).
    pub pubky_client_identity: ClientIdentity,
    /// Serve users' static websites by `Host` (`drive.websites`).
    pub websites: bool,
    /// Domains under which `<key>.<domain>` and `<label>.<key>.<domain>` also name a
    /// website (`drive.website_domains`): lower case, no leading or trailing dot.
    pub website_domains: Vec<String>,
    /// Request-rate rules (`[[drive.rate_limits]]`), validated.
    pub rate_limits: Vec<Rule>,
}

/// Where a listener learns its client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// The socket's peer.
    Direct,
    /// Only these proxies may connect, and each connection starts with a PROXY protocol
    /// preface (v1 or v2) that names the client.
    ProxyProtocol(TrustedProxies),
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub default_quota_mb: Option<u64>,
    pub inline_max_bytes: usize,
    pub cache_capacity_bytes: u64,
    pub durability: Durability,
    pub max_upload_bytes: u64,
}

impl Storage {
    pub fn default_quota_bytes(&self) -> Option<u64> {
        self.default_quota_mb.map(|mb| mb.saturating_mul(1 << 20))
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_requests_per_connection: u32,
    pub max_json_body_bytes: usize,
    pub shutdown_drain: Duration,
    pub write_stall_timeout: Duration,
    /// How long a request body may keep the server waiting.
    pub body_pace: BodyPace,
    /// Connections one address (IPv6: one /64) may hold on one listener.
    pub max_connections_per_ip: usize,
    /// The service's memory ceiling (`runtime::memory`); `None`: no ceiling.
    pub memory_budget_bytes: Option<u64>,
}

/// How long a request body may keep the server waiting (`limits::body` applies it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    /// Longest wait for the next bytes; also the grace before `min_rate` applies.
    pub idle: Duration,
    /// Bytes per second a body must average over the time spent waiting for it, after the
    /// grace. Zero: no rate rule.
    pub min_rate: u64,
}

#[derive(Debug, Clone)]
pub struct Pkdns {
    pub dht: bool,
    /// The address to publish, when the operator fixes one.
    pub public_ip: Option<IpAddr>,
    /// 0: the bound port.
    pub public_pubky_tls_port: u16,
    /// 0: the bound port.
    pub public_icann_http_port: u16,
    pub icann_domain: Option<String>,
    pub dht_bootstrap_nodes: Vec<String>,
    pub dht_request_timeout: Duration,
    pub republish_interval: Duration,
    pub publish_retry_min: Duration,
    /// Zero turns the users' republisher off.
    pub user_keys_republish_interval: Duration,
    pub user_keys_republish_first: Duration,
}

impl Pkdns {
    /// The PubkyTLS port to announce: the configured public one, else the bound one.
    pub fn announced_tls_port(&self, bound: u16) -> u16 {
        nonzero_or(self.public_pubky_tls_port, bound)
    }

    /// The plain-HTTP port to announce: the configured public one, else the bound one.
    pub fn announced_http_port(&self, bound: u16) -> u16 {
        nonzero_or(self.public_icann_http_port, bound)
    }
}

fn nonzero_or(configured: u16, bound: u16) -> u16 {
    if configured == 0 {
        bound
    } else {
        configured
    }
}

#[derive(Debug, Clone)]
pub struct PkarrRelay {
    pub enabled: bool,
    /// A dedicated relay listener, if configured.
    pub listen_socket: Option<SocketAddr>,
    pub cache_entries: usize,
}

#[derive(Debug, Clone)]
pub struct Logging {
    pub level: String,
    /// `target=level` directives over `level` (`logging.module_levels`), validated.
    pub module_levels: Vec<String>,
}

impl Logging {
    /// The filter the log output uses: the level, quiet sled, then the module levels.
    pub fn filter(&self) -> String {
        let mut f = format!("{},sled=warn", self.level);
        for m in &self.module_levels {
            f.push(',');
            f.push_str(m);
        }
        f
    }
}

/// `[events]`: event streams.
#[derive(Debug, Clone)]
pub struct Events {
    pub max_streams: usize,
    /// Streams one address (IPv6: one /64) may hold open.
    pub max_streams_per_ip: usize,
    pub keep_alive: Duration,
    pub max_lag: u64,
}

/// `[admin]`: the admin listener.
#[derive(Debug, Clone)]
pub struct Admin {
    pub enabled: bool,
    pub listen_socket: SocketAddr,
    /// Empty (the default): `password_file`, else a generated one (`account::operator`).
    pub password: String,
    pub password_file: Option<PathBuf>,
}

/// `[metrics]`: the Prometheus listener.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub enabled: bool,
    pub listen_socket: SocketAddr,
}

/// `[dashboard]`: the household's web page on the LAN (`http::dashboard`).
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub enabled: bool,
    /// Overridden by a socket systemd passes as `dashboard` (port 80 on the image).
    pub listen_socket: SocketAddr,
    /// Names besides the box's own (host name, `<host>.local`, `localhost`) and IP
    /// literals that may appear in `Host`, lower case.
    pub hosts: Vec<String>,
    pub session_ttl: Duration,
}

/// `[default_quotas]`: bandwidth defaults (§10.2).
#[derive(Debug, Clone, Default)]
pub struct DefaultBandwidth {
    pub rate_read: Option<Bandwidth>,
    pub rate_write: Option<Bandwidth>,
    pub rate_read_burst: Option<u64>,
    pub rate_write_burst: Option<u64>,
    pub unauthenticated_ip_rate_read: Option<Bandwidth>,
}

/// A rung of the port-mapping ladder (`upnp.protocols`), in the default order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MappingProtocol {
    /// UPnP IGD: SSDP discovery, then SOAP calls to the router's control URL.
    #[serde(rename = "upnp")]
    Upnp,
    /// NAT-PMP (RFC 6886), UDP to the default gateway's port 5351.
    #[serde(rename = "nat-pmp")]
    NatPmp,
    /// PCP (RFC 6887), NAT-PMP's successor on the same port.
    #[serde(rename = "pcp")]
    Pcp,
}

impl MappingProtocol {
    pub const ALL: [MappingProtocol; 3] = [
        MappingProtocol::Upnp,
        MappingProtocol::NatPmp,
        MappingProtocol::Pcp,
    ];

    /// The name in the config file.
    pub fn key(self) -> &'static str {
        match self {
            MappingProtocol::Upnp => "upnp",
            MappingProtocol::NatPmp => "nat-pmp",
            MappingProtocol::Pcp => "pcp",
        }
    }

    /// The name in reports and logs.
    pub fn label(self) -> &'static str {
        match self {
            MappingProtocol::Upnp => "UPnP IGD",
            MappingProtocol::NatPmp => "NAT-PMP",
            MappingProtocol::Pcp => "PCP",
        }
    }

    pub fn from_key(key: &str) -> Option<MappingProtocol> {
        MappingProtocol::ALL.into_iter().find(|p| p.key() == key)
    }
}

/// `[upnp]`: the router port mapping.
#[derive(Debug, Clone)]
pub struct Upnp {
    pub enabled: bool,
    /// The protocols tried in turn until the router answers one.
    pub protocols: Vec<MappingProtocol>,
    pub map_http_port: bool,
    /// Lease asked for; renewed at half of it. Rounded up to whole seconds.
    pub lease: Duration,
    /// How often the external address is read again.
    pub check_interval: Duration,
    pub discovery_timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Other external ports tried when the wanted one is held by another host.
    pub alternative_ports: u16,
    pub description: String,
    /// Whether the box's global IPv6 address is announced, and the router's firewall asked
    /// to open it.
    pub ipv6: Ipv6Mode,
}

/// `upnp.ipv6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Mode {
    /// Ask the router (PCP) for a pinhole; announce the address while it is open.
    Pinhole,
    /// The firewall is open already (by hand, or none): announce the address, ask nothing.
    Open,
    /// Announce no IPv6 address.
    Off,
}

/// `[mdns]`: the LAN announcement.
#[derive(Debug, Clone)]
pub struct Mdns {
    pub enabled: bool,
    pub interfaces: Vec<String>,
    pub skip_interfaces: Vec<String>,
}

/// `[tunnel]`: the relay rung, from either side.
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// This box's relay, when it has one.
    pub via: Option<RelayTarget>,
    /// Whether the record announces the relay always, or only while the relay cannot reach
    /// this box at its own address.
    pub use_relay: RelayUse,
    /// How often the relay is asked to connect back to this box's own address.
    pub check_interval: Duration,
    /// Where relayed boxes connect, when this box is a relay.
    pub listen_socket: Option<SocketAddr>,
    /// The boxes this relay serves and each one's public port.
    pub boxes: Vec<RelayedBox>,
    pub max_connections_per_box: usize,
    /// Bytes per second over both directions of one box's connections; 0 is unlimited.
    pub max_bytes_per_second_per_box: u64,
}

/// `tunnel.use_relay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayUse {
    Always,
    /// The relay connects back to the box's own address; the record names the relay only
    /// while that fails.
    WhenUnreachable,
}

/// `tunnel.via`: whom to dial and which key it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTarget {
    pub key: crate::pubkey::PublicKey,
    pub addr: SocketAddr,
}

impl std::fmt::Display for RelayTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.key, self.addr)
    }
}

/// One box a relay serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedBox {
    pub key: crate::pubkey::PublicKey,
    pub port: u16,
}

/// A loaded configuration plus the warnings (unknown keys) found while loading it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// The built-in defaults alone.
    pub fn defaults() -> Config {
        // Invariant: the embedded sample is checked by the `sample_is_valid` test.
        Self::from_layers(&[])
            .expect("embedded default config is valid")
            .config
    }

    /// Loads defaults, then each `(name, toml text)` layer in order (board overlay, user file).
    pub fn from_layers(layers: &[(&str, &str)]) -> Result<Loaded, String> {
        raw::load_layers(layers)
    }

    /// Reads a config file from disk as the last layer (after an optional board overlay).
    pub fn load(file: Option<&Path>, board: Option<(&str, &str)>) -> Result<Loaded, String> {
        let text = match file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read config {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let name = file.map(|p| p.display().to_string()).unwrap_or_default();
        let mut layers = Vec::new();
        if let Some(b) = board {
            layers.push(b);
        }
        if let Some(t) = &text {
            layers.push((name.as_str(), t.as_str()));
        }
        Self::from_layers(&layers)
    }

    /// Executor threads: `general.worker_threads`, or one per CPU core when it is 0.
    pub fn worker_threads(&self) -> usize {
        match self.general.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The data directory: `--data-dir`, else `general.data_dir`, else the per-user default.
    pub fn data_dir(&self, cli: Option<&Path>) -> Result<PathBuf, String> {
        if let Some(p) = cli {
            return Ok(p.to_path_buf());
        }
        if !self.general.data_dir.as_os_str().is_empty() {
            return Ok(self.general.data_dir.clone());
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return Ok(PathBuf::from(x).join("pubky-edge"));
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => Ok(PathBuf::from(h).join(".local/share/pubky-edge")),
            None => Err("no data directory: set --data-dir or general.data_dir".into()),
        }
    }
}

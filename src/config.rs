//! Configuration: the embedded default (`config.sample.toml`, so defaults live in exactly one
//! place), optionally a board overlay, then the user's file, merged key by key and validated
//! into a typed [`Config`]. Unknown keys are reported by name; invalid values stop start-up
//! with a one-line reason. `app` reads the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::{Table, Value};

/// The sample config shipped in the repository, which is also the built-in default.
pub const DEFAULT_TOML: &str = include_str!("../config.sample.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupMode {
    Open,
    TokenRequired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityMode {
    Strict,
    Relaxed,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub general: General,
    pub drive: Drive,
    pub storage: Storage,
    pub limits: Limits,
    pub pkdns: Pkdns,
    pub pkarr_relay: PkarrRelay,
    pub logging: Logging,
    pub events: crate::http::events::EventsConfig,
    pub admin: crate::http::admin::AdminConfig,
    pub metrics: crate::metrics::MetricsConfig,
    pub default_quotas: crate::ratelimit::BandwidthConfig,
    pub upnp: Upnp,
    pub mdns: Mdns,
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

impl Pkdns {
    /// The configured public address, if one is set (validated at load).
    pub fn public_ip(&self) -> Option<std::net::IpAddr> {
        self.public_ip.parse().ok()
    }
    pub fn icann_domain(&self) -> Option<&str> {
        Some(self.icann_domain.as_str()).filter(|d| !d.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PkarrRelay {
    pub enabled: bool,
    pub listen_socket: String,
    pub cache_entries: usize,
}

impl PkarrRelay {
    /// The dedicated relay listener, if configured (validated at load).
    pub fn listen_socket(&self) -> Option<SocketAddr> {
        self.listen_socket.parse().ok()
    }
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
    /// Request-rate rules (`[[drive.rate_limits]]`, see `ratelimit`).
    pub rate_limits: Vec<crate::ratelimit::RuleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Storage {
    pub default_quota_mb: Option<u64>,
    pub inline_max_bytes: usize,
    pub cache_capacity_mb: u64,
    pub durability: DurabilityMode,
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
}

#[derive(Debug, Clone, Deserialize)]
pub struct Logging {
    pub level: String,
}

/// `[upnp]`: the router port mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct Upnp {
    pub enabled: bool,
    pub map_http_port: bool,
    pub lease_ms: u64,
    pub check_interval_ms: u64,
    pub discovery_timeout_ms: u64,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub alternative_ports: u16,
    pub description: String,
}

/// `[mdns]`: the LAN announcement.
#[derive(Debug, Clone, Deserialize)]
pub struct Mdns {
    pub enabled: bool,
    pub interfaces: Vec<String>,
    pub skip_interfaces: Vec<String>,
}

impl Limits {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_ms)
    }
    pub fn write_stall_timeout(&self) -> Duration {
        Duration::from_millis(self.write_stall_timeout_ms)
    }
}

impl Storage {
    pub fn default_quota_bytes(&self) -> Option<u64> {
        self.default_quota_mb.map(|mb| mb.saturating_mul(1 << 20))
    }
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_mb.saturating_mul(1 << 20)
    }
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
            unknown_keys(&known, &layer, "", name, &mut warnings);
            merge(&mut merged, layer);
        }
        let config: Config = Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| format!("config: {}", e.message().trim()))?;
        config.validate()?;
        Ok(Loaded { config, warnings })
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

    fn validate(&self) -> Result<(), String> {
        let positive: [(&str, u64); 10] = [
            (
                "storage.inline_max_bytes",
                self.storage.inline_max_bytes as u64,
            ),
            ("storage.cache_capacity_mb", self.storage.cache_capacity_mb),
            ("storage.max_upload_mb", self.storage.max_upload_mb),
            ("limits.max_connections", self.limits.max_connections as u64),
            (
                "limits.max_header_bytes",
                self.limits.max_header_bytes as u64,
            ),
            (
                "limits.header_read_timeout_ms",
                self.limits.header_read_timeout_ms,
            ),
            (
                "limits.max_requests_per_connection",
                self.limits.max_requests_per_connection as u64,
            ),
            (
                "limits.max_json_body_bytes",
                self.limits.max_json_body_bytes as u64,
            ),
            ("limits.shutdown_drain_ms", self.limits.shutdown_drain_ms),
            (
                "limits.write_stall_timeout_ms",
                self.limits.write_stall_timeout_ms,
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        if self.limits.max_header_bytes < 1024 {
            return Err("limits.max_header_bytes must be at least 1024".into());
        }
        if self.storage.inline_max_bytes > 1 << 20 {
            return Err("storage.inline_max_bytes must be at most 1048576".into());
        }
        if self.drive.icann_listen_socket == self.drive.pubky_listen_socket
            && self.drive.icann_listen_socket.port() != 0
        {
            return Err("drive.icann_listen_socket and drive.pubky_listen_socket are equal".into());
        }
        self.validate_discovery()?;
        self.events.validate()?;
        self.admin.validate()?;
        crate::ratelimit::validate(&self.drive.rate_limits, &self.default_quotas)?;
        self.validate_household()?;
        const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
        if !LEVELS.contains(&self.logging.level.as_str()) {
            return Err(format!(
                "logging.level must be one of {}, not {:?}",
                LEVELS.join(", "),
                self.logging.level
            ));
        }
        Ok(())
    }

    fn validate_discovery(&self) -> Result<(), String> {
        let p = &self.pkdns;
        if !p.public_ip.is_empty() && p.public_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "pkdns.public_ip {:?} is not an IP address",
                p.public_ip
            ));
        }
        let domain_ok = |d: &str| {
            d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if !p.icann_domain.is_empty() && !domain_ok(&p.icann_domain) {
            return Err(format!(
                "pkdns.icann_domain {:?} is not a domain name",
                p.icann_domain
            ));
        }
        for n in &p.dht_bootstrap_nodes {
            let port_ok = n
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(format!(
                    "pkdns.dht_bootstrap_nodes: {n:?} is not \"host:port\""
                ));
            }
        }
        for (key, v) in [
            ("pkdns.dht_request_timeout_ms", p.dht_request_timeout_ms),
            ("pkdns.republish_interval_ms", p.republish_interval_ms),
            ("pkdns.publish_retry_min_ms", p.publish_retry_min_ms),
            (
                "pkarr_relay.cache_entries",
                self.pkarr_relay.cache_entries as u64,
            ),
        ] {
            if v == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        let relay = &self.pkarr_relay.listen_socket;
        if !relay.is_empty() && relay.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "pkarr_relay.listen_socket {relay:?} is not an address like 127.0.0.1:15411"
            ));
        }
        Ok(())
    }

    fn validate_household(&self) -> Result<(), String> {
        let u = &self.upnp;
        for (key, v) in [
            ("upnp.lease_ms", u.lease_ms),
            ("upnp.check_interval_ms", u.check_interval_ms),
            ("upnp.discovery_timeout_ms", u.discovery_timeout_ms),
            ("upnp.retry_min_ms", u.retry_min_ms),
            ("upnp.retry_max_ms", u.retry_max_ms),
        ] {
            if v == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        if u.retry_max_ms < u.retry_min_ms {
            return Err("upnp.retry_max_ms must be at least upnp.retry_min_ms".into());
        }
        if u.description.is_empty() || u.description.len() > 64 {
            return Err("upnp.description must be 1 to 64 characters".into());
        }
        if let Some(n) = self
            .mdns
            .interfaces
            .iter()
            .chain(&self.mdns.skip_interfaces)
            .find(|n| n.is_empty())
        {
            return Err(format!("mdns: empty interface name {n:?}"));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Loaded, String> {
        Config::from_layers(&[("test.toml", text)])
    }

    #[test]
    fn sample_is_valid() {
        let l = Config::from_layers(&[("sample", DEFAULT_TOML)]).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let c = l.config;
        assert_eq!(c.drive.icann_listen_socket.port(), 6286);
        assert_eq!(c.drive.pubky_listen_socket.port(), 6287);
        assert!(c.drive.icann_listen_socket.ip().is_loopback());
        assert_eq!(c.general.signup_mode, SignupMode::TokenRequired);
        assert_eq!(c.storage.durability, DurabilityMode::Strict);
        assert_eq!(c.storage.default_quota_bytes(), None);
    }

    #[test]
    fn layers_override_and_unknown_keys_warn() {
        let l = load(
            "[general]\nsignup_mode = \"open\"\nbogus = 1\n[storage]\ndefault_quota_mb = 1\n[nope]\nx = 2\n",
        )
        .unwrap();
        assert_eq!(l.config.general.signup_mode, SignupMode::Open);
        assert_eq!(l.config.storage.default_quota_bytes(), Some(1 << 20));
        assert_eq!(l.config.storage.inline_max_bytes, 16384);
        assert_eq!(
            l.warnings,
            vec![
                "test.toml: unknown key `general.bogus` ignored".to_string(),
                "test.toml: unknown key `nope` ignored".to_string()
            ]
        );
    }

    #[test]
    fn invalid_values_are_one_line_errors() {
        let e = load("[drive]\nicann_listen_socket = \"not an address\"\n").unwrap_err();
        assert!(e.contains("socket address"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = load("[limits]\nmax_connections = 0\n").unwrap_err();
        assert_eq!(e, "limits.max_connections must be greater than 0");
        let e = load("[general]\nsignup_mode = \"maybe\"\n").unwrap_err();
        assert!(e.contains("maybe") || e.contains("variant"), "{e}");
        let e = load("[limits\n").unwrap_err();
        assert!(e.starts_with("test.toml: line 1"), "{e}");
        let e = load("[logging]\nlevel = \"loud\"\n").unwrap_err();
        assert!(e.contains("logging.level"), "{e}");
        let e = load("[limits]\nmax_connections = -3\n").unwrap_err();
        assert!(!e.is_empty());
    }

    #[test]
    fn discovery_settings_are_checked() {
        let ok = load(
            "[pkdns]\npublic_ip = \"192.0.2.4\"\nicann_domain = \"hs.example.org\"\ndht_bootstrap_nodes = [\"127.0.0.1:6881\", \"router.example:6881\"]\n[pkarr_relay]\nlisten_socket = \"127.0.0.1:15411\"\n",
        )
        .unwrap()
        .config;
        assert_eq!(ok.pkdns.public_ip(), Some("192.0.2.4".parse().unwrap()));
        assert_eq!(ok.pkdns.icann_domain(), Some("hs.example.org"));
        assert_eq!(
            ok.pkarr_relay.listen_socket(),
            Some("127.0.0.1:15411".parse().unwrap())
        );
        let d = Config::defaults();
        assert!(d.pkdns.dht);
        assert_eq!(d.pkdns.public_ip(), None);
        assert_eq!(d.pkdns.icann_domain(), None);
        assert_eq!(d.pkarr_relay.listen_socket(), None);
        for (text, key) in [
            ("[pkdns]\npublic_ip = \"1.2.3\"", "pkdns.public_ip"),
            ("[pkdns]\nicann_domain = \"a b\"", "pkdns.icann_domain"),
            (
                "[pkdns]\ndht_bootstrap_nodes = [\"nohost\"]",
                "pkdns.dht_bootstrap_nodes",
            ),
            (
                "[pkdns]\nrepublish_interval_ms = 0",
                "pkdns.republish_interval_ms",
            ),
            (
                "[pkarr_relay]\ncache_entries = 0",
                "pkarr_relay.cache_entries",
            ),
            (
                "[pkarr_relay]\nlisten_socket = \"x\"",
                "pkarr_relay.listen_socket",
            ),
        ] {
            let e = load(text).unwrap_err();
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }

    #[test]
    fn household_settings_are_checked() {
        let d = Config::defaults();
        assert!(d.upnp.enabled && d.mdns.enabled);
        assert!(!d.upnp.map_http_port);
        assert_eq!(d.upnp.lease_ms, 3_600_000);
        assert!(d.mdns.skip_interfaces.iter().any(|s| s == "docker"));
        let off =
            load("[upnp]\nenabled = false\n[mdns]\nenabled = false\ninterfaces = [\"wlan0\"]\n")
                .unwrap()
                .config;
        assert!(!off.upnp.enabled && !off.mdns.enabled);
        assert_eq!(off.mdns.interfaces, vec!["wlan0".to_string()]);
        for (text, key) in [
            ("[upnp]\nlease_ms = 0", "upnp.lease_ms"),
            (
                "[upnp]\nretry_min_ms = 10\nretry_max_ms = 5",
                "upnp.retry_max_ms",
            ),
            ("[upnp]\ndescription = \"\"", "upnp.description"),
            ("[mdns]\nskip_interfaces = [\"\"]", "mdns"),
        ] {
            let e = load(text).unwrap_err();
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }

    #[test]
    fn data_dir_precedence() {
        let c = Config::defaults();
        assert_eq!(
            c.data_dir(Some(Path::new("/x"))).unwrap(),
            PathBuf::from("/x")
        );
        let c = load("[general]\ndata_dir = \"/var/lib/pubky-edge\"\n")
            .unwrap()
            .config;
        assert_eq!(
            c.data_dir(None).unwrap(),
            PathBuf::from("/var/lib/pubky-edge")
        );
    }
}

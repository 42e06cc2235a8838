//! The first stage of the config: the TOML layers as written. The embedded defaults, an
//! optional board overlay and the user's file merge key by key into these serde sections;
//! keys the defaults do not know are reported by name; then [`RawConfig::validate`] checks
//! every value in one place and converts the whole into the typed [`Config`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::{Table, Value};

use super::rates::{Bandwidth, Rule, RuleConfig};
use super::{Config, Durability, Loaded, SignupMode};

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
    pub default_quotas: DefaultQuotas,
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
    pub rate_limits: Vec<RuleConfig>,
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
}

#[derive(Debug, Clone, Deserialize)]
pub struct Logging {
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Events {
    pub max_streams: usize,
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
    pub map_http_port: bool,
    pub lease_ms: u64,
    pub check_interval_ms: u64,
    pub discovery_timeout_ms: u64,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub alternative_ports: u16,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Mdns {
    pub enabled: bool,
    pub interfaces: Vec<String>,
    pub skip_interfaces: Vec<String>,
}

/// Defaults, then each `(name, toml text)` layer in order, validated into a [`Config`].
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
        unknown_keys(&known, &layer, "", name, &mut warnings);
        merge(&mut merged, layer);
    }
    let raw: RawConfig = Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| format!("config: {}", e.message().trim()))?;
    let config = raw.validate()?;
    Ok(Loaded { config, warnings })
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Every key that must not be 0, with its value.
fn positive(checks: &[(&str, u64)]) -> Result<(), String> {
    match checks.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(format!("{key} must be greater than 0")),
        None => Ok(()),
    }
}

fn bandwidth(v: &Option<String>) -> Result<Option<Bandwidth>, String> {
    v.as_deref().map(Bandwidth::parse).transpose()
}

impl RawConfig {
    /// Checks every value, in one place, and converts to the typed [`Config`].
    pub fn validate(self) -> Result<Config, String> {
        let (s, l) = (&self.storage, &self.limits);
        positive(&[
            ("storage.inline_max_bytes", s.inline_max_bytes as u64),
            ("storage.cache_capacity_mb", s.cache_capacity_mb),
            ("storage.max_upload_mb", s.max_upload_mb),
            ("limits.max_connections", l.max_connections as u64),
            ("limits.max_header_bytes", l.max_header_bytes as u64),
            ("limits.header_read_timeout_ms", l.header_read_timeout_ms),
            (
                "limits.max_requests_per_connection",
                l.max_requests_per_connection as u64,
            ),
            ("limits.max_json_body_bytes", l.max_json_body_bytes as u64),
            ("limits.shutdown_drain_ms", l.shutdown_drain_ms),
            ("limits.write_stall_timeout_ms", l.write_stall_timeout_ms),
        ])?;
        if l.max_header_bytes < 1024 {
            return Err("limits.max_header_bytes must be at least 1024".into());
        }
        if s.inline_max_bytes > 1 << 20 {
            return Err("storage.inline_max_bytes must be at most 1048576".into());
        }
        let d = &self.drive;
        if d.icann_listen_socket == d.pubky_listen_socket && d.icann_listen_socket.port() != 0 {
            return Err("drive.icann_listen_socket and drive.pubky_listen_socket are equal".into());
        }
        let (pkdns, pkarr_relay) = self.discovery()?;
        let e = &self.events;
        positive(&[
            ("events.max_streams", e.max_streams as u64),
            ("events.keep_alive_ms", e.keep_alive_ms),
            ("events.max_lag", e.max_lag),
        ])?;
        if self.admin.password_file.is_none() && self.admin.password.is_empty() {
            return Err("admin.password must not be empty".into());
        }
        let rate_limits = d
            .rate_limits
            .iter()
            .map(Rule::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        let q = &self.default_quotas;
        let bw = super::DefaultBandwidth {
            rate_read: bandwidth(&q.rate_read)?,
            rate_write: bandwidth(&q.rate_write)?,
            rate_read_burst: q.rate_read_burst,
            rate_write_burst: q.rate_write_burst,
            unauthenticated_ip_rate_read: bandwidth(&q.unauthenticated_ip_rate_read)?,
        };
        let upnp = self.household()?;
        const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
        if !LEVELS.contains(&self.logging.level.as_str()) {
            return Err(format!(
                "logging.level must be one of {}, not {:?}",
                LEVELS.join(", "),
                self.logging.level
            ));
        }
        Ok(Config {
            general: super::General {
                signup_mode: self.general.signup_mode,
                data_dir: self.general.data_dir,
                worker_threads: self.general.worker_threads,
            },
            drive: super::Drive {
                icann_listen_socket: d.icann_listen_socket,
                pubky_listen_socket: d.pubky_listen_socket,
                rate_limits,
            },
            storage: super::Storage {
                default_quota_mb: s.default_quota_mb,
                inline_max_bytes: s.inline_max_bytes,
                cache_capacity_bytes: s.cache_capacity_mb.saturating_mul(1 << 20),
                durability: s.durability,
                max_upload_bytes: s.max_upload_mb.saturating_mul(1 << 20),
            },
            limits: super::Limits {
                max_connections: l.max_connections,
                max_header_bytes: l.max_header_bytes,
                header_read_timeout: ms(l.header_read_timeout_ms),
                max_requests_per_connection: l.max_requests_per_connection,
                max_json_body_bytes: l.max_json_body_bytes,
                shutdown_drain: ms(l.shutdown_drain_ms),
                write_stall_timeout: ms(l.write_stall_timeout_ms),
            },
            pkdns,
            pkarr_relay,
            logging: super::Logging {
                level: self.logging.level,
            },
            events: super::Events {
                max_streams: e.max_streams,
                keep_alive: ms(e.keep_alive_ms),
                max_lag: e.max_lag,
            },
            admin: super::Admin {
                enabled: self.admin.enabled,
                listen_socket: self.admin.listen_socket,
                password: self.admin.password,
                password_file: self.admin.password_file,
            },
            metrics: super::Metrics {
                enabled: self.metrics.enabled,
                listen_socket: self.metrics.listen_socket,
            },
            bandwidth: bw,
            upnp,
            mdns: super::Mdns {
                enabled: self.mdns.enabled,
                interfaces: self.mdns.interfaces,
                skip_interfaces: self.mdns.skip_interfaces,
            },
        })
    }

    fn discovery(&self) -> Result<(super::Pkdns, super::PkarrRelay), String> {
        let p = &self.pkdns;
        let public_ip =
            match p.public_ip.as_str() {
                "" => None,
                ip => Some(ip.parse::<IpAddr>().map_err(|_| {
                    format!("pkdns.public_ip {:?} is not an IP address", p.public_ip)
                })?),
            };
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
        positive(&[
            ("pkdns.dht_request_timeout_ms", p.dht_request_timeout_ms),
            ("pkdns.republish_interval_ms", p.republish_interval_ms),
            ("pkdns.publish_retry_min_ms", p.publish_retry_min_ms),
            (
                "pkarr_relay.cache_entries",
                self.pkarr_relay.cache_entries as u64,
            ),
        ])?;
        let r = &self.pkarr_relay;
        let listen_socket = match r.listen_socket.as_str() {
            "" => None,
            a => Some(a.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "pkarr_relay.listen_socket {:?} is not an address like 127.0.0.1:15411",
                    r.listen_socket
                )
            })?),
        };
        let pkdns = super::Pkdns {
            dht: p.dht,
            public_ip,
            public_pubky_tls_port: p.public_pubky_tls_port,
            public_icann_http_port: p.public_icann_http_port,
            icann_domain: Some(p.icann_domain.clone()).filter(|d| !d.is_empty()),
            dht_bootstrap_nodes: p.dht_bootstrap_nodes.clone(),
            dht_request_timeout: ms(p.dht_request_timeout_ms),
            republish_interval: ms(p.republish_interval_ms),
            publish_retry_min: ms(p.publish_retry_min_ms),
            user_keys_republish_interval: ms(p.user_keys_republish_interval_ms),
            user_keys_republish_first: ms(p.user_keys_republish_first_ms),
        };
        let relay = super::PkarrRelay {
            enabled: r.enabled,
            listen_socket,
            cache_entries: r.cache_entries,
        };
        Ok((pkdns, relay))
    }

    fn household(&self) -> Result<super::Upnp, String> {
        let u = &self.upnp;
        positive(&[
            ("upnp.lease_ms", u.lease_ms),
            ("upnp.check_interval_ms", u.check_interval_ms),
            ("upnp.discovery_timeout_ms", u.discovery_timeout_ms),
            ("upnp.retry_min_ms", u.retry_min_ms),
            ("upnp.retry_max_ms", u.retry_max_ms),
        ])?;
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
        Ok(super::Upnp {
            enabled: u.enabled,
            map_http_port: u.map_http_port,
            lease: ms(u.lease_ms),
            check_interval: ms(u.check_interval_ms),
            discovery_timeout: ms(u.discovery_timeout_ms),
            retry_min: ms(u.retry_min_ms),
            retry_max: ms(u.retry_max_ms),
            alternative_ports: u.alternative_ports,
            description: u.description.clone(),
        })
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
    use std::path::Path;

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
        assert_eq!(c.storage.durability, Durability::Strict);
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
        assert_eq!(ok.pkdns.public_ip, Some("192.0.2.4".parse().unwrap()));
        assert_eq!(ok.pkdns.icann_domain.as_deref(), Some("hs.example.org"));
        assert_eq!(
            ok.pkarr_relay.listen_socket,
            Some("127.0.0.1:15411".parse().unwrap())
        );
        let d = Config::defaults();
        assert!(d.pkdns.dht);
        assert_eq!(d.pkdns.public_ip, None);
        assert_eq!(d.pkdns.icann_domain.as_deref(), None);
        assert_eq!(d.pkarr_relay.listen_socket, None);
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
        assert_eq!(d.upnp.lease, Duration::from_millis(3_600_000));
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

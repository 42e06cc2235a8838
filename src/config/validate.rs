//! The second stage of the config: every value of the merged [`RawConfig`] checked in one
//! place, each section converted to its typed form (socket addresses, `Duration`s, parsed
//! bandwidths and rules). An invalid value is a one-line reason that names its key.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::rates::{Bandwidth, Rule};
use super::raw::RawConfig;
use super::Config;
use crate::pubkey::PublicKey;

/// The smallest memory ceiling accepted: the server idles at about 8 MiB on an empty store.
const MIN_MEMORY_BUDGET_MB: u64 = 32;

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

/// One address's share of a cap: as configured (1 to `cap`), or a quarter of the cap (at
/// least one).
fn share(key: &str, configured: Option<usize>, cap: usize) -> Result<usize, String> {
    match configured {
        None => Ok((cap / 4).max(1)),
        Some(n) if (1..=cap).contains(&n) => Ok(n),
        Some(n) => Err(format!("{key} must be between 1 and {cap}, not {n}")),
    }
}

impl RawConfig {
    /// Checks every value, in one place, and converts to the typed [`Config`]. Sections are
    /// checked in the order of the sample file, so the first bad key is the one reported.
    pub fn validate(self) -> Result<Config, String> {
        let (storage, limits) = self.storage_and_limits()?;
        let drive = self.drive()?;
        let (pkdns, pkarr_relay) = self.discovery()?;
        let events = self.events()?;
        let rate_limits = self
            .drive
            .rate_limits
            .iter()
            .map(Rule::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        let bandwidth = self.bandwidth()?;
        let upnp = self.household()?;
        let dashboard = self.dashboard()?;
        let tunnel = self.tunnel()?;
        let update = self.update()?;
        let sb = &self.standby;
        positive(&[
            ("standby.check_interval_ms", sb.check_interval_ms),
            ("standby.retry_min_ms", sb.retry_min_ms),
        ])?;
        let standby = super::Standby {
            check_interval: ms(sb.check_interval_ms),
            retry_min: ms(sb.retry_min_ms),
            auto_promote_after: (sb.auto_promote_after_ms > 0)
                .then(|| ms(sb.auto_promote_after_ms)),
        };
        const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
        if !LEVELS.contains(&self.logging.level.as_str()) {
            return Err(format!(
                "logging.level must be one of {}, not {:?}",
                LEVELS.join(", "),
                self.logging.level
            ));
        }
        let module_levels = self
            .logging
            .module_levels
            .iter()
            .map(|m| {
                let (target, level) = m.split_once('=').unwrap_or(("", m));
                let target_ok = !target.is_empty()
                    && target
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
                if target_ok && LEVELS.contains(&level) {
                    Ok(m.clone())
                } else {
                    Err(format!(
                        "logging.module_levels: {m:?} is not <module>=<{}>",
                        LEVELS.join("|")
                    ))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Config {
            general: super::General {
                signup_mode: self.general.signup_mode,
                data_dir: self.general.data_dir,
                worker_threads: self.general.worker_threads,
            },
            drive: super::Drive {
                rate_limits,
                ..drive
            },
            storage,
            limits,
            pkdns,
            pkarr_relay,
            logging: super::Logging {
                level: self.logging.level,
                module_levels,
            },
            events,
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
            dashboard,
            bandwidth,
            upnp,
            mdns: super::Mdns {
                enabled: self.mdns.enabled,
                interfaces: self.mdns.interfaces,
                skip_interfaces: self.mdns.skip_interfaces,
            },
            tunnel,
            update,
            standby,
        })
    }

    fn update(&self) -> Result<super::Update, String> {
        let u = &self.update;
        let configured = Some(u.release_key.as_str()).filter(|k| !k.is_empty());
        let release_key = match configured.or(option_env!("PUBKY_EDGE_RELEASE_KEY")) {
            Some(k) => Some(
                crate::pubkey::PublicKey::parse_z32(k)
                    .map_err(|e| format!("update.release_key {k:?}: {e}"))?,
            ),
            None => None,
        };
        let channel_ok = !u.channel.is_empty()
            && u.channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !channel_ok {
            return Err(format!(
                "update.channel {:?}: lower-case letters, digits and '-' only (a path segment)",
                u.channel
            ));
        }
        positive(&[("update.health_deadline_ms", u.health_deadline_ms)])?;
        Ok(super::Update {
            release_key,
            channel: u.channel.clone(),
            check_interval: ms(u.check_interval_ms),
            automatic: u.automatic,
            window: parse_window(&u.window)?,
            health_deadline: ms(u.health_deadline_ms),
        })
    }

    fn tunnel(&self) -> Result<super::Tunnel, String> {
        let t = &self.tunnel;
        let via = match t.via.trim() {
            "" => None,
            v => {
                let bad =
                    || format!("tunnel.via: {v:?} is not \"<relay's public key>@<ip>:<port>\"");
                let (key, addr) = v.split_once('@').ok_or_else(bad)?;
                let key = PublicKey::parse_z32(key)
                    .map_err(|e| format!("tunnel.via: the relay's key: {e}"))?;
                let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
                if addr.port() == 0 || addr.ip().is_unspecified() {
                    return Err(bad());
                }
                Some(super::RelayTarget { key, addr })
            }
        };
        let listen_socket = match t.listen_socket.trim() {
            "" => None,
            l => Some(
                l.parse::<SocketAddr>()
                    .map_err(|_| format!("tunnel.listen_socket: {l:?} is not an <ip>:<port>"))?,
            ),
        };
        let mut boxes: Vec<super::RelayedBox> = Vec::new();
        for b in &t.boxes {
            let key = PublicKey::parse_z32(&b.key)
                .map_err(|e| format!("tunnel.boxes: key {:?}: {e}", b.key))?;
            if b.port == 0 {
                return Err(format!("tunnel.boxes: {key} needs a port other than 0"));
            }
            if let Some(d) = boxes.iter().find(|o| o.key == key || o.port == b.port) {
                return Err(format!(
                    "tunnel.boxes: {key} on port {} clashes with {} on port {}",
                    b.port, d.key, d.port
                ));
            }
            boxes.push(super::RelayedBox { key, port: b.port });
        }
        if listen_socket.is_none() && !boxes.is_empty() {
            return Err("tunnel.boxes is set but tunnel.listen_socket is empty".into());
        }
        let use_relay = match t.use_relay.as_str() {
            "always" => super::RelayUse::Always,
            "when_unreachable" => super::RelayUse::WhenUnreachable,
            other => {
                return Err(format!(
                    "tunnel.use_relay: {other:?} is not \"always\" or \"when_unreachable\""
                ))
            }
        };
        positive(&[("tunnel.check_interval_ms", t.check_interval_ms)])?;
        if t.max_connections_per_box == 0 {
            return Err("tunnel.max_connections_per_box must be at least 1".into());
        }
        Ok(super::Tunnel {
            via,
            use_relay,
            check_interval: ms(t.check_interval_ms),
            listen_socket,
            boxes,
            max_connections_per_box: t.max_connections_per_box,
            max_bytes_per_second_per_box: t.max_kib_per_second_per_box.saturating_mul(1024),
        })
    }

    fn storage_and_limits(&self) -> Result<(super::Storage, super::Limits), String> {
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
            ("limits.body_read_timeout_ms", l.body_read_timeout_ms),
        ])?;
        if l.max_header_bytes < 1024 {
            return Err("limits.max_header_bytes must be at least 1024".into());
        }
        if s.inline_max_bytes > 1 << 20 {
            return Err("storage.inline_max_bytes must be at most 1048576".into());
        }
        let budget = l.memory_budget_mb;
        if budget != 0 && budget < MIN_MEMORY_BUDGET_MB {
            return Err(format!(
                "limits.memory_budget_mb must be 0 (no ceiling) or at least {MIN_MEMORY_BUDGET_MB}"
            ));
        }
        if budget != 0 && s.cache_capacity_mb.saturating_mul(4) > budget {
            return Err(format!(
                "storage.cache_capacity_mb ({}) must be at most a quarter of \
                 limits.memory_budget_mb ({budget}): the page cache is only part of the \
                 server's memory",
                s.cache_capacity_mb
            ));
        }
        let storage = super::Storage {
            default_quota_mb: s.default_quota_mb,
            inline_max_bytes: s.inline_max_bytes,
            cache_capacity_bytes: s.cache_capacity_mb.saturating_mul(1 << 20),
            durability: s.durability,
            max_upload_bytes: s.max_upload_mb.saturating_mul(1 << 20),
        };
        let limits = super::Limits {
            max_connections: l.max_connections,
            max_header_bytes: l.max_header_bytes,
            header_read_timeout: ms(l.header_read_timeout_ms),
            max_requests_per_connection: l.max_requests_per_connection,
            max_json_body_bytes: l.max_json_body_bytes,
            shutdown_drain: ms(l.shutdown_drain_ms),
            write_stall_timeout: ms(l.write_stall_timeout_ms),
            body_pace: super::BodyPace {
                idle: ms(l.body_read_timeout_ms),
                min_rate: l.min_body_bytes_per_sec,
            },
            max_connections_per_ip: share(
                "limits.max_connections_per_ip",
                l.max_connections_per_ip,
                l.max_connections,
            )?,
            memory_budget_bytes: (budget != 0).then(|| budget.saturating_mul(1 << 20)),
        };
        Ok((storage, limits))
    }

    /// The listeners (the rate-limit rules are converted separately, after discovery).
    fn drive(&self) -> Result<super::Drive, String> {
        let d = &self.drive;
        if d.icann_listen_socket == d.pubky_listen_socket && d.icann_listen_socket.port() != 0 {
            return Err("drive.icann_listen_socket and drive.pubky_listen_socket are equal".into());
        }
        let proxies = d
            .trusted_proxies
            .iter()
            .map(|s| s.parse().map_err(|e| format!("drive.trusted_proxies: {e}")))
            .collect::<Result<Vec<_>, String>>()?;
        let website_domains = d
            .website_domains
            .iter()
            .map(|d| website_domain(d))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(super::Drive {
            icann_listen_socket: d.icann_listen_socket,
            pubky_listen_socket: d.pubky_listen_socket,
            trusted_proxies: super::TrustedProxies::new(proxies),
            icann_client_identity: client_identity(
                "drive.icann_client_identity",
                &d.icann_client_identity,
            )?,
            pubky_client_identity: client_identity(
                "drive.pubky_client_identity",
                &d.pubky_client_identity,
            )?,
            websites: d.websites,
            website_domains,
            rate_limits: Vec::new(),
        })
    }

    fn events(&self) -> Result<super::Events, String> {
        let e = &self.events;
        positive(&[
            ("events.keep_alive_ms", e.keep_alive_ms),
            ("events.max_lag", e.max_lag),
        ])?;
        // Each stream holds a connection: streams may take at most half of a listener's
        // connections, so a listener full of streams still serves everyone else.
        let half = (self.limits.max_connections / 2).max(1);
        let max_streams = match e.max_streams {
            None => half,
            Some(n) if (1..=half).contains(&n) => n,
            Some(n) => {
                return Err(format!(
                    "events.max_streams must be between 1 and {half} (half of \
                     limits.max_connections), not {n}"
                ))
            }
        };
        Ok(super::Events {
            max_streams,
            max_streams_per_ip: share(
                "events.max_streams_per_ip",
                e.max_streams_per_ip,
                max_streams,
            )?,
            keep_alive: ms(e.keep_alive_ms),
            max_lag: e.max_lag,
        })
    }

    fn bandwidth(&self) -> Result<super::DefaultBandwidth, String> {
        let q = &self.default_quotas;
        Ok(super::DefaultBandwidth {
            rate_read: bandwidth(&q.rate_read)?,
            rate_write: bandwidth(&q.rate_write)?,
            rate_read_burst: q.rate_read_burst,
            rate_write_burst: q.rate_write_burst,
            unauthenticated_ip_rate_read: bandwidth(&q.unauthenticated_ip_rate_read)?,
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

    fn dashboard(&self) -> Result<super::Dashboard, String> {
        let d = &self.dashboard;
        if !(1..=24 * 90).contains(&d.session_hours) {
            return Err(format!(
                "dashboard.session_hours must be 1..=2160 (90 days), not {}",
                d.session_hours
            ));
        }
        let mut hosts = Vec::new();
        for h in &d.hosts {
            let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(format!("dashboard.hosts: {h:?} is not a host name"));
            }
            hosts.push(h);
        }
        Ok(super::Dashboard {
            enabled: d.enabled,
            listen_socket: d.listen_socket,
            hosts,
            session_ttl: Duration::from_secs(d.session_hours * 3600),
        })
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
        let mut protocols = Vec::new();
        for name in &u.protocols {
            let p = super::MappingProtocol::from_key(name).ok_or_else(|| {
                format!("upnp.protocols: {name:?} is not one of \"upnp\", \"nat-pmp\", \"pcp\"")
            })?;
            if protocols.contains(&p) {
                return Err(format!("upnp.protocols: {name:?} is listed twice"));
            }
            protocols.push(p);
        }
        if protocols.is_empty() {
            return Err("upnp.protocols is empty (set upnp.enabled = false to map nothing)".into());
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
        let ipv6 = match u.ipv6.as_str() {
            "pinhole" => super::Ipv6Mode::Pinhole,
            "open" => super::Ipv6Mode::Open,
            "off" => super::Ipv6Mode::Off,
            other => {
                return Err(format!(
                    "upnp.ipv6: {other:?} is not \"pinhole\", \"open\" or \"off\""
                ))
            }
        };
        Ok(super::Upnp {
            enabled: u.enabled,
            ipv6,
            protocols,
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

/// A `drive.website_domains` entry: a DNS name of dot-separated hostname labels, taken in
/// lower case with a leading or trailing dot dropped.
fn website_domain(domain: &str) -> Result<String, String> {
    let d = domain.trim_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.is_empty() || d.len() > 253 || !d.split('.').all(label_ok) {
        return Err(format!(
            "drive.website_domains: {domain:?} is not a domain name"
        ));
    }
    Ok(d)
}

/// A listener's client identity: `direct`, or `proxy_protocol` with at least one trusted
/// proxy.
fn client_identity(
    key: &str,
    raw: &super::raw::ClientIdentity,
) -> Result<super::ClientIdentity, String> {
    let nets = raw
        .trusted_proxies
        .iter()
        .map(|s| s.parse().map_err(|e| format!("{key}.trusted_proxies: {e}")))
        .collect::<Result<Vec<_>, String>>()?;
    match raw.mode.as_str() {
        "direct" if nets.is_empty() => Ok(super::ClientIdentity::Direct),
        "direct" => Err(format!(
            "{key}: trusted_proxies belongs to mode = \"proxy_protocol\""
        )),
        "proxy_protocol" if nets.is_empty() => Err(format!(
            "{key}: mode = \"proxy_protocol\" needs trusted_proxies (the load balancers \
             allowed to connect)"
        )),
        "proxy_protocol" => Ok(super::ClientIdentity::ProxyProtocol(
            super::TrustedProxies::new(nets),
        )),
        other => Err(format!(
            "{key}: mode must be \"direct\" or \"proxy_protocol\", not {other:?}"
        )),
    }
}

/// `"HH:MM-HH:MM"` as minutes of the day; `""` is no window.
fn parse_window(s: &str) -> Result<Option<(u32, u32)>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let minute = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && t.trim().len() == 5).then_some(h * 60 + m)
    };
    let bad = || format!("update.window {s:?}: \"HH:MM-HH:MM\" (UTC), or \"\" for any time");
    let (from, to) = s.split_once('-').ok_or_else(bad)?;
    let (from, to) = (minute(from).ok_or_else(bad)?, minute(to).ok_or_else(bad)?);
    if from == to {
        return Err(format!(
            "update.window {s:?}: an empty window (use \"\" for any time)"
        ));
    }
    Ok(Some((from, to)))
}

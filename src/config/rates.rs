//! The rate and bandwidth values of the config, parsed once at load: request-count rules
//! (`[[drive.rate_limits]]`, §10.1: `"10r/m"`, a path glob, keyed by IP or user) and
//! bandwidths (`[default_quotas]` and the admin's per-user overrides, §10.2: `"4mb/s"`).
//! `limits::rate` counts requests against the rules; `limits::bandwidth` paces bodies.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::pubkey::PublicKey;

/// One `[[drive.rate_limits]]` entry as written. Unknown keys are an error here (a typo
/// would otherwise silently widen the rule).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub path: String,
    pub method: Option<String>,
    pub quota: String,
    pub key: String,
    pub burst: Option<u32>,
    #[serde(default)]
    pub whitelist: Vec<String>,
}

/// What a rule counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ip,
    User,
}

/// A validated request-count rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub glob: String,
    pub method: Option<String>,
    /// Requests per `per`.
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
    pub key: KeyKind,
    /// Keys (IP addresses or z32 user keys, as written) the rule never counts.
    pub whitelist: Vec<String>,
}

fn unit(u: &str) -> Option<Duration> {
    Some(Duration::from_secs(match u {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    }))
}

/// `<N>r/<s|m|h|d>`
pub fn parse_quota(q: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("invalid rate limit quota {q:?} (expected e.g. \"10r/m\")");
    let (n, u) = q.split_once("r/").ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    Ok((n, unit(u.trim()).ok_or_else(bad)?))
}

/// `<N><kb|mb|gb>/<s|m|h|d>` → bytes per second; `"unlimited"` → `None`.
pub fn parse_bandwidth(s: &str) -> Result<Option<f64>, String> {
    Bandwidth::parse(s).map(|b| b.bytes_per_sec)
}

/// A bandwidth as written (`"4mb/s"`, `"unlimited"`), with its parsed rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Bandwidth {
    /// The text as written; the admin API shows it back unchanged.
    pub text: String,
    /// Bytes per second; `None` is unlimited.
    pub bytes_per_sec: Option<f64>,
    /// Bytes of one unit of the text (`kb` = 1 KiB, `mb` = 1 MiB, `gb` = 1 GiB): a burst
    /// given as a count is a count of these.
    pub unit_bytes: f64,
}

impl Bandwidth {
    pub fn parse(s: &str) -> Result<Bandwidth, String> {
        if s == "unlimited" {
            return Ok(Bandwidth {
                text: s.to_string(),
                bytes_per_sec: None,
                unit_bytes: 1024.0,
            });
        }
        let bad = || format!("invalid bandwidth {s:?} (expected e.g. \"4mb/s\" or \"unlimited\")");
        let (amount, u) = s.split_once('/').ok_or_else(bad)?;
        let lower = amount.to_ascii_lowercase();
        let (n, mult) = if let Some(n) = lower.strip_suffix("kb") {
            (n, 1024.0)
        } else if let Some(n) = lower.strip_suffix("mb") {
            (n, 1024.0 * 1024.0)
        } else if let Some(n) = lower.strip_suffix("gb") {
            (n, 1024.0 * 1024.0 * 1024.0)
        } else {
            return Err(bad());
        };
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        if n == 0 || s.len() > 32 {
            return Err(bad());
        }
        let per = unit(u).ok_or_else(bad)?;
        Ok(Bandwidth {
            text: s.to_string(),
            bytes_per_sec: Some(n as f64 * mult / per.as_secs_f64()),
            unit_bytes: mult,
        })
    }
}

impl Rule {
    pub fn from_config(c: &RuleConfig) -> Result<Rule, String> {
        let (count, per) = parse_quota(&c.quota)?;
        let key = match c.key.as_str() {
            "ip" => KeyKind::Ip,
            "user" => KeyKind::User,
            other => {
                return Err(format!(
                    "rate limit key must be \"ip\" or \"user\", not {other:?}"
                ))
            }
        };
        for w in &c.whitelist {
            let ok = match key {
                KeyKind::Ip => w.parse::<IpAddr>().is_ok(),
                KeyKind::User => PublicKey::parse_z32(w).is_ok(),
            };
            if !ok {
                return Err(format!(
                    "rate limit whitelist entry {w:?} does not match key {:?}",
                    c.key
                ));
            }
        }
        if c.burst == Some(0) {
            return Err("rate limit burst must be at least 1".into());
        }
        if !c.path.starts_with('/') {
            return Err(format!("rate limit path {:?} must start with /", c.path));
        }
        Ok(Rule {
            glob: c.path.clone(),
            method: c.method.as_ref().map(|m| m.to_ascii_uppercase()),
            count,
            per,
            burst: c.burst.unwrap_or(count),
            key,
            whitelist: c.whitelist.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_and_bandwidth() {
        assert_eq!(parse_quota("10r/m").unwrap(), (10, Duration::from_secs(60)));
        assert!(parse_quota("0r/m").is_err());
        assert!(parse_quota("10kb/s").is_err());
        assert!(parse_quota("10r/w").is_err());
        assert_eq!(parse_bandwidth("1kb/s").unwrap(), Some(1024.0));
        assert_eq!(parse_bandwidth("unlimited").unwrap(), None);
        assert!(parse_bandwidth("10r/s").is_err());
        let c = |key: &str, wl: &[&str]| RuleConfig {
            path: "/x".into(),
            method: None,
            quota: "1r/s".into(),
            key: key.into(),
            burst: None,
            whitelist: wl.iter().map(|s| s.to_string()).collect(),
        };
        assert!(Rule::from_config(&c("ip", &["127.0.0.1"])).is_ok());
        assert!(Rule::from_config(&c("user", &["127.0.0.1"])).is_err());
        assert!(Rule::from_config(&c("host", &[])).is_err());
    }

    #[test]
    fn bandwidth_units() {
        let b = Bandwidth::parse("2MB/m").unwrap();
        assert_eq!(b.unit_bytes, 1024.0 * 1024.0);
        assert_eq!(b.bytes_per_sec, Some(2.0 * 1024.0 * 1024.0 / 60.0));
        assert_eq!(b.text, "2MB/m");
        assert_eq!(Bandwidth::parse("1gb/s").unwrap().unit_bytes, 1073741824.0);
        assert_eq!(Bandwidth::parse("unlimited").unwrap().bytes_per_sec, None);
    }
}

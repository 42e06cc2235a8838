//! Rate limits: request-count token buckets per client IP or per target user, selected by
//! method and path glob (`[[drive.rate_limits]]`, §10.1), and bandwidth buckets that slow
//! transfers down (`[default_quotas]`, §10.2). Pure apart from a mutex: `now` is passed in.
//! `http::mod` asks [`Limiter::check`] before dispatch and answers 429 with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::pubkey::PublicKey;

/// Buckets kept per limiter; beyond this, idle full buckets are dropped first.
const MAX_BUCKETS: usize = 20_000;

/// One `[[drive.rate_limits]]` entry. Unknown keys are an error here (a typo would
/// otherwise silently widen the rule).
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

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BandwidthConfig {
    pub rate_read: Option<String>,
    pub rate_write: Option<String>,
    pub rate_read_burst: Option<u64>,
    pub rate_write_burst: Option<u64>,
    pub unauthenticated_ip_rate_read: Option<String>,
}

/// What a rule counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ip,
    User,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub glob: String,
    pub method: Option<String>,
    /// Requests per `per`.
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
    pub key: KeyKind,
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
    if s == "unlimited" {
        return Ok(None);
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
    Ok(Some(n as f64 * mult / per.as_secs_f64()))
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

/// Config check for `config::Config::validate`.
pub fn validate(rules: &[RuleConfig], bw: &BandwidthConfig) -> Result<(), String> {
    for r in rules {
        Rule::from_config(r)?;
    }
    for v in [
        &bw.rate_read,
        &bw.rate_write,
        &bw.unauthenticated_ip_rate_read,
    ]
    .into_iter()
    .flatten()
    {
        parse_bandwidth(v)?;
    }
    Ok(())
}

/// Glob match: `*` and `?` stay within a segment, `**` crosses segments, `[..]` is a
/// character class (`!`/`^` negates), `{a,b}` alternatives.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if let Some(open) = pattern.find('{') {
        if let Some(close) = pattern[open..].find('}') {
            let close = open + close;
            return pattern[open + 1..close].split(',').any(|alt| {
                let p = format!("{}{alt}{}", &pattern[..open], &pattern[close + 1..]);
                glob_match(&p, text)
            });
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches(&p, &t)
}

fn matches(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') if p.get(1) == Some(&'*') => {
            let rest = &p[2..];
            (0..=t.len()).any(|i| matches(rest, &t[i..]))
        }
        Some('*') => {
            let rest = &p[1..];
            for i in 0..=t.len() {
                if matches(rest, &t[i..]) {
                    return true;
                }
                if t.get(i) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => t.first().is_some_and(|c| *c != '/') && matches(&p[1..], &t[1..]),
        Some('[') => {
            let Some(end) = p.iter().position(|c| *c == ']') else {
                return t.first() == Some(&'[') && matches(&p[1..], &t[1..]);
            };
            let Some(c) = t.first() else { return false };
            let mut class = &p[1..end];
            let negate = matches!(class.first(), Some('!') | Some('^'));
            if negate {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= *c && *c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == *c;
                    i += 1;
                }
            }
            hit != negate && matches(&p[end + 1..], &t[1..])
        }
        Some(c) => t.first() == Some(c) && matches(&p[1..], &t[1..]),
    }
}

/// A token bucket: `tokens` refill at `rate` per second up to `cap`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: f64, cap: f64) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(cap);
        self.at = now;
    }
}

/// The request to judge: who sent it and what it is for.
pub struct Request<'a> {
    pub method: &'a str,
    /// The storage path for `/storage/` requests, else the URL path.
    pub path: &'a str,
    pub ip: IpAddr,
    pub tenant: Option<PublicKey>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// 429 with `Retry-After` seconds.
    Limited(u64),
    /// A `user` rule matched but the request names no user.
    NoUser,
}

/// All request-count rules with their buckets.
pub struct Limiter {
    rules: Vec<Rule>,
    buckets: Mutex<HashMap<(usize, String), Bucket>>,
}

impl Limiter {
    /// Rules are checked shorter time units first.
    pub fn new(mut rules: Vec<Rule>) -> Limiter {
        rules.sort_by_key(|r| r.per);
        Limiter {
            rules,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn from_config(rules: &[RuleConfig]) -> Result<Limiter, String> {
        Ok(Limiter::new(
            rules
                .iter()
                .map(Rule::from_config)
                .collect::<Result<_, _>>()?,
        ))
    }

    pub fn check(&self, r: &Request<'_>, now: Instant) -> Verdict {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.method.as_deref().is_some_and(|m| m != r.method)
                || !glob_match(&rule.glob, r.path)
            {
                continue;
            }
            let key = match rule.key {
                KeyKind::Ip => r.ip.to_string(),
                KeyKind::User => match r.tenant {
                    Some(t) => t.to_z32(),
                    None => return Verdict::NoUser,
                },
            };
            if rule.whitelist.contains(&key) {
                continue;
            }
            let rate = f64::from(rule.count) / rule.per.as_secs_f64();
            let cap = f64::from(rule.burst);
            if buckets.len() >= MAX_BUCKETS {
                buckets.retain(|_, b| {
                    now.saturating_duration_since(b.at) < Duration::from_secs(86_400)
                        && b.tokens < cap
                });
                if buckets.len() >= MAX_BUCKETS {
                    buckets.clear();
                }
            }
            let b = buckets.entry((i, key)).or_insert(Bucket {
                tokens: cap,
                at: now,
            });
            b.refill(now, rate, cap);
            if b.tokens < 1.0 {
                let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0);
                return Verdict::Limited(wait as u64);
            }
            b.tokens -= 1.0;
        }
        Verdict::Allow
    }
}

/// Bandwidth buckets (bytes), one per user or IP: a transfer takes what it needs and is
/// told how long to wait so the average stays under the rate. Debt model: a chunk is never
/// refused, the next one waits.
pub struct Throttle {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl Throttle {
    /// Takes `bytes` (metered in 1 KiB steps) from `key`'s bucket; returns the delay owed.
    pub fn take(&self, key: &str, bytes: usize, rate: f64, burst: f64, now: Instant) -> Duration {
        let cost = (bytes.div_ceil(1024) * 1024) as f64;
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_BUCKETS {
            map.clear();
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.refill(now, rate, burst);
        b.tokens -= cost;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "/signup_tokens/*",
            "/signup_tokens/ABCD-EFGH-JKMN"
        ));
        assert!(!glob_match("/signup_tokens/*", "/signup_tokens/a/b"));
        assert!(glob_match("/pub/**", "/pub/a/b/c.txt"));
        assert!(glob_match("/pub/**/c.txt", "/pub/a/b/c.txt"));
        assert!(glob_match("/events/", "/events/"));
        assert!(!glob_match("/events/", "/events-stream"));
        assert!(glob_match("/pub/file?.txt", "/pub/file1.txt"));
        assert!(glob_match("/pub/[a-c]x", "/pub/bx"));
        assert!(!glob_match("/pub/[!a-c]x", "/pub/bx"));
        assert!(glob_match("/{pub,priv}/x", "/priv/x"));
        assert!(!glob_match("/{pub,priv}/x", "/other/x"));
    }

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
    fn buckets_refill_and_whitelist() {
        let rule = |key: &str, wl: Vec<String>| {
            Rule::from_config(&RuleConfig {
                path: "/events/".into(),
                method: Some("get".into()),
                quota: "1r/m".into(),
                key: key.into(),
                burst: None,
                whitelist: wl,
            })
            .unwrap()
        };
        let l = Limiter::new(vec![rule("ip", vec![])]);
        let t0 = Instant::now();
        let req = Request {
            method: "GET",
            path: "/events/",
            ip: "10.0.0.1".parse().unwrap(),
            tenant: None,
        };
        assert_eq!(l.check(&req, t0), Verdict::Allow);
        assert_eq!(l.check(&req, t0), Verdict::Limited(60));
        assert_eq!(
            l.check(&req, t0 + Duration::from_secs(30)),
            Verdict::Limited(30)
        );
        assert_eq!(l.check(&req, t0 + Duration::from_secs(60)), Verdict::Allow);
        let post = Request {
            method: "POST",
            ..req
        };
        assert_eq!(l.check(&post, t0), Verdict::Allow);
        let pk = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
        let l = Limiter::new(vec![rule("user", vec![pk.into()])]);
        let anon = Request {
            method: "GET",
            path: "/events/",
            ip: "10.0.0.1".parse().unwrap(),
            tenant: None,
        };
        assert_eq!(l.check(&anon, t0), Verdict::NoUser);
        let white = Request {
            tenant: Some(PublicKey::parse_z32(pk).unwrap()),
            ..anon
        };
        for _ in 0..5 {
            assert_eq!(l.check(&white, t0), Verdict::Allow);
        }
    }

    #[test]
    fn throttle_owes_time() {
        let t = Throttle::default();
        let now = Instant::now();
        assert_eq!(t.take("u", 1024, 1024.0, 1024.0, now), Duration::ZERO);
        assert_eq!(
            t.take("u", 2048, 1024.0, 1024.0, now),
            Duration::from_secs(2)
        );
        assert_eq!(t.take("v", 1, 1024.0, 1024.0, now), Duration::ZERO);
    }
}

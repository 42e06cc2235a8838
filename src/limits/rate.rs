//! Request-count limits (§10.1): token buckets per client IP or per target user, selected by
//! method and path glob from the rules the config validated. Pure apart from a mutex: `now`
//! is passed in. `http::dispatch` asks [`Limiter::check`] after routing and answers 429 with
//! `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{KeyKind, Rule};
use crate::pubkey::PublicKey;

/// Buckets kept per limiter; beyond this, buckets that are full again are dropped, and
/// keys that still find no room share [`OVERFLOW`]'s bucket.
pub(crate) const MAX_BUCKETS: usize = 20_000;

/// The key of the shared bucket for keys that found no room (no IP or z32 key looks so).
pub(crate) const OVERFLOW: &str = "overflow";

/// A rule's refill rate (requests per second) and burst.
fn rate_and_cap(rule: &Rule) -> (f64, f64) {
    (
        f64::from(rule.count) / rule.per.as_secs_f64(),
        f64::from(rule.burst),
    )
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
pub(crate) struct Bucket {
    pub(crate) tokens: f64,
    pub(crate) at: Instant,
}

impl Bucket {
    pub(crate) fn refill(&mut self, now: Instant, rate: f64, cap: f64) {
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
    /// When the table was last swept for full buckets.
    swept: Mutex<Option<Instant>>,
}

/// Shortest time between two sweeps of a full table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Limiter {
    /// Rules are checked shorter time units first.
    pub fn new(mut rules: Vec<Rule>) -> Limiter {
        rules.sort_by_key(|r| r.per);
        Limiter {
            rules,
            buckets: Mutex::new(HashMap::new()),
            swept: Mutex::new(None),
        }
    }

    /// Drops the buckets that are full again: a full bucket is the same as a new one, so
    /// forgetting it weakens no limit. Buckets still owing stay, however many there are.
    fn make_room(&self, buckets: &mut HashMap<(usize, String), Bucket>, now: Instant) {
        buckets.retain(|(i, _), b| {
            let (rate, cap) = rate_and_cap(&self.rules[*i]);
            let mut after = *b;
            after.refill(now, rate, cap);
            after.tokens < cap
        });
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
            let (rate, cap) = rate_and_cap(rule);
            let newcomer = buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&(i, key.clone()));
            if newcomer {
                // At most one sweep a second: under a flood of newcomers each would be
                // 20,000 steps.
                let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
                if swept.is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY) {
                    *swept = Some(now);
                    self.make_room(&mut buckets, now);
                }
            }
            // With no room left, newcomers share one bucket per rule: pressure on the
            // table limits them together and never resets anyone's limit.
            let key = if newcomer && buckets.len() >= MAX_BUCKETS {
                OVERFLOW.to_string()
            } else {
                key
            };
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
    fn buckets_refill_and_whitelist() {
        let rule = |key: &str, wl: Vec<String>| {
            Rule::from_config(&crate::config::rates::RuleConfig {
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
    fn a_full_table_never_resets_a_limit() {
        let rule = Rule::from_config(&crate::config::rates::RuleConfig {
            path: "/pub/**".into(),
            method: None,
            quota: "1r/m".into(),
            key: "ip".into(),
            burst: None,
            whitelist: vec![],
        })
        .unwrap();
        let l = Limiter::new(vec![rule]);
        let t0 = Instant::now();
        let req = |ip: [u8; 4]| Request {
            method: "GET",
            path: "/pub/x",
            ip: ip.into(),
            tenant: None,
        };
        let victim = [10, 0, 0, 1];
        assert_eq!(l.check(&req(victim), t0), Verdict::Allow);
        assert_eq!(l.check(&req(victim), t0), Verdict::Limited(60));
        // Fill the table with other addresses' exhausted buckets, and then some.
        for n in 0..MAX_BUCKETS as u32 + 10 {
            let [_, b, c, d] = n.to_be_bytes();
            let _ = l.check(&req([11, b, c, d]), t0);
        }
        assert_eq!(l.check(&req(victim), t0), Verdict::Limited(60));
        // Newcomers beyond the table share one bucket: the second is already limited.
        let late = [
            l.check(&req([12, 0, 0, 1]), t0),
            l.check(&req([12, 0, 0, 2]), t0),
        ];
        assert!(late.contains(&Verdict::Limited(60)), "{late:?}");
        // A minute later every bucket is full again: the sweep makes room for everyone.
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(l.check(&req([12, 0, 0, 3]), t1), Verdict::Allow);
        assert_eq!(l.check(&req(victim), t1), Verdict::Allow);
    }
}

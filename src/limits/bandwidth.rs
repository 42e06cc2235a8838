//! Bandwidth limits (§10.2): per signed-in user for reads and writes, per client IP for
//! anonymous reads. Transfers are slowed, never refused: each body chunk takes its size
//! from the caller's bucket in [`Throttle`] and waits off any debt. Rates come from the
//! user's admin overrides, else the config's `[default_quotas]`. `http::bandwidth` wraps
//! response bodies in [`pace`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::rate::{Bucket, MAX_BUCKETS, OVERFLOW};
use crate::config::{Bandwidth, DefaultBandwidth};
use crate::pubkey::PublicKey;
use crate::store::QuotaOverrides;

/// One caller's budget for one direction.
#[derive(Clone)]
pub struct Budget {
    key: String,
    /// bytes per second
    rate: f64,
    /// bytes that may pass at once
    burst: f64,
}

/// The budget for `key` at `rate` (unlimited or absent: none).
fn budget(key: String, rate: Option<&Bandwidth>, burst_units: Option<u64>) -> Option<Budget> {
    let rate_bw = rate?;
    let rate = rate_bw.bytes_per_sec?;
    // Default burst: one second's worth, at least one 1 KiB cell.
    let burst = match burst_units {
        Some(n) => n as f64 * rate_bw.unit_bytes,
        None => rate.max(1024.0),
    };
    Some(Budget { key, rate, burst })
}

/// A rate the admin set for one user (validated when set), else the default.
fn rate(over: &Option<String>, default: &Option<Bandwidth>) -> Option<Bandwidth> {
    match over {
        Some(s) => Bandwidth::parse(s).ok(),
        None => default.clone(),
    }
}

/// The read budget of a request: the signed-in user's (with their overrides), else the
/// client IP's.
pub fn read_budget(
    d: &DefaultBandwidth,
    user: Option<(&PublicKey, &QuotaOverrides)>,
    ip: Option<IpAddr>,
) -> Option<Budget> {
    match user {
        Some((u, q)) => {
            let burst = q.rate_read_burst.or(d.rate_read_burst);
            budget(
                format!("r:{u}"),
                rate(&q.rate_read, &d.rate_read).as_ref(),
                burst,
            )
        }
        None => ip.and_then(|ip| {
            budget(
                format!("ip:{ip}"),
                d.unauthenticated_ip_rate_read.as_ref(),
                None,
            )
        }),
    }
}

/// The write budget of a signed-in user.
pub fn write_budget(d: &DefaultBandwidth, user: &PublicKey, q: &QuotaOverrides) -> Option<Budget> {
    let burst = q.rate_write_burst.or(d.rate_write_burst);
    budget(
        format!("w:{user}"),
        rate(&q.rate_write, &d.rate_write).as_ref(),
        burst,
    )
}

/// Waits as long as `n` more bytes owe under `b`.
pub async fn pace(throttle: &Throttle, b: &Budget, n: usize) {
    let wait = throttle.take(&b.key, n, b.rate, b.burst, Instant::now());
    if wait > Duration::ZERO {
        smol::Timer::after(wait).await;
    }
}

/// Bandwidth buckets (bytes), one per user or IP: a transfer takes what it needs and is
/// told how long to wait so the average stays under the rate. Debt model: a chunk is never
/// refused, the next one waits.
pub struct Throttle {
    /// Each key's bucket with the rate and burst it was last taken at.
    buckets: Mutex<HashMap<String, (Bucket, f64, f64)>>,
    /// When the table was last swept (at most once a second, as for request rates).
    swept: Mutex<Option<Instant>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            buckets: Mutex::new(HashMap::new()),
            swept: Mutex::new(None),
        }
    }
}

impl Throttle {
    /// Takes `bytes` (metered in 1 KiB steps) from `key`'s bucket; returns the delay owed.
    pub fn take(&self, key: &str, bytes: usize, rate: f64, burst: f64, now: Instant) -> Duration {
        let cost = (bytes.div_ceil(1024) * 1024) as f64;
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let newcomer = map.len() >= MAX_BUCKETS && !map.contains_key(key);
        if newcomer {
            // At most one sweep a second. A bucket that is full again is the same as a new
            // one: forgetting it weakens nothing. Keys that still find no room share one
            // bucket, so pressure on the table slows the newcomers down together instead
            // of freeing everyone.
            let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            if swept.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
                *swept = Some(now);
                map.retain(|_, (b, rate, burst)| {
                    let mut after = *b;
                    after.refill(now, *rate, *burst);
                    after.tokens < *burst
                });
            }
        }
        let key = if newcomer && map.len() >= MAX_BUCKETS {
            OVERFLOW
        } else {
            key
        };
        let (b, r, c) = map.entry(key.to_string()).or_insert((
            Bucket {
                tokens: burst,
                at: now,
            },
            rate,
            burst,
        ));
        (*r, *c) = (rate, burst);
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

    fn bw(s: &str) -> Option<Bandwidth> {
        Some(Bandwidth::parse(s).unwrap())
    }

    #[test]
    fn budgets_from_strings() {
        let b = budget("k".into(), bw("1kb/s").as_ref(), None).unwrap();
        assert_eq!((b.rate, b.burst), (1024.0, 1024.0));
        let b = budget("k".into(), bw("10mb/m").as_ref(), Some(4)).unwrap();
        assert_eq!(b.burst, 4.0 * 1024.0 * 1024.0);
        assert!(budget("k".into(), bw("unlimited").as_ref(), None).is_none());
        assert!(budget("k".into(), None, None).is_none());
    }

    #[test]
    fn overrides_win_over_defaults() {
        let d = DefaultBandwidth {
            rate_read: bw("1kb/s"),
            ..Default::default()
        };
        let pk =
            PublicKey::parse_z32("8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo").unwrap();
        let none = QuotaOverrides::default();
        assert_eq!(
            read_budget(&d, Some((&pk, &none)), None).unwrap().rate,
            1024.0
        );
        let q = QuotaOverrides {
            rate_read: Some("unlimited".into()),
            ..Default::default()
        };
        assert!(read_budget(&d, Some((&pk, &q)), None).is_none());
        assert!(read_budget(&d, None, Some([10, 0, 0, 1].into())).is_none());
        assert!(write_budget(&d, &pk, &none).is_none());
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

    #[test]
    fn a_full_table_forgives_no_debt() {
        let t = Throttle::default();
        let now = Instant::now();
        assert_eq!(
            t.take("victim", 4096, 1024.0, 1024.0, now),
            Duration::from_secs(3)
        );
        for n in 0..MAX_BUCKETS + 10 {
            t.take(&format!("k{n}"), 4096, 1024.0, 1024.0, now);
        }
        // Still owes its 3 s, plus 1 s for this KiB.
        assert_eq!(
            t.take("victim", 1024, 1024.0, 1024.0, now),
            Duration::from_secs(4)
        );
    }
}

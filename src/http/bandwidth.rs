//! Bandwidth limits (§10.2): per signed-in user for reads and writes, per client IP for
//! anonymous reads. Transfers are slowed, never refused: each body chunk takes its size
//! from the caller's bucket (`ratelimit::Throttle`) and waits off any debt. Rates come from
//! the user's admin overrides, else `[default_quotas]`.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body::Body as _;
use smol::future::poll_fn;

use super::body::Body;
use super::error::ApiError;
use super::App;
use crate::pubkey::PublicKey;
use crate::ratelimit::{parse_bandwidth, Throttle};

/// One caller's budget for one direction.
#[derive(Clone)]
pub struct Budget {
    key: String,
    /// bytes per second
    rate: f64,
    /// bytes that may pass at once
    burst: f64,
}

/// Bytes of one unit of a bandwidth string (`kb` = 1 KiB, `mb` = 1 MiB, `gb` = 1 GiB).
fn unit_bytes(rate: &str) -> f64 {
    let amount = rate.split('/').next().unwrap_or("").to_ascii_lowercase();
    if amount.ends_with("gb") {
        1024.0 * 1024.0 * 1024.0
    } else if amount.ends_with("mb") {
        1024.0 * 1024.0
    } else {
        1024.0
    }
}

fn budget(key: String, rate: Option<&str>, burst_units: Option<u64>) -> Option<Budget> {
    let rate_str = rate?;
    let rate = parse_bandwidth(rate_str).ok()??;
    // Default burst: one second's worth, at least one 1 KiB cell.
    let burst = match burst_units {
        Some(n) => n as f64 * unit_bytes(rate_str),
        None => rate.max(1024.0),
    };
    Some(Budget { key, rate, burst })
}

/// The read budget of a request: the signed-in user's, else the client IP's.
pub fn read_budget(
    app: &App,
    user: Option<&PublicKey>,
    ip: Option<IpAddr>,
) -> Result<Option<Budget>, ApiError> {
    let d = &app.config.default_quotas;
    match user {
        Some(u) => {
            let q = app.store.quota_overrides(u)?;
            let rate = q.rate_read.as_deref().or(d.rate_read.as_deref());
            let burst = q.rate_read_burst.or(d.rate_read_burst);
            Ok(budget(format!("r:{u}"), rate, burst))
        }
        None => Ok(ip.and_then(|ip| {
            budget(
                format!("ip:{ip}"),
                d.unauthenticated_ip_rate_read.as_deref(),
                None,
            )
        })),
    }
}

/// The write budget of a signed-in user.
pub fn write_budget(app: &App, user: &PublicKey) -> Result<Option<Budget>, ApiError> {
    let d = &app.config.default_quotas;
    let q = app.store.quota_overrides(user)?;
    let rate = q.rate_write.as_deref().or(d.rate_write.as_deref());
    let burst = q.rate_write_burst.or(d.rate_write_burst);
    Ok(budget(format!("w:{user}"), rate, burst))
}

/// Waits as long as `n` more bytes owe under `b`.
pub async fn pace(throttle: &Throttle, b: &Budget, n: usize) {
    let wait = throttle.take(&b.key, n, b.rate, b.burst, Instant::now());
    if wait > Duration::ZERO {
        smol::Timer::after(wait).await;
    }
}

/// A response body whose chunks are paced by `b` (the length header stays as set).
pub fn paced(body: Body, throttle: Arc<Throttle>, b: Budget) -> Body {
    let stream = smol::stream::unfold((body, throttle, b), |(mut body, throttle, b)| async move {
        let frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await?;
        match frame.map(|f| f.into_data()) {
            Ok(Ok(data)) => {
                pace(&throttle, &b, data.len()).await;
                Some((Ok(data), (body, throttle, b)))
            }
            // Trailers never occur in our bodies; end the stream if one does.
            Ok(Err(_)) => None,
            Err(e) => Some((Err(e), (body, throttle, b))),
        }
    });
    Body::Stream(Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_from_strings() {
        let b = budget("k".into(), Some("1kb/s"), None).unwrap();
        assert_eq!((b.rate, b.burst), (1024.0, 1024.0));
        let b = budget("k".into(), Some("10mb/m"), Some(4)).unwrap();
        assert_eq!(b.burst, 4.0 * 1024.0 * 1024.0);
        assert!(budget("k".into(), Some("unlimited"), None).is_none());
        assert!(budget("k".into(), None, None).is_none());
    }

    #[test]
    fn paced_body_takes_its_time() {
        smol::block_on(async {
            let t = Arc::new(Throttle::default());
            let b = budget("k".into(), Some("100kb/s"), None).unwrap();
            let body = paced(Body::from(vec![0u8; 150 * 1024]), t, b);
            let start = Instant::now();
            let mut body = body;
            let mut n = 0;
            while let Some(f) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                n += f.unwrap().into_data().unwrap().len();
            }
            assert_eq!(n, 150 * 1024);
            assert!(start.elapsed() >= Duration::from_millis(400));
        });
    }
}

//! Paced response bodies: a body whose chunks wait off the caller's bandwidth debt
//! ([`crate::limits::bandwidth`] decides the budget and keeps the buckets).

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use http_body::Body as _;
use smol::future::poll_fn;

use super::body::Body;
use super::response::ApiError;
use super::App;
use crate::limits::bandwidth::{self, pace, Budget, Throttle};
use crate::pubkey::PublicKey;

/// The read budget of a request: the signed-in user's, else the client IP's.
pub fn read_budget(
    app: &App,
    user: Option<&PublicKey>,
    ip: Option<IpAddr>,
) -> Result<Option<Budget>, ApiError> {
    let d = &app.config.bandwidth;
    Ok(match user {
        Some(u) => bandwidth::read_budget(d, Some((u, &app.store.quota_overrides(u)?)), ip),
        None => bandwidth::read_budget(d, None, ip),
    })
}

/// The write budget of a signed-in user.
pub fn write_budget(app: &App, user: &PublicKey) -> Result<Option<Budget>, ApiError> {
    let q = app.store.quota_overrides(user)?;
    Ok(bandwidth::write_budget(&app.config.bandwidth, user, &q))
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
    use std::time::{Duration, Instant};

    #[test]
    fn paced_body_takes_its_time() {
        smol::block_on(async {
            let t = Arc::new(Throttle::default());
            let d = crate::config::DefaultBandwidth {
                unauthenticated_ip_rate_read: Some(
                    crate::config::Bandwidth::parse("100kb/s").unwrap(),
                ),
                ..Default::default()
            };
            let b = bandwidth::read_budget(&d, None, Some([10, 0, 0, 1].into())).unwrap();
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

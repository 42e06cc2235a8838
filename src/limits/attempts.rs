//! Failed password attempts per client address: after [`MAX_FAILURES`] wrong passwords
//! within [`WINDOW`], an address is refused (429) until the window has passed since its
//! last failure. The table is bounded; when it is full of recent failures, addresses it
//! has no room for are refused too (pressure errs towards refusing, never forgetting).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords an address may send within [`WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most.
const MAX_ADDRESSES: usize = 4096;

#[derive(Default)]
pub struct Attempts {
    /// Failures in the current window and the time of the last one.
    map: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Attempts {
    /// `Err(seconds)` while `ip` must wait before trying again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip) {
            Some(&(_, last)) if now.saturating_duration_since(last) >= WINDOW => {
                map.remove(&ip);
                Ok(())
            }
            Some(&(n, last)) if n >= MAX_FAILURES => {
                let left = WINDOW.saturating_sub(now.saturating_duration_since(last));
                Err(left.as_secs().max(1))
            }
            Some(_) => Ok(()),
            None if map.len() >= MAX_ADDRESSES => {
                map.retain(|_, (_, last)| now.saturating_duration_since(*last) < WINDOW);
                if map.len() >= MAX_ADDRESSES {
                    Err(WINDOW.as_secs())
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Records a wrong password from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            return;
        }
        let e = map.entry(ip).or_insert((0, now));
        *e = (e.0.saturating_add(1), now);
    }

    /// A right password clears the address's record.
    pub fn succeeded(&self, ip: IpAddr) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_an_address_for_a_minute() {
        let a = Attempts::default();
        let (ip, other): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(a.check(ip, t0), Ok(()));
            a.failed(ip, t0);
        }
        assert_eq!(a.check(ip, t0), Err(60));
        assert_eq!(a.check(other, t0), Ok(()));
        assert_eq!(a.check(ip, t0 + Duration::from_secs(30)), Err(30));
        assert_eq!(a.check(ip, t0 + WINDOW), Ok(()));
        a.failed(other, t0);
        a.succeeded(other);
        assert!(a.map.lock().unwrap().get(&other).is_none());
    }
}

//! How long the server waits for a request body: a client that sends nothing for `idle`, or
//! whose body falls below `min_rate` bytes per second after the first `idle` of waiting,
//! loses its connection. Only time spent waiting for the client counts; time the server
//! itself spends (writing to disk, pacing a bandwidth budget) does not.

use std::time::Duration;

pub use crate::config::BodyPace;

/// How much longer the server may wait for the next bytes of a body under `pace`, given
/// `received` bytes so far and `waited` spent waiting for them. Zero: the client is too slow.
pub fn wait_allowed(pace: &BodyPace, received: u64, waited: Duration) -> Duration {
    if pace.min_rate == 0 {
        return pace.idle;
    }
    // Every byte received earns 1/min_rate seconds of waiting on top of the grace.
    let earned = pace.idle.as_secs_f64() + received as f64 / pace.min_rate as f64;
    let left = (earned - waited.as_secs_f64()).max(0.0);
    Duration::from_secs_f64(left.min(1e9)).min(pace.idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: BodyPace = BodyPace {
        idle: Duration::from_secs(10),
        min_rate: 1000,
    };

    #[test]
    fn silence_is_allowed_for_idle_at_most() {
        assert_eq!(
            wait_allowed(&PACE, 0, Duration::ZERO),
            Duration::from_secs(10)
        );
        // a fast big body still waits at most `idle` for its next bytes
        assert_eq!(
            wait_allowed(&PACE, 1 << 30, Duration::from_secs(1)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn a_trickle_runs_out_of_time() {
        // one byte a second: after the grace, 10 s of waiting earned 10 ms more
        let left = wait_allowed(&PACE, 10, Duration::from_secs(10));
        assert!(left <= Duration::from_millis(11), "{left:?}");
        assert_eq!(
            wait_allowed(&PACE, 20, Duration::from_secs(20)),
            Duration::ZERO
        );
        // at the minimum rate, the allowance never runs out
        assert_eq!(
            wait_allowed(&PACE, 20_000, Duration::from_secs(20)),
            Duration::from_secs(10)
        );
        assert_eq!(
            wait_allowed(
                &BodyPace {
                    min_rate: 0,
                    ..PACE
                },
                0,
                Duration::from_secs(999)
            ),
            Duration::from_secs(10)
        );
    }
}

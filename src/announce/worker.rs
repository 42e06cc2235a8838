//! What the announce workers share: the backoff between failed attempts, and the small
//! JSON state files (`announce.json`, `upnp.json`, `mdns.json`) they leave in the data
//! directory for `pubky-edge info` and `status`.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Exponential backoff between failed publishes: `min`, doubling, capped at `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    min.saturating_mul(factor).min(max)
}

/// Writes a small JSON state file atomically (best effort: it is informational).
pub fn save_json<T: Serialize>(data_dir: &Path, name: &str, value: &T) {
    let path = data_dir.join(name);
    let tmp = path.with_extension("json.tmp");
    let Ok(text) = serde_json::to_string_pretty(value) else {
        return;
    };
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// Reads a state file written by [`save_json`]; missing or unreadable is `None`.
pub fn load_json<T: DeserializeOwned>(data_dir: &Path, name: &str) -> Option<T> {
    let text = std::fs::read_to_string(data_dir.join(name)).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, min, max), Duration::from_secs(1));
        assert_eq!(backoff(2, min, max), Duration::from_secs(2));
        assert_eq!(backoff(5, min, max), Duration::from_secs(16));
        assert_eq!(backoff(7, min, max), max);
        assert_eq!(backoff(u32::MAX, min, max), max);
    }
}

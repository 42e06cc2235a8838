//! Wall-clock readings for the HTTP layer. Pure modules never read the clock: they take
//! `now` as a parameter, and handlers pass these values in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (entry and event timestamps).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (grants, sessions, tokens).
pub fn now_secs() -> u64 {
    now_micros() / 1_000_000
}

/// A stored microsecond timestamp as a `SystemTime`.
pub fn system_time(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

/// RFC 3339 UTC (`2024-01-02T03:04:05Z`) for a Unix time in seconds.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), valid for all u64 seconds we store.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A Pubky timestamp in its text form (13 characters of Crockford base32 over the 8
/// big-endian bytes of its microseconds; case-insensitive, `O` read as 0 and `I`/`L` as
/// 1): the microseconds, or `None` when it is not one.
pub fn parse_timestamp(s: &str) -> Option<u64> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    if s.len() != 13 {
        return None;
    }
    let mut bits: u128 = 0;
    for c in s.bytes() {
        let c = match c.to_ascii_uppercase() {
            b'O' => b'0',
            b'I' | b'L' => b'1',
            c => c,
        };
        let v = ALPHABET.iter().position(|&a| a == c)?;
        bits = (bits << 5) | v as u128;
    }
    // 65 bits: the last one is padding, and must be zero in a canonical encoding.
    if bits & 1 != 0 {
        return None;
    }
    u64::try_from(bits >> 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    /// Vectors from the encoding pubky-timestamp 0.4 uses (Crockford base32 of the
    /// big-endian bytes).
    #[test]
    fn pubky_timestamps() {
        assert_eq!(
            parse_timestamp("0032GNGJACG00"),
            Some(1_733_200_000_000_000)
        );
        assert_eq!(
            parse_timestamp("0034A074QH140"),
            Some(1_764_720_000_123_456)
        );
        assert_eq!(
            parse_timestamp("0034a074qh140"),
            Some(1_764_720_000_123_456)
        );
        assert_eq!(parse_timestamp("0000000000000"), Some(0));
        assert_eq!(parse_timestamp("ZZZZZZZZZZZZY"), Some(u64::MAX));
        assert_eq!(parse_timestamp("ZZZZZZZZZZZZZ"), None, "a padding bit set");
        assert_eq!(parse_timestamp("0032GNGJACG0"), None);
        assert_eq!(
            parse_timestamp("0032GNGJACGU0"),
            None,
            "U is not in the alphabet"
        );
    }
}

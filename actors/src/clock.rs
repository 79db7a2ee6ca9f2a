//! Wall-clock helpers and the bound on durations: a leaf module (it imports nothing of the
//! crate), so that the pure state machines and the actors can share it without importing each
//! other.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest duration any policy or breaker knob may take (7 days): longer is a unit mistake, and
/// it keeps every `Instant` arithmetic far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Converts a monotonic instant to Unix milliseconds, relative to `now`.
pub(crate) fn instant_to_unix_ms(t: Instant, now: Instant) -> u64 {
    let base = unix_ms_now();
    if t >= now {
        base.saturating_add((t - now).as_millis() as u64)
    } else {
        base.saturating_sub((now - t).as_millis() as u64)
    }
}

/// Converts Unix milliseconds to a monotonic instant, relative to `now`.
pub(crate) fn unix_ms_to_instant(ms: u64, now: Instant) -> Instant {
    let base = unix_ms_now();
    if ms >= base {
        // A stored time comes from disk or an import file: never trust it not to overflow.
        now.checked_add(Duration::from_millis(ms - base)).unwrap_or(now)
    } else {
        now.checked_sub(Duration::from_millis(base - ms)).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_conversion_round_trips_within_a_millisecond_or_two() {
        let now = Instant::now();
        let later = now + Duration::from_secs(42);
        let ms = instant_to_unix_ms(later, now);
        let back = unix_ms_to_instant(ms, now);
        let diff = if back > later { back - later } else { later - back };
        assert!(diff < Duration::from_millis(50), "{diff:?}");
    }
}

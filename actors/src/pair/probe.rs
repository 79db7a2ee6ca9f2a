//! When a pair probes its token next. Pure: the pair actor feeds it what it knows.
//!
//! - Healthy (its last token offered a free slot), or never offering the capability: every
//!   `token_refresh`.
//! - Its orchestrator answered but reported no free slot: every `token_retry`, since its
//!   figure caps the pair's concurrency limit until a token shows room again.
//! - Its probes fail (connect refused, time-out, an error status, a bad token): `token_retry`
//!   doubling with each failure in a row, up to `token_retry_max`, so 10,000 unreachable
//!   orchestrators do not cost 10,000 probes a second. The first successful probe ends it.
//!
//! Every delay gets a random factor in [0.8, 1.2), so pairs that started together spread out.

use std::time::Duration;

/// The probe cadences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cadence {
    /// While healthy.
    pub(crate) refresh: Duration,
    /// While the orchestrator reports no free slot, and the first retry after a failure.
    pub(crate) retry: Duration,
    /// Longest wait between failing probes.
    pub(crate) retry_max: Duration,
}

/// What the last probes said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LastProbe {
    /// A token with a free slot, or a pair that never offered the capability.
    Healthy,
    /// A token without a free slot.
    Full,
    /// This many failures in a row.
    Failed(u32),
}

/// The delay before the next probe, before jitter.
pub(crate) fn next_delay(c: Cadence, last: LastProbe) -> Duration {
    let retry = c.retry.min(c.refresh);
    match last {
        LastProbe::Healthy => c.refresh,
        LastProbe::Full => retry,
        LastProbe::Failed(n) => {
            let doublings = n.saturating_sub(1).min(20);
            retry.saturating_mul(1 << doublings).min(c.retry_max.max(retry))
        }
    }
}

/// `delay` with a random factor in [0.8, 1.2) (`u` uniform in [0, 1)).
pub(crate) fn jittered(delay: Duration, u: f64) -> Duration {
    delay.mul_f64(0.8 + 0.4 * u.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Cadence =
        Cadence { refresh: Duration::from_secs(10), retry: Duration::from_secs(1), retry_max: Duration::from_secs(30) };

    #[test]
    fn failures_back_off_doubling_up_to_the_cap() {
        let s = |n| next_delay(C, LastProbe::Failed(n)).as_secs();
        assert_eq!([s(1), s(2), s(3), s(4), s(5), s(6), s(7), s(60)], [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(next_delay(C, LastProbe::Healthy), Duration::from_secs(10));
        assert_eq!(next_delay(C, LastProbe::Full), Duration::from_secs(1));
        assert_eq!(next_delay(C, LastProbe::Failed(u32::MAX)), Duration::from_secs(30), "no overflow");
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let d = Duration::from_secs(10);
        assert_eq!(jittered(d, 0.0), Duration::from_secs(8));
        assert!(jittered(d, 0.999_999) < Duration::from_secs(12));
    }
}

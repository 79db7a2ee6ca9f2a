//! When a pair probes its token next. Pure: the pair actor feeds it what it knows.
//!
//! - Healthy (its last token offered a free slot), or never offering the capability: every
//!   `token_refresh`.
//! - Its orchestrator answered but reported no free slot: every `token_retry`, since its
//!   figure caps the pair's concurrency limit until a token shows room again.
//! - Its probes fail (connect refused, time-out, an error status, a bad token): `token_retry`
//!   doubling with each failure in a row, up to a cap, so 10,000 unreachable orchestrators do
//!   not cost 10,000 probes a second. The first successful probe ends it.
//!
//! The cap is `token_retry_max`, but no more than keeping the probes of everything failing at
//! once within [`RETRY_RATE`] a second needs, and at least twice `token_retry` ([`retry_cap`]):
//! a few orchestrators down are asked every two seconds or so for as long as they are down (as
//! HAProxy's and Envoy's health checks keep asking a server that is down), so one that comes back
//! is used within seconds; thousands down back off to `token_retry_max`. (A fixed 30 s cap found
//! an orchestrator that came up 15 s into a run only 16 s later.) The supervisor's survey of
//! orchestrators it cannot reach uses the same rule (`supervisor/survey.rs`).
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

/// Probes a second the gateway spends, at most, re-asking orchestrators that do not answer
/// (while their back-off is below `token_retry_max`).
pub(crate) const RETRY_RATE: f64 = 50.0;

/// The longest wait between failing probes while `failing` subjects (pairs, or orchestrators
/// for the survey) are failing: long enough to keep their probes within [`RETRY_RATE`] a
/// second, at least twice `retry`, at most `retry_max`.
pub(crate) fn retry_cap(c: Cadence, failing: usize) -> Duration {
    let max = c.retry_max.max(c.retry);
    let floor = c.retry.saturating_mul(2).min(max);
    Duration::from_secs_f64(failing as f64 / RETRY_RATE).clamp(floor, max)
}

/// The delay before the next probe, before jitter, while `failing` subjects are failing.
pub(crate) fn next_delay(c: Cadence, last: LastProbe, failing: usize) -> Duration {
    let retry = c.retry.min(c.refresh);
    match last {
        LastProbe::Healthy => c.refresh,
        LastProbe::Full => retry,
        LastProbe::Failed(n) => failed_delay(Cadence { retry, ..c }, n, failing),
    }
}

/// The wait after `n` failed probes in a row: `retry` doubling, up to [`retry_cap`].
pub(crate) fn failed_delay(c: Cadence, n: u32, failing: usize) -> Duration {
    let doublings = n.saturating_sub(1).min(20);
    c.retry.saturating_mul(1 << doublings).min(retry_cap(c, failing))
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
    fn failures_back_off_doubling_up_to_the_cap_that_many_failing_need() {
        // Thousands failing at once: the full back-off, up to token_retry_max.
        let s = |n| next_delay(C, LastProbe::Failed(n), 5_000).as_secs();
        assert_eq!([s(1), s(2), s(3), s(4), s(5), s(6), s(7), s(60)], [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(next_delay(C, LastProbe::Healthy, 5_000), Duration::from_secs(10));
        assert_eq!(next_delay(C, LastProbe::Full, 5_000), Duration::from_secs(1));
        assert_eq!(next_delay(C, LastProbe::Failed(u32::MAX), 5_000), Duration::from_secs(30), "no overflow");
        // A few failing: asked every two seconds for as long as they fail.
        let few = |n| next_delay(C, LastProbe::Failed(n), 3);
        assert_eq!([few(1), few(2), few(3), few(50)].map(|d| d.as_secs()), [1, 2, 2, 2]);
        // In between: as long as keeping them all within RETRY_RATE probes a second needs.
        assert_eq!(next_delay(C, LastProbe::Failed(9), 500), Duration::from_secs(10));
    }

    proptest::proptest! {
        #[test]
        fn failing_probes_stay_within_the_rate_or_the_configured_cap(failing in 0usize..1_000_000, n in 1u32..64) {
            let d = next_delay(C, LastProbe::Failed(n), failing);
            proptest::prop_assert!(d <= C.retry_max);
            proptest::prop_assert!(d >= C.retry.min(C.retry_max));
            // Everyone failing at this delay probes at most RETRY_RATE a second, unless the
            // configured cap (or the back-off not having grown yet) holds it lower.
            let rate = failing as f64 / d.as_secs_f64();
            let grown = d == failed_delay(C, 64, failing);
            proptest::prop_assert!(!grown || rate <= RETRY_RATE + 1e-9 || d == C.retry_max || d == 2 * C.retry);
        }
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let d = Duration::from_secs(10);
        assert_eq!(jittered(d, 0.0), Duration::from_secs(8));
        assert!(jittered(d, 0.999_999) < Duration::from_secs(12));
    }
}

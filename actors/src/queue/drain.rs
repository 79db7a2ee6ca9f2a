//! How fast a queue drains, and the `Retry-After` a full queue answers with: the time its
//! depth takes to drain at the rate it has really drained lately.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Inner, RETRY_AFTER_MAX, RETRY_AFTER_MIN};

/// Dispatches a second over the last ones, counted up to `now`: a queue that stops moving sees
/// its rate fall as time passes, rather than keep the rate of its last burst.
pub(super) fn drain_rate(dispatches: &VecDeque<Instant>, now: Instant) -> Option<f64> {
    let first = dispatches.front()?;
    let span = now.saturating_duration_since(*first).as_secs_f64();
    (span > 0.0).then(|| dispatches.len() as f64 / span)
}

/// The time `depth` waiting jobs (plus the one asking) take to drain at the recent rate,
/// between 1 and 60 s. With no dispatch yet, the queue is taken to drain at most one job per
/// time it has been busy.
pub(super) fn retry_after(inner: &Inner, depth: usize, now: Instant) -> Duration {
    let rate = drain_rate(&inner.dispatches, now).or_else(|| {
        let busy = now.saturating_duration_since(inner.busy_since?).as_secs_f64();
        (busy > 0.0).then(|| 1.0 / busy)
    });
    match rate {
        Some(rate) if rate > 0.0 => Duration::try_from_secs_f64(((depth + 1) as f64 / rate).ceil())
            .unwrap_or(RETRY_AFTER_MAX)
            .clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX),
        _ => RETRY_AFTER_MIN,
    }
}

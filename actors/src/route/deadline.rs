//! How long a job and each of its attempts may take, and when an attempt counts as stuck.
//! Pure: callers pass what they know.
//!
//! - **The job's deadline** is go-livepeer's bound on one attempt, `timeout_seconds + 5 s`,
//!   from the job's arrival: no attempt and no wait in the queue outlives it.
//! - **An attempt** gets the job's whole remaining time, unless the capability's profile sets
//!   a shorter `per_try_timeout` *and* another pair could take the job after it (and the job
//!   may make another attempt). The last candidate, and a cold pair's first answer (a
//!   container loading its model), always get the job's full time: cutting them fails a job
//!   that would have succeeded, and the abandoned call keeps running (and billing) on the
//!   orchestrator.
//! - **A stuck attempt**, one that has run [`STUCK_FACTOR`] times past the pair's own recent
//!   p99 (at least [`STUCK_FLOOR`]), is abandoned when another pair has a free slot: its
//!   connection is dropped (go-livepeer's orchestrator then cancels the job), the pair is
//!   charged a timeout, and the job fails over. The stuck attempt is the one abandoned, not the
//!   new one, because its pair has shown it is not answering as it does; hedging (keeping both)
//!   would double the load on a pool that is already short of a slot. A pair without
//!   measurements is never cut: it is cold.

use std::time::{Duration, Instant};

/// What go-livepeer's gateway adds to `timeout_seconds` for an attempt's answer.
pub(crate) const TIMEOUT_SLACK: Duration = Duration::from_secs(5);

/// An attempt is stuck after this many times the pair's recent p99...
pub(crate) const STUCK_FACTOR: f64 = 4.0;

/// ...and never before this.
pub(crate) const STUCK_FLOOR: Duration = Duration::from_millis(250);

/// The job's deadline: `timeout_seconds + 5 s` from its arrival.
pub(crate) fn job_deadline(arrived: Instant, timeout_seconds: u64) -> Instant {
    arrived + Duration::from_secs(timeout_seconds) + TIMEOUT_SLACK
}

/// Slack past the job's `timeout_seconds` an event stream may run (go-livepeer's gateway
/// bounds its SSE relay by `timeout_seconds + 10 s`).
pub(crate) const STREAM_SLACK: Duration = Duration::from_secs(10);

/// How long an event stream may run once it has started: `timeout_seconds + 10 s`.
pub(crate) fn stream_limit(timeout_seconds: u64) -> Duration {
    Duration::from_secs(timeout_seconds) + STREAM_SLACK
}

/// What an attempt needs to know to get its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttemptContext {
    /// Time left before the job's deadline.
    pub(crate) remaining: Duration,
    /// The capability's `per_try_timeout`.
    pub(crate) per_try: Duration,
    /// The pair has not answered since it started or came back.
    pub(crate) cold: bool,
    /// Another pair could take the job if this attempt fails, and the job may make another
    /// attempt.
    pub(crate) alternative: bool,
}

/// Which bound cut an attempt that got no answer in time: what its report names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timeout {
    /// The capability's `per_try_timeout` (another pair could take the job).
    PerTry,
    /// The job's own deadline, `timeout_seconds + 5 s` from its arrival.
    Job,
    /// Abandoned as stuck, far past the pair's p99, while another pair had room.
    Stuck,
}

/// The time an attempt gets, and which bound that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttemptTime {
    /// How long.
    pub(crate) limit: Duration,
    /// [`Timeout::PerTry`] or [`Timeout::Job`].
    pub(crate) bound: Timeout,
}

/// The time an attempt gets: the per-try timeout only when it is shorter than what is left of
/// the job and the attempt may be cut; the job's own time otherwise.
pub(crate) fn attempt_timeout(a: AttemptContext) -> AttemptTime {
    let per_try = !a.cold && a.alternative && a.per_try < a.remaining;
    let (limit, bound) = if per_try { (a.per_try, Timeout::PerTry) } else { (a.remaining, Timeout::Job) };
    AttemptTime { limit: limit.max(Duration::from_millis(1)), bound }
}

/// When an attempt on a pair whose recent successful calls have this p99 counts as stuck
/// (`None`: never, the pair has no measurements).
pub(crate) fn stuck_after(p99_ms: Option<f64>) -> Option<Duration> {
    let p99 = p99_ms?;
    Some(Duration::from_secs_f64((p99 * STUCK_FACTOR / 1000.0).max(0.0)).max(STUCK_FLOOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_job_deadline_is_go_livepeers_attempt_bound() {
        let t0 = Instant::now();
        assert_eq!(job_deadline(t0, 30), t0 + S(35));
    }

    #[test]
    fn the_profile_shortens_an_attempt_only_when_another_pair_can_take_the_job() {
        let warm = AttemptContext { remaining: S(35), per_try: S(5), cold: false, alternative: true };
        let t = |a| {
            let AttemptTime { limit, bound } = attempt_timeout(a);
            (limit, bound)
        };
        assert_eq!(t(warm), (S(5), Timeout::PerTry));
        assert_eq!(t(AttemptContext { alternative: false, ..warm }), (S(35), Timeout::Job), "last candidate");
        assert_eq!(t(AttemptContext { cold: true, ..warm }), (S(35), Timeout::Job), "a cold pair's first answer");
        assert_eq!(t(AttemptContext { remaining: S(2), ..warm }), (S(2), Timeout::Job), "never past the job");
        assert_eq!(t(AttemptContext { remaining: S(5), ..warm }), (S(5), Timeout::Job), "a tie is the job's");
        assert_eq!(t(AttemptContext { remaining: Duration::ZERO, ..warm }), (Duration::from_millis(1), Timeout::Job));
    }

    #[test]
    fn stuck_is_several_times_the_pairs_p99_with_a_floor() {
        assert_eq!(stuck_after(None), None, "cold: never cut");
        assert_eq!(stuck_after(Some(10.0)), Some(STUCK_FLOOR));
        assert_eq!(stuck_after(Some(700.0)), Some(Duration::from_millis(2800)));
    }
}

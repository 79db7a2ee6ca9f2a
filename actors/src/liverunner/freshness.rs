//! How fresh an orchestrator's runner records are, and when its `/discovery` is fetched next.
//! Pure: the caller passes the clock.
//!
//! A fetch that fails keeps the last records for a grace period, marked stale, rather than
//! dropping them: go-livepeer's signer dropped every priced runner after one failed refresh
//! (#4087: 77 runners to 0 while its endpoint still answered 200). Past the grace period the
//! records are expired and their runners leave rotation. An orchestrator that answers that it
//! has no Live Runner (404) is asked again rarely, and its silence is not a failure.
//!
//! Cadence: every `refresh` while it answers (a runner with no free slot is asked about sooner,
//! `retry`, since its figure caps the pair), `retry` doubling while it fails, as token probes
//! do (`pair/probe.rs`); every delay jittered by a fifth.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::pair::probe::{self, Cadence, LastProbe};

/// How long an orchestrator without Live Runner waits before it is asked again.
pub const UNSUPPORTED_RETRY: Duration = Duration::from_secs(600);

/// What the gateway knows of one orchestrator's discovery.
#[derive(Debug, Clone, Default)]
pub(crate) struct Freshness {
    /// When a fetch last succeeded.
    last_ok: Option<Instant>,
    /// Fetches that failed in a row.
    failures: u32,
    /// The last fetch answered that the orchestrator has no Live Runner.
    unsupported: bool,
    /// What the last failed fetch said.
    last_error: Option<String>,
}

/// Where an orchestrator's records stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    /// Never fetched yet.
    Pending,
    /// The last fetch succeeded.
    Fresh,
    /// The last fetches failed; the records of the last success are kept, within the grace
    /// period.
    Stale,
    /// Failing for longer than the grace period (or never fetched successfully): no records.
    Expired,
    /// It has no Live Runner (its `/discovery` answered 404).
    Unsupported,
}

impl Standing {
    /// Whether its records may be routed to.
    pub(crate) fn usable(self) -> bool {
        matches!(self, Standing::Fresh | Standing::Stale)
    }

    /// Stable name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Standing::Pending => "pending",
            Standing::Fresh => "fresh",
            Standing::Stale => "stale",
            Standing::Expired => "expired",
            Standing::Unsupported => "unsupported",
        }
    }
}

impl Freshness {
    /// A fetch succeeded at `now`.
    pub(crate) fn succeeded(&mut self, now: Instant) {
        self.last_ok = Some(now);
        self.failures = 0;
        self.unsupported = false;
        self.last_error = None;
    }

    /// A fetch failed, saying `error`.
    pub(crate) fn failed(&mut self, error: String) {
        self.failures = self.failures.saturating_add(1);
        self.unsupported = false;
        self.last_error = Some(error);
    }

    /// The orchestrator answered that it has no Live Runner.
    pub(crate) fn unsupported(&mut self, error: String) {
        self.failures = 0;
        self.unsupported = true;
        self.last_ok = None;
        self.last_error = Some(error);
    }

    /// Where its records stand at `now`, with records kept `grace` after the last success.
    pub(crate) fn standing(&self, now: Instant, grace: Duration) -> Standing {
        if self.unsupported {
            return Standing::Unsupported;
        }
        match (self.last_ok, self.failures) {
            (None, 0) => Standing::Pending,
            (Some(_), 0) => Standing::Fresh,
            (Some(t), _) if now.saturating_duration_since(t) <= grace => Standing::Stale,
            _ => Standing::Expired,
        }
    }

    /// Fetches that failed in a row.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// What the last failed fetch said.
    pub(crate) fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When the last fetch succeeded.
    pub(crate) fn last_ok(&self) -> Option<Instant> {
        self.last_ok
    }

    /// The wait before the next fetch (before jitter), given whether one of its runners had
    /// no free slot and how many orchestrators are failing now.
    pub(crate) fn next_delay(&self, cadence: Cadence, any_full: bool, failing: usize) -> Duration {
        if self.unsupported {
            return UNSUPPORTED_RETRY.max(cadence.refresh);
        }
        let last = match (self.failures, any_full) {
            (0, false) => LastProbe::Healthy,
            (0, true) => LastProbe::Full,
            (n, _) => LastProbe::Failed(n),
        };
        probe::next_delay(cadence, last, failing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Cadence =
        Cadence { refresh: Duration::from_secs(5), retry: Duration::from_secs(1), retry_max: Duration::from_secs(30) };
    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn a_failed_fetch_keeps_the_records_stale_within_the_grace_period() {
        let t = Instant::now();
        let mut f = Freshness::default();
        assert_eq!(f.standing(t, GRACE), Standing::Pending);
        f.failed("refused".into());
        assert_eq!(f.standing(t, GRACE), Standing::Expired, "never fetched: nothing to keep");
        f.succeeded(t);
        assert_eq!(f.standing(t, GRACE), Standing::Fresh);
        f.failed("timed out".into());
        f.failed("timed out".into());
        assert_eq!(f.standing(t + Duration::from_secs(59), GRACE), Standing::Stale, "#4087: kept, not dropped");
        assert!(Standing::Stale.usable());
        assert_eq!(f.standing(t + Duration::from_secs(61), GRACE), Standing::Expired);
        assert!(!Standing::Expired.usable());
        assert_eq!((f.failures(), f.last_error()), (2, Some("timed out")));
        f.succeeded(t + Duration::from_secs(90));
        assert_eq!(f.standing(t + Duration::from_secs(90), GRACE), Standing::Fresh);
        assert_eq!(f.last_error(), None);
    }

    #[test]
    fn fetches_follow_the_probe_cadence_and_orchestrators_without_live_runner_are_asked_rarely() {
        let mut f = Freshness::default();
        assert_eq!(f.next_delay(C, false, 0), Duration::from_secs(5));
        assert_eq!(f.next_delay(C, true, 0), Duration::from_secs(1), "a full runner: asked sooner");
        f.failed("x".into());
        f.failed("x".into());
        assert_eq!(f.next_delay(C, false, 1_000), Duration::from_secs(2), "doubling");
        f.unsupported("404".into());
        assert_eq!(f.standing(Instant::now(), GRACE), Standing::Unsupported);
        assert_eq!(f.next_delay(C, false, 0), UNSUPPORTED_RETRY);
        assert_eq!(f.failures(), 0, "not a failure");
    }
}

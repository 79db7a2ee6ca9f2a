//! The per-pair circuit breaker as a pure state machine: no clocks, no randomness, no I/O.
//! The pair actor feeds it outcomes with the current time (and a random sample for jitter)
//! and acts on the transitions it reports.
//!
//! closed --N consecutive failures, or failure rate / slow-call rate over the last
//!          `window` calls (once `min_calls` are in)--> open(level)
//! open --backoff elapsed--> half-open
//! half-open --`half_open_permits` successes--> closed (level reset)
//! half-open --any failure--> open(level + 1)
//!
//! A slow call is a success that took longer than the capability's slow-call threshold: the
//! caller says so. Slow calls trip the breaker only through the slow-call rate, so a pair
//! that is merely slower than others is steered away from by scoring, and only one that is
//! slow nearly all the time (resilience4j's `slowCallRateThreshold`) is cut off.
//!
//! The open time is `base_open x 2^level`, capped at `max_open`, with jitter so that pairs
//! tripped together do not all come back in the same instant (Linkerd: 1 s to 60 s, 0.5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Breaker knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (Envoy's `consecutive_5xx` is 5).
    pub consecutive_failures: u32,
    /// Open time at level 0.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String)]
    pub base_open: Duration,
    /// Cap on the open time.
    #[serde(with = "humantime_serde")]
    #[schema(value_type = String)]
    pub max_open: Duration,
    /// Trial calls allowed (and needed to succeed) while half-open.
    pub half_open_permits: u32,
    /// Jitter as a fraction of the open time: 0.5 spreads it over +-25 %.
    pub jitter: f64,
    /// Calls in the sliding window used for the rate triggers.
    pub window: u32,
    /// Calls needed in the window before a rate can trip the breaker.
    pub min_calls: u32,
    /// Share of failures in the window that opens the breaker (0 < x <= 1).
    pub failure_rate: f64,
    /// Share of slow calls in the window that opens the breaker (0 < x <= 1).
    pub slow_call_rate: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_open: Duration::from_secs(1),
            max_open: Duration::from_secs(60),
            half_open_permits: 1,
            jitter: 0.5,
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            slow_call_rate: 0.8,
        }
    }
}

impl BreakerConfig {
    /// Checks the knobs make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.consecutive_failures == 0 {
            return Err("breaker.consecutive_failures must be at least 1".into());
        }
        if self.half_open_permits == 0 {
            return Err("breaker.half_open_permits must be at least 1".into());
        }
        if self.base_open.is_zero() || self.max_open < self.base_open {
            return Err("breaker.base_open must be positive and no larger than breaker.max_open".into());
        }
        if self.max_open > crate::clock::MAX_DURATION {
            return Err("breaker.max_open must be at most 7 days".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err("breaker.jitter must be between 0 and 1".into());
        }
        if self.window == 0 || self.window > 1000 {
            return Err("breaker.window must be between 1 and 1000".into());
        }
        if self.min_calls == 0 || self.min_calls > self.window {
            return Err("breaker.min_calls must be between 1 and breaker.window".into());
        }
        for (name, v) in [("failure_rate", self.failure_rate), ("slow_call_rate", self.slow_call_rate)] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("breaker.{name} must be above 0 and at most 1"));
            }
        }
        Ok(())
    }
}

/// The observable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// Traffic flows.
    Closed,
    /// No traffic until the backoff elapses.
    Open,
    /// A limited number of trial calls decide.
    HalfOpen,
}

impl State {
    /// Stable lowercase name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// A state change and why it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub(crate) from: State,
    /// State after.
    pub(crate) to: State,
    /// Why (stable, for logs and metrics).
    pub(crate) reason: &'static str,
}

/// What the breaker says about one more call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Normal traffic.
    Allowed,
    /// A half-open trial call.
    Trial,
    /// Refused: open (until the instant given) or no trial permit left.
    Refused(Option<Instant>),
}

/// The last `window` outcomes while closed, as a ring of (failed, slow) flags with running
/// counts, so each call is O(1).
#[derive(Debug, Clone, Default)]
struct Window {
    calls: std::collections::VecDeque<(bool, bool)>,
    failures: u32,
    slow: u32,
}

impl Window {
    fn push(&mut self, failed: bool, slow: bool, size: u32) {
        while self.calls.len() >= size.max(1) as usize {
            if let Some((f, s)) = self.calls.pop_front() {
                self.failures -= u32::from(f);
                self.slow -= u32::from(s);
            }
        }
        self.calls.push_back((failed, slow));
        self.failures += u32::from(failed);
        self.slow += u32::from(slow);
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    fn rates(&self) -> (u32, f64, f64) {
        let n = self.calls.len() as u32;
        if n == 0 {
            return (0, 0.0, 0.0);
        }
        (n, f64::from(self.failures) / f64::from(n), f64::from(self.slow) / f64::from(n))
    }
}

/// The breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    /// Shared with the capability's effective policy: one copy per capability, not per pair.
    cfg: Arc<BreakerConfig>,
    window: Window,
    state: State,
    open_until: Option<Instant>,
    level: u32,
    consecutive_failures: u32,
    trials_in_flight: u32,
    trial_successes: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: impl Into<Arc<BreakerConfig>>) -> Self {
        Self {
            cfg: cfg.into(),
            window: Window::default(),
            state: State::Closed,
            open_until: None,
            level: 0,
            consecutive_failures: 0,
            trials_in_flight: 0,
            trial_successes: 0,
        }
    }

    /// Restores a persisted breaker: open ones stay open until `open_until` (or become
    /// half-open at the next call if that has passed); half-open ones restart their trials.
    pub(crate) fn restore(
        cfg: impl Into<Arc<BreakerConfig>>,
        state: State,
        level: u32,
        open_until: Option<Instant>,
    ) -> Self {
        let mut b = Self::new(cfg);
        b.level = level;
        match state {
            State::Closed => {}
            State::Open | State::HalfOpen => {
                b.state = State::Open;
                b.open_until = Some(open_until.unwrap_or_else(Instant::now));
            }
        }
        b
    }

    /// Current state (an open breaker whose time is up still reads open until a call asks).
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// When an open breaker lets a trial through.
    pub fn open_until(&self) -> Option<Instant> {
        self.open_until
    }

    /// How many times in a row it has opened without closing in between.
    pub(crate) fn level(&self) -> u32 {
        self.level
    }

    /// Consecutive failures counted while closed.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    #[cfg(test)]
    /// Calls in the window, and the failure and slow-call rates over them.
    pub(crate) fn window_rates(&self) -> (u32, f64, f64) {
        self.window.rates()
    }

    /// Replaces the configuration (policy change); state is kept.
    pub(crate) fn set_config(&mut self, cfg: impl Into<Arc<BreakerConfig>>) {
        self.cfg = cfg.into();
    }

    /// Whether a call could be admitted at `now` (no state change).
    pub(crate) fn would_admit(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open => self.open_until.is_none_or(|t| now >= t),
            State::HalfOpen => self.trials_in_flight + self.trial_successes < self.cfg.half_open_permits,
        }
    }

    /// Asks to admit one call at `now`; may move open -> half-open.
    pub fn admit(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        let mut transition = None;
        if self.state == State::Open {
            match self.open_until {
                Some(t) if now < t => return (Admission::Refused(Some(t)), None),
                _ => {
                    transition = Some(self.go(State::HalfOpen, "backoff-elapsed"));
                    self.open_until = None;
                    self.trials_in_flight = 0;
                    self.trial_successes = 0;
                }
            }
        }
        let admission = match self.state {
            State::Closed => Admission::Allowed,
            State::HalfOpen if self.trials_in_flight + self.trial_successes < self.cfg.half_open_permits => {
                self.trials_in_flight += 1;
                Admission::Trial
            }
            _ => Admission::Refused(None),
        };
        (admission, transition)
    }

    /// Gives back a trial permit that was admitted but never used (the call did not happen).
    pub(crate) fn release_trial(&mut self) {
        self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
    }

    /// Records a success; `slow` when it took longer than the slow-call threshold. `now` and
    /// `u` (uniform in [0, 1), for jitter) matter only if the slow-call rate trips it.
    pub(crate) fn on_success(&mut self, now: Instant, u: f64, slow: bool) -> Option<Transition> {
        self.consecutive_failures = 0;
        match self.state {
            State::HalfOpen => self.trial_passed(),
            State::Closed => {
                self.window.push(false, slow, self.cfg.window);
                let (n, _, slow_rate) = self.window.rates();
                if slow && n >= self.cfg.min_calls && slow_rate >= self.cfg.slow_call_rate {
                    return Some(self.open(now, u, "slow-call-rate"));
                }
                None
            }
            State::Open => None,
        }
    }

    /// Records an answer that says nothing about health (a 4xx: the client's fault). It ends
    /// a half-open trial as passed, since the orchestrator did answer, and breaks a run of
    /// consecutive failures, but does not enter the rate window.
    pub(crate) fn on_neutral(&mut self) -> Option<Transition> {
        self.consecutive_failures = 0;
        if self.state == State::HalfOpen {
            return self.trial_passed();
        }
        None
    }

    /// A half-open trial ended well: close once enough have.
    fn trial_passed(&mut self) -> Option<Transition> {
        self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
        self.trial_successes += 1;
        if self.trial_successes < self.cfg.half_open_permits {
            return None;
        }
        self.level = 0;
        self.trial_successes = 0;
        self.window.clear();
        Some(self.go(State::Closed, "trials-succeeded"))
    }

    /// Records a failure at `now`; `u` is a uniform sample in [0, 1) for jitter.
    pub fn on_failure(&mut self, now: Instant, u: f64) -> Option<Transition> {
        match self.state {
            State::Closed => {
                self.consecutive_failures += 1;
                self.window.push(true, false, self.cfg.window);
                let (n, failure_rate, _) = self.window.rates();
                if self.consecutive_failures >= self.cfg.consecutive_failures {
                    Some(self.open(now, u, "consecutive-failures"))
                } else if n >= self.cfg.min_calls && failure_rate >= self.cfg.failure_rate {
                    Some(self.open(now, u, "failure-rate"))
                } else {
                    None
                }
            }
            State::HalfOpen => {
                self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
                self.level = self.level.saturating_add(1);
                Some(self.open(now, u, "trial-failed"))
            }
            // A call admitted before the breaker opened may still fail: nothing more to do.
            State::Open => None,
        }
    }

    /// Forces the breaker open at its current level (operator action).
    pub fn trip(&mut self, now: Instant, u: f64) -> Option<Transition> {
        if self.state == State::Open {
            return None;
        }
        Some(self.open(now, u, "forced-trip"))
    }

    /// Forces the breaker closed and forgets its history (operator action).
    pub(crate) fn reset(&mut self) -> Option<Transition> {
        self.window.clear();
        self.level = 0;
        self.consecutive_failures = 0;
        self.trials_in_flight = 0;
        self.trial_successes = 0;
        self.open_until = None;
        if self.state == State::Closed {
            return None;
        }
        Some(self.go(State::Closed, "forced-reset"))
    }

    /// The open time for the current level, before jitter.
    pub fn backoff(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.level.min(30));
        self.cfg.base_open.saturating_mul(factor).min(self.cfg.max_open)
    }

    fn open(&mut self, now: Instant, u: f64, reason: &'static str) -> Transition {
        self.window.clear();
        let base = self.backoff().as_secs_f64();
        let spread = self.cfg.jitter * (u.clamp(0.0, 1.0) - 0.5);
        let secs = (base * (1.0 + spread)).clamp(0.001, self.cfg.max_open.as_secs_f64());
        // Validation bounds the durations; stay total anyway (no panic on a clock edge).
        let open_for = Duration::try_from_secs_f64(secs).unwrap_or(self.cfg.max_open);
        self.open_until = Some(now.checked_add(open_for).unwrap_or(now));
        self.consecutive_failures = 0;
        self.trials_in_flight = 0;
        self.trial_successes = 0;
        self.go(State::Open, reason)
    }

    fn go(&mut self, to: State, reason: &'static str) -> Transition {
        let from = self.state;
        self.state = to;
        Transition { from, to, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: u32, permits: u32) -> BreakerConfig {
        BreakerConfig { consecutive_failures: n, half_open_permits: permits, jitter: 0.0, ..Default::default() }
    }

    #[test]
    fn failure_rate_opens_only_with_enough_volume() {
        let now = Instant::now();
        // 100 consecutive failures would be needed; the rate trigger fires first.
        let c = BreakerConfig { window: 10, min_calls: 6, failure_rate: 0.5, ..cfg(100, 1) };
        let mut b = Breaker::new(c);
        // Alternate, so never two failures in a row: 50 % failures.
        for i in 0..3 {
            assert_eq!(b.on_failure(now, 0.5), None, "call {i}: below min_calls");
            assert_eq!(b.on_success(now, 0.5, false), None);
        }
        // 6 calls in, 3 failures: the next failure makes 4 of 7, over 50 %.
        let t = b.on_failure(now, 0.5).expect("rate trips");
        assert_eq!(t.reason, "failure-rate");
        assert_eq!(b.window_rates().0, 0, "window cleared on opening");
    }

    #[test]
    fn failure_rate_below_threshold_keeps_it_closed() {
        let now = Instant::now();
        let c = BreakerConfig { window: 10, min_calls: 5, failure_rate: 0.5, ..cfg(100, 1) };
        let mut b = Breaker::new(c);
        for _ in 0..50 {
            assert_eq!(b.on_failure(now, 0.5), None);
            for _ in 0..2 {
                assert_eq!(b.on_success(now, 0.5, false), None);
            }
        }
        assert_eq!(b.state(), State::Closed);
        let (n, f, _) = b.window_rates();
        assert_eq!(n, 10);
        assert!(f < 0.5);
    }

    #[test]
    fn slow_call_rate_opens_a_pair_that_is_slow_nearly_always() {
        let now = Instant::now();
        let c = BreakerConfig { window: 10, min_calls: 10, slow_call_rate: 0.8, ..cfg(5, 1) };
        let mut b = Breaker::new(c.clone());
        // 70 % slow: stays closed.
        for i in 0..30 {
            assert_eq!(b.on_success(now, 0.5, i % 10 < 7), None);
        }
        let mut b = Breaker::new(c);
        let mut opened = None;
        for _ in 0..10 {
            opened = opened.or(b.on_success(now, 0.5, true));
        }
        assert_eq!(opened.map(|t| t.reason), Some("slow-call-rate"));
    }

    #[test]
    fn neutral_answers_break_failure_runs_and_pass_trials() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(2, 1));
        b.on_failure(now, 0.5);
        b.on_neutral();
        assert_eq!(b.on_failure(now, 0.5), None, "the run was broken");
        b.on_failure(now, 0.5);
        assert_eq!(b.state(), State::Open);
        let later = now + Duration::from_secs(5);
        assert_eq!(b.admit(later).0, Admission::Trial);
        assert_eq!(b.on_neutral().map(|t| t.to), Some(State::Closed));
    }

    #[test]
    fn opens_after_n_consecutive_failures_only() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(3, 1));
        assert_eq!(b.on_failure(now, 0.5), None);
        assert_eq!(b.on_failure(now, 0.5), None);
        assert_eq!(b.on_success(now, 0.5, false), None); // resets the run
        assert_eq!(b.on_failure(now, 0.5), None);
        assert_eq!(b.on_failure(now, 0.5), None);
        let t = b.on_failure(now, 0.5).expect("opens");
        assert_eq!((t.from, t.to, t.reason), (State::Closed, State::Open, "consecutive-failures"));
        assert_eq!(b.open_until(), Some(now + Duration::from_secs(1)));
        assert_eq!(b.admit(now).0, Admission::Refused(Some(now + Duration::from_secs(1))));
    }

    #[test]
    fn half_open_success_closes_and_failure_reopens_one_level_up() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(1, 1));
        b.on_failure(now, 0.5);
        let later = now + Duration::from_secs(1);
        let (adm, t) = b.admit(later);
        assert_eq!(adm, Admission::Trial);
        assert_eq!(t.map(|t| t.to), Some(State::HalfOpen));
        // Only one permit.
        assert_eq!(b.admit(later).0, Admission::Refused(None));
        // Trial fails: open at level 1, 2 s.
        let t = b.on_failure(later, 0.5).expect("reopens");
        assert_eq!(t.reason, "trial-failed");
        assert_eq!(b.level(), 1);
        assert_eq!(b.open_until(), Some(later + Duration::from_secs(2)));
        // Next trial succeeds: closed, level reset.
        let later2 = later + Duration::from_secs(2);
        assert_eq!(b.admit(later2).0, Admission::Trial);
        let t = b.on_success(later2, 0.5, false).expect("closes");
        assert_eq!((t.to, t.reason), (State::Closed, "trials-succeeded"));
        assert_eq!(b.level(), 0);
        assert_eq!(b.admit(later2).0, Admission::Allowed);
    }

    #[test]
    fn several_permits_need_several_successes() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(1, 2));
        b.on_failure(now, 0.5);
        let later = now + Duration::from_secs(5);
        assert_eq!(b.admit(later).0, Admission::Trial);
        assert_eq!(b.admit(later).0, Admission::Trial);
        assert_eq!(b.admit(later).0, Admission::Refused(None));
        assert_eq!(b.on_success(later, 0.5, false), None);
        assert_eq!(b.on_success(later, 0.5, false).map(|t| t.to), Some(State::Closed));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Breaker::new(BreakerConfig { max_open: Duration::from_secs(60), ..cfg(1, 1) });
        let mut now = Instant::now();
        let mut seen = vec![];
        for _ in 0..9 {
            b.on_failure(now, 0.5);
            let until = b.open_until().expect("open");
            seen.push((until - now).as_secs());
            now = until;
            assert_eq!(b.admit(now).0, Admission::Trial);
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let now = Instant::now();
        for u in [0.0, 0.25, 0.5, 0.999] {
            let mut b = Breaker::new(BreakerConfig { jitter: 0.5, ..cfg(1, 1) });
            b.on_failure(now, u);
            let d = (b.open_until().expect("open") - now).as_secs_f64();
            assert!((0.75..=1.25).contains(&d), "u={u} d={d}");
        }
    }

    #[test]
    fn trip_and_reset_are_forced_transitions() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(5, 1));
        assert_eq!(b.trip(now, 0.5).map(|t| t.reason), Some("forced-trip"));
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.trip(now, 0.5), None);
        assert_eq!(b.reset().map(|t| t.reason), Some("forced-reset"));
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.reset(), None);
    }

    #[test]
    fn restore_keeps_open_until() {
        let now = Instant::now();
        let until = now + Duration::from_secs(30);
        let mut b = Breaker::restore(cfg(5, 1), State::Open, 3, Some(until));
        assert_eq!(b.level(), 3);
        assert_eq!(b.admit(now).0, Admission::Refused(Some(until)));
        assert_eq!(b.admit(until).0, Admission::Trial);
    }

    #[test]
    fn validate_rejects_nonsense() {
        assert!(BreakerConfig::default().validate().is_ok());
        assert!(cfg(0, 1).validate().is_err());
        assert!(cfg(1, 0).validate().is_err());
        assert!(BreakerConfig { jitter: 2.0, ..Default::default() }.validate().is_err());
        assert!(BreakerConfig { max_open: Duration::from_millis(1), ..Default::default() }.validate().is_err());
    }
}

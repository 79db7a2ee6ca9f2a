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
//!
//! **What a pair's absence costs.** The caller says, at each question, whether the capability's
//! pool is [`Pool::Short`] (jobs are queueing for a slot, or most of its pairs are out). Then an
//! open breaker admits its trial after `base_open` (jittered), whatever its level, and a
//! half-open one lets up to `short_pool_permits` trials run at once (the first success still
//! closes it, any failure reopens it): when the rest of the pool cannot carry the load, the
//! pair is tried again within about a second and regains its share at once, so one that fails
//! in windows serves in its good windows. This is Envoy's panic threshold and
//! max-ejection-percent in breaker form: never keep out, for long, what the pool needs. While
//! the pool is [`Pool::Ample`] the level's exponential open time stands (a pair's absence costs
//! little, and its trials would fail jobs for nothing). The level keeps counting either way, so
//! a pool that becomes ample again sees the long open time.

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
    /// Trial calls allowed at once while half-open and the capability's pool is short (at
    /// least `half_open_permits`); the first success closes the breaker.
    pub short_pool_permits: u32,
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
            short_pool_permits: 3,
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
        if self.short_pool_permits == 0 || self.short_pool_permits > 1000 {
            return Err("breaker.short_pool_permits must be between 1 and 1000".into());
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

/// How short the capability's pool is, as the breaker weighs a pair's absence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pool {
    /// The rest of the pool carries the load: a failing pair stays out for its level's time.
    #[default]
    Ample,
    /// Jobs are queueing for a slot, or most pairs are out: trials come sooner and more at once.
    Short,
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
    /// When an open breaker admits a trial while the pool is ample (the level's time).
    open_until: Option<Instant>,
    /// ... and while it is short (`base_open`, jittered; never later than `open_until`).
    open_until_short: Option<Instant>,
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
            open_until_short: None,
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
                let until = open_until.unwrap_or_else(Instant::now);
                b.open_until = Some(until);
                b.open_until_short = Some(Instant::now().checked_add(b.cfg.base_open).map_or(until, |t| until.min(t)));
            }
        }
        b
    }

    /// Current state (an open breaker whose time is up still reads open until a call asks).
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// When an open breaker lets a trial through while the pool is ample (what is persisted
    /// and shown).
    pub fn open_until(&self) -> Option<Instant> {
        self.open_until
    }

    /// When an open breaker lets a trial through, given how short the pool is.
    pub fn open_until_for(&self, pool: Pool) -> Option<Instant> {
        match pool {
            Pool::Ample => self.open_until,
            Pool::Short => self.open_until_short,
        }
    }

    /// Trial calls a half-open breaker lets run at once, given how short the pool is.
    pub(crate) fn permits(&self, pool: Pool) -> u32 {
        match pool {
            Pool::Ample => self.cfg.half_open_permits,
            Pool::Short => self.cfg.half_open_permits.max(self.cfg.short_pool_permits),
        }
    }

    /// Trials running plus trials passed (what the permits bound).
    pub(crate) fn trials_used(&self) -> u32 {
        self.trials_in_flight + self.trial_successes
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
    #[cfg(test)]
    pub(crate) fn would_admit(&self, now: Instant, pool: Pool) -> bool {
        match self.state {
            State::Closed => true,
            State::Open => self.open_until_for(pool).is_none_or(|t| now >= t),
            State::HalfOpen => self.trials_used() < self.permits(pool),
        }
    }

    /// Asks to admit one call at `now`; may move open -> half-open.
    pub fn admit(&mut self, now: Instant, pool: Pool) -> (Admission, Option<Transition>) {
        let mut transition = None;
        if self.state == State::Open {
            match self.open_until_for(pool) {
                Some(t) if now < t => return (Admission::Refused(Some(t)), None),
                _ => {
                    transition = Some(self.go(State::HalfOpen, "backoff-elapsed"));
                    self.open_until = None;
                    self.open_until_short = None;
                    self.trials_in_flight = 0;
                    self.trial_successes = 0;
                }
            }
        }
        let admission = match self.state {
            State::Closed => Admission::Allowed,
            State::HalfOpen if self.trials_used() < self.permits(pool) => {
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
        self.open_until_short = None;
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
        let spread = self.cfg.jitter * (u.clamp(0.0, 1.0) - 0.5);
        let jittered = |base: Duration| {
            let secs = (base.as_secs_f64() * (1.0 + spread)).clamp(0.001, self.cfg.max_open.as_secs_f64());
            // Validation bounds the durations; stay total anyway (no panic on a clock edge).
            let open_for = Duration::try_from_secs_f64(secs).unwrap_or(self.cfg.max_open);
            now.checked_add(open_for).unwrap_or(now)
        };
        let until = jittered(self.backoff());
        self.open_until = Some(until);
        // While the pool is short the level does not lengthen the open time.
        self.open_until_short = Some(jittered(self.cfg.base_open.min(self.backoff())).min(until));
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
        assert_eq!(b.admit(later, Pool::Ample).0, Admission::Trial);
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
        assert_eq!(b.admit(now, Pool::Ample).0, Admission::Refused(Some(now + Duration::from_secs(1))));
    }

    #[test]
    fn half_open_success_closes_and_failure_reopens_one_level_up() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(1, 1));
        b.on_failure(now, 0.5);
        let later = now + Duration::from_secs(1);
        let (adm, t) = b.admit(later, Pool::Ample);
        assert_eq!(adm, Admission::Trial);
        assert_eq!(t.map(|t| t.to), Some(State::HalfOpen));
        // Only one permit.
        assert_eq!(b.admit(later, Pool::Ample).0, Admission::Refused(None));
        // Trial fails: open at level 1, 2 s.
        let t = b.on_failure(later, 0.5).expect("reopens");
        assert_eq!(t.reason, "trial-failed");
        assert_eq!(b.level(), 1);
        assert_eq!(b.open_until(), Some(later + Duration::from_secs(2)));
        // Next trial succeeds: closed, level reset.
        let later2 = later + Duration::from_secs(2);
        assert_eq!(b.admit(later2, Pool::Ample).0, Admission::Trial);
        let t = b.on_success(later2, 0.5, false).expect("closes");
        assert_eq!((t.to, t.reason), (State::Closed, "trials-succeeded"));
        assert_eq!(b.level(), 0);
        assert_eq!(b.admit(later2, Pool::Ample).0, Admission::Allowed);
    }

    #[test]
    fn several_permits_need_several_successes() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(1, 2));
        b.on_failure(now, 0.5);
        let later = now + Duration::from_secs(5);
        assert_eq!(b.admit(later, Pool::Ample).0, Admission::Trial);
        assert_eq!(b.admit(later, Pool::Ample).0, Admission::Trial);
        assert_eq!(b.admit(later, Pool::Ample).0, Admission::Refused(None));
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
            assert_eq!(b.admit(now, Pool::Ample).0, Admission::Trial);
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
        assert_eq!(b.admit(now, Pool::Ample).0, Admission::Refused(Some(until)));
        assert_eq!(b.admit(until, Pool::Ample).0, Admission::Trial);
    }

    #[test]
    fn validate_rejects_nonsense() {
        assert!(BreakerConfig::default().validate().is_ok());
        assert!(cfg(0, 1).validate().is_err());
        assert!(cfg(1, 0).validate().is_err());
        assert!(BreakerConfig { jitter: 2.0, ..Default::default() }.validate().is_err());
        assert!(BreakerConfig { max_open: Duration::from_millis(1), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn a_short_pool_trials_after_base_open_whatever_the_level_and_with_more_permits() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(1, 1));
        // Three failed trials: level 3, 8 s while the pool is ample.
        let mut t = now;
        b.on_failure(t, 0.5);
        for _ in 0..3 {
            t = b.open_until().expect("open");
            assert_eq!(b.admit(t, Pool::Ample).0, Admission::Trial);
            b.on_failure(t, 0.5);
        }
        assert_eq!(b.level(), 3);
        assert_eq!(b.open_until(), Some(t + Duration::from_secs(8)));
        assert_eq!(b.open_until_for(Pool::Short), Some(t + Duration::from_secs(1)));
        let after_1s = t + Duration::from_secs(1);
        assert!(!b.would_admit(after_1s, Pool::Ample));
        assert!(b.would_admit(after_1s, Pool::Short));
        assert_eq!(b.admit(after_1s, Pool::Ample).0, Admission::Refused(Some(t + Duration::from_secs(8))));
        // Short: three trials at once; the first success closes it.
        for _ in 0..3 {
            assert_eq!(b.admit(after_1s, Pool::Short).0, Admission::Trial);
        }
        assert_eq!(b.admit(after_1s, Pool::Short).0, Admission::Refused(None));
        assert_eq!(
            b.on_success(after_1s, 0.5, false).map(|t| (t.to, t.reason)),
            Some((State::Closed, "trials-succeeded"))
        );
        assert_eq!(b.level(), 0);
    }

    #[test]
    fn validate_bounds_the_short_pool_permits() {
        assert!(BreakerConfig { short_pool_permits: 0, ..Default::default() }.validate().is_err());
        assert!(BreakerConfig { short_pool_permits: 1001, ..Default::default() }.validate().is_err());
    }

    /// A pair that fails in bad windows and answers in good ones, tried as soon as its breaker
    /// admits (every 10 ms), each call taking 50 ms: the share of each good window (after the
    /// first few) in which the breaker is closed.
    fn closed_share_of_good_windows(window: Duration, pool: Pool, u: &[f64]) -> f64 {
        let c = BreakerConfig { jitter: 0.5, ..BreakerConfig::default() };
        let mut b = Breaker::new(c);
        let t0 = Instant::now();
        let step = Duration::from_millis(10);
        let call = Duration::from_millis(50);
        let (mut closed, mut total) = (0u32, 0u32);
        let mut k = 0usize;
        let mut busy_until = t0;
        let end = window * 16;
        let mut t = Duration::ZERO;
        while t < end {
            let now = t0 + t;
            let bad = (t.as_millis() / window.as_millis()).is_multiple_of(2);
            if !bad && t >= window * 4 {
                total += 1;
                closed += u32::from(b.state() == State::Closed);
            }
            if now >= busy_until {
                let (adm, _) = b.admit(now, pool);
                if !matches!(adm, Admission::Refused(_)) {
                    busy_until = now + call;
                    let done = now + call;
                    k += 1;
                    let r = u[k % u.len()];
                    if bad {
                        b.on_failure(done, r);
                    } else {
                        b.on_success(done, r, false);
                    }
                }
            }
            t += step;
        }
        f64::from(closed) / f64::from(total.max(1))
    }

    #[test]
    fn while_the_pool_is_ample_a_pair_failing_in_windows_stays_out_its_levels_time() {
        // The old behaviour, still right when its absence costs little: each failed trial
        // doubles the open time, so trials land in bad windows and most good time is lost.
        let share = closed_share_of_good_windows(Duration::from_secs(4), Pool::Ample, &[0.5]);
        assert!(share < 0.6, "closed {share:.2} of its good windows");
        let short = closed_share_of_good_windows(Duration::from_secs(4), Pool::Short, &[0.5]);
        assert!(short > 0.6, "closed {short:.2} of its good windows while the pool is short");
    }

    proptest::proptest! {
        #[test]
        fn a_pair_failing_in_windows_serves_most_of_its_good_windows_while_the_pool_is_short(
            window_ms in 2_000u64..8_000,
            u in proptest::collection::vec(0.0f64..1.0, 1..16),
        ) {
            let w = Duration::from_millis(window_ms);
            let share = closed_share_of_good_windows(w, Pool::Short, &u);
            // It waits at most base_open x 1.25 plus one call into each good window.
            let lost = (1250.0 + 60.0) / window_ms as f64;
            proptest::prop_assert!(share >= 1.0 - lost - 0.02, "closed {share:.2} of good windows of {window_ms} ms");
        }

        #[test]
        fn breaker_invariants_hold_for_any_sequence(
            ops in proptest::collection::vec((0u8..6, 0u64..3_000, 0.0f64..1.0, proptest::bool::ANY), 1..200),
            permits in 1u32..4,
            short_permits in 1u32..6,
        ) {
            let c = BreakerConfig {
                consecutive_failures: 2,
                half_open_permits: permits,
                short_pool_permits: short_permits,
                ..BreakerConfig::default()
            };
            let mut b = Breaker::new(c.clone());
            let mut now = Instant::now();
            let mut last_level = 0;
            for (op, dt, u, short) in ops {
                now += Duration::from_millis(dt);
                let pool = if short { Pool::Short } else { Pool::Ample };
                let t = match op {
                    0 | 1 => b.admit(now, pool).1,
                    2 => b.on_success(now, u, false),
                    3 => b.on_failure(now, u),
                    4 => b.on_neutral(),
                    _ => {
                        b.release_trial();
                        None
                    }
                };
                // Never more trials at once than the pool's permits allow (plus those
                // admitted while short, when it is ample now).
                proptest::prop_assert!(b.trials_used() <= permits.max(short_permits));
                match b.state() {
                    State::Closed => proptest::prop_assert!(b.open_until().is_none()),
                    State::Open => {
                        let (long, short) = (b.open_until_for(Pool::Ample), b.open_until_for(Pool::Short));
                        proptest::prop_assert!(long.is_some() && short.is_some() && short <= long);
                        let long_for = long.map(|l| l.saturating_duration_since(now)).unwrap_or_default();
                        let short_for = short.map(|s| s.saturating_duration_since(now)).unwrap_or_default();
                        proptest::prop_assert!(long_for <= c.max_open);
                        proptest::prop_assert!(short_for <= c.base_open.mul_f64(1.0 + c.jitter / 2.0));
                    }
                    State::HalfOpen => {}
                }
                // The level rises only by a failed trial, one at a time, and falls only to 0.
                let level = b.level();
                let why = t.map(|t| t.reason);
                proptest::prop_assert!(
                    level == last_level
                        || (level == last_level + 1 && why == Some("trial-failed"))
                        || (level == 0 && why == Some("trials-succeeded"))
                );
                last_level = level;
            }
        }
    }
}

//! Pure scoring: peak-EWMA latency, a window of recent latencies for measured percentiles, a
//! decaying success rate, the selection cost, and the power-of-two-choices pick that keeps
//! selection O(1) however many pairs a capability has.

use std::time::{Duration, Instant};

/// Latency estimate that jumps up at once on a slow sample and decays down slowly
/// (Finagle / tower `PeakEwma`): a pair that just got slow stops attracting traffic now,
/// one that got fast earns it back over `decay`.
///
/// Unlike Finagle's, the estimate does not decay while no sample arrives: it stays what was
/// measured, so the admin API shows a latency and an idle slow pair does not look fast.
/// Selection keeps idle pairs measured by sending them an occasional job instead (see
/// `scoreboard::EXPLORE_INTERVAL`).
#[derive(Debug, Clone, Copy)]
pub struct PeakEwma {
    estimate_ms: f64,
    updated: Option<Instant>,
    decay: Duration,
}

impl PeakEwma {
    /// Starts at `initial_ms` (a neutral guess, so new pairs are neither favoured nor shunned).
    pub fn new(initial_ms: f64, decay: Duration) -> Self {
        Self { estimate_ms: initial_ms.max(0.0), updated: None, decay }
    }

    /// Restores a persisted estimate whose last sample was taken at `updated`.
    pub(crate) fn restore(estimate_ms: f64, updated: Option<Instant>, decay: Duration) -> Self {
        Self { estimate_ms: estimate_ms.max(0.0), updated, decay }
    }

    /// When the last sample was taken.
    pub(crate) fn updated(&self) -> Option<Instant> {
        self.updated
    }

    /// The estimate as of the last sample, in milliseconds (what is persisted).
    pub(crate) fn estimate_ms(&self) -> f64 {
        self.estimate_ms
    }

    /// Folds in one sample taken at `now`.
    pub fn observe(&mut self, sample_ms: f64, now: Instant) {
        let sample_ms = sample_ms.max(0.0);
        if sample_ms >= self.estimate_ms || self.updated.is_none() {
            // Peak: a slower sample (or the first one) replaces the estimate at once.
            self.estimate_ms = sample_ms;
        } else {
            let elapsed = self.updated.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            let w = (-elapsed.as_secs_f64() / self.decay.as_secs_f64().max(1e-3)).exp();
            self.estimate_ms = self.estimate_ms * w + sample_ms * (1.0 - w);
        }
        self.updated = Some(now);
    }
}

/// Successful calls a [`LatencyWindow`] keeps.
pub(crate) const LATENCY_WINDOW: usize = 64;

/// The durations of a pair's last [`LATENCY_WINDOW`] successful calls, for measured
/// percentiles (what selection expects of the pair, what the admin API shows and what "stuck" is
/// measured against). Allocated on the first sample: an idle pair costs a pointer (at 10,000
/// pairs every byte of a pair actor counts 10,000 times).
#[derive(Debug, Clone, Default)]
pub(crate) struct LatencyWindow(Option<Box<Window>>);

#[derive(Debug, Clone)]
struct Window {
    samples: [f32; LATENCY_WINDOW],
    len: usize,
    next: usize,
    /// The percentiles as of the last sample, computed on the first read after it.
    cached: Option<(f32, f32)>,
    stale: bool,
}

impl LatencyWindow {
    /// Adds one successful call's duration.
    pub(crate) fn observe(&mut self, ms: f64) {
        let w = self.0.get_or_insert_with(|| {
            Box::new(Window { samples: [0.0; LATENCY_WINDOW], len: 0, next: 0, cached: None, stale: false })
        });
        w.samples[w.next] = ms.max(0.0) as f32;
        w.next = (w.next + 1) % LATENCY_WINDOW;
        w.len = (w.len + 1).min(LATENCY_WINDOW);
        w.stale = true;
    }

    /// Samples held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |w| w.len)
    }

    /// The median and the 99th percentile (nearest rank) of the window, in ms. Computed once
    /// per change (two selections on a copy on the stack, no sort, no allocation).
    pub(crate) fn percentiles(&mut self) -> Option<(f64, f64)> {
        let w = self.0.as_mut()?;
        if w.stale {
            w.stale = false;
            let n = w.len;
            let mut scratch = w.samples;
            let v = &mut scratch[..n];
            let rank = |p: f64| ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            let (i50, i99) = (rank(0.5), rank(0.99));
            let (_, p50, above) = v.select_nth_unstable_by(i50, f32::total_cmp);
            let p50 = *p50;
            let p99 = if i99 == i50 { p50 } else { *above.select_nth_unstable_by(i99 - i50 - 1, f32::total_cmp).1 };
            w.cached = Some((p50, p99));
        }
        w.cached.map(|(a, b)| (f64::from(a), f64::from(b)))
    }
}

/// Success rate as an exponentially weighted moving average of outcomes (1 = success).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SuccessRate {
    value: f64,
    alpha: f64,
}

impl SuccessRate {
    /// Starts at `initial` with weight `alpha` per new outcome.
    pub(crate) fn new(initial: f64, alpha: f64) -> Self {
        Self { value: initial.clamp(0.0, 1.0), alpha: alpha.clamp(0.001, 1.0) }
    }

    /// Current rate in [0, 1].
    pub(crate) fn value(&self) -> f64 {
        self.value
    }

    /// Folds in one outcome.
    pub(crate) fn observe(&mut self, success: bool) {
        let x = if success { 1.0 } else { 0.0 };
        self.value += self.alpha * (x - self.value);
    }
}

/// The inputs of a pair's selection cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CostInputs {
    /// Peak-EWMA latency in milliseconds.
    pub(crate) latency_ms: f64,
    /// Calls in flight now.
    pub(crate) inflight: u32,
    /// The pair's concurrency limit.
    pub(crate) limit: u32,
    /// Success rate in [0, 1].
    pub(crate) success_rate: f64,
}

/// `cost = latency x (1 + inflight / limit) / health`; lower is better.
///
/// An orchestrator runs up to its limit of jobs side by side, so a job's expected time there
/// is its measured latency, not latency x queue length; the load term only spreads jobs over
/// pairs of about the same speed (a pair half full costs 1.5x), and a slower pair wins only
/// once the faster ones are mostly busy. Health is floored so that a pair at 0 % success still
/// has a finite (very high) cost rather than a division by zero.
pub(crate) fn cost(inputs: CostInputs) -> f64 {
    let health = inputs.success_rate.clamp(0.05, 1.0);
    let load = f64::from(inputs.inflight) / f64::from(inputs.limit.max(1));
    inputs.latency_ms.max(0.1) * (1.0 + load) / health
}

/// The latency to expect of a pair whose jobs in flight have had no answer for `unanswered_ms`
/// (its silence, [`Slots::unanswered`](crate::pair::Slots)): its usual latency `expected_ms`,
/// or, once the silence is past the pair's own p99 (its jobs are overdue), at least the
/// silence itself. A pair whose jobs have stopped coming back is slow now, before any of its
/// slow answers arrive: Finagle's and Linkerd's peak-EWMA count pending requests for the same
/// reason. Without measurements (`p99_ms` is `None`) there is nothing to be overdue against.
///
/// A factor of its own in the selection cost (beside the measured latency, the load, health
/// and price), so each can be read and tuned apart.
pub(crate) fn in_flight_latency(expected_ms: f64, p99_ms: Option<f64>, unanswered_ms: Option<f64>) -> f64 {
    match (p99_ms, unanswered_ms) {
        (Some(p99), Some(silence)) if silence > p99.max(expected_ms) => expected_ms.max(silence),
        _ => expected_ms,
    }
}

/// Random samples drawn before falling back to a walk.
const P2C_SAMPLES: usize = 8;

/// Power of two choices over `len` slots. `cost_of(i)` returns `None` for a slot that may
/// not be picked (unroutable, already tried) and its cost otherwise; `rand(n)` returns a
/// uniform index below `n`.
///
/// Up to [`P2C_SAMPLES`] random probes look for two eligible slots. When most slots are
/// ineligible (a pool mostly out of rotation) the probes can miss; then a walk from a random
/// start collects the next two eligible slots. Either way the expected work is about
/// `2 / p` probes for an eligible share `p`, independent of `len`; only when almost nothing
/// is eligible does the walk approach `len` (and it is exact: it finds the last eligible slot
/// or proves there is none).
pub(crate) fn p2c<F, R>(len: usize, mut cost_of: F, mut rand: R) -> Option<usize>
where
    F: FnMut(usize) -> Option<f64>,
    R: FnMut(usize) -> usize,
{
    match len {
        0 => return None,
        1 => return cost_of(0).map(|_| 0),
        _ => {}
    }
    let better = |a: (usize, f64), b: (usize, f64)| if b.1 < a.1 { b.0 } else { a.0 };
    let mut first: Option<(usize, f64)> = None;
    // Looks at slot `i`; returns the pick once a second eligible slot is found.
    let mut consider = |i: usize, first: &mut Option<(usize, f64)>| -> Option<usize> {
        if first.is_some_and(|(j, _)| j == i) {
            return None;
        }
        let c = cost_of(i)?;
        match *first {
            None => {
                *first = Some((i, c));
                None
            }
            Some(a) => Some(better(a, (i, c))),
        }
    };
    for _ in 0..P2C_SAMPLES {
        if let Some(pick) = consider(rand(len), &mut first) {
            return Some(pick);
        }
    }
    // Walk: from a random start, wrapping once, until a second eligible slot turns up.
    let start = rand(len);
    for k in 0..len {
        if let Some(pick) = consider((start + k) % len, &mut first) {
            return Some(pick);
        }
    }
    first.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(100.0, Duration::from_secs(10));
        e.observe(500.0, t0);
        assert_eq!(e.estimate_ms(), 500.0);
        e.observe(100.0, t0 + Duration::from_secs(10));
        let v = e.estimate_ms();
        // One decay period: weight e^-1 on the old value.
        assert!((v - (500.0 * (-1f64).exp() + 100.0 * (1.0 - (-1f64).exp()))).abs() < 1e-6, "{v}");
        // A sample right after barely moves it.
        e.observe(10.0, t0 + Duration::from_secs(10));
        assert!((e.estimate_ms() - v).abs() < 1e-9);
    }

    #[test]
    fn latency_window_keeps_the_last_samples_and_ranks_them() {
        let mut w = LatencyWindow::default();
        assert_eq!(w.percentiles(), None);
        w.observe(7.0);
        assert_eq!(w.percentiles(), Some((7.0, 7.0)));
        for ms in 1..=100 {
            w.observe(f64::from(ms));
        }
        assert_eq!(w.len(), LATENCY_WINDOW);
        // The last 64 samples are 37..=100.
        assert_eq!(w.percentiles(), Some((68.0, 100.0)));
        w.observe(5000.0);
        assert_eq!(w.percentiles().map(|p| p.1), Some(5000.0));
    }

    proptest::proptest! {
        #[test]
        fn latency_window_percentiles_are_the_nearest_ranks_of_the_last_samples(
            samples in proptest::collection::vec(0.0f64..10_000.0, 1..200)
        ) {
            let mut w = LatencyWindow::default();
            for &s in &samples {
                w.observe(s);
            }
            let mut last: Vec<f32> = samples.iter().rev().take(LATENCY_WINDOW).map(|&s| s as f32).collect();
            last.sort_by(f32::total_cmp);
            let rank = |p: f64| f64::from(last[((p * last.len() as f64).ceil() as usize).clamp(1, last.len()) - 1]);
            proptest::prop_assert_eq!(w.percentiles(), Some((rank(0.5), rank(0.99))));
        }
    }

    #[test]
    fn success_rate_moves_towards_outcomes() {
        let mut s = SuccessRate::new(1.0, 0.5);
        s.observe(false);
        assert_eq!(s.value(), 0.5);
        s.observe(false);
        assert_eq!(s.value(), 0.25);
        s.observe(true);
        assert_eq!(s.value(), 0.625);
    }

    #[test]
    fn cost_orders_by_latency_load_and_health() {
        let base = CostInputs { latency_ms: 100.0, inflight: 0, limit: 4, success_rate: 1.0 };
        assert!(cost(base) < cost(CostInputs { latency_ms: 200.0, ..base }));
        assert!(cost(base) < cost(CostInputs { inflight: 1, ..base }));
        // A fast pair three-quarters full still beats an idle one twice as slow.
        assert!(cost(CostInputs { inflight: 3, ..base }) < cost(CostInputs { latency_ms: 200.0, ..base }));
        assert!(cost(base) < cost(CostInputs { success_rate: 0.5, ..base }));
        assert!(cost(CostInputs { success_rate: 0.0, ..base }).is_finite());
    }

    #[test]
    fn a_pair_whose_jobs_are_overdue_is_expected_to_take_at_least_their_silence() {
        // Within its usual times: its usual latency.
        assert_eq!(in_flight_latency(50.0, Some(80.0), Some(70.0)), 50.0);
        assert_eq!(in_flight_latency(50.0, Some(80.0), None), 50.0, "nothing in flight");
        assert_eq!(in_flight_latency(50.0, None, Some(5000.0)), 50.0, "unmeasured: nothing to be late against");
        // Past its p99 with nothing back: at least the silence, and growing with it.
        assert_eq!(in_flight_latency(50.0, Some(80.0), Some(200.0)), 200.0);
        assert_eq!(in_flight_latency(50.0, Some(80.0), Some(900.0)), 900.0);
    }

    #[test]
    fn p2c_picks_the_cheaper_of_two_samples() {
        let costs = [5.0, 1.0, 9.0];
        let mut seq = [0usize, 2].into_iter();
        let pick = p2c(3, |i| Some(costs[i]), |_| seq.next().unwrap_or(1));
        assert_eq!(pick, Some(0));
    }

    #[test]
    fn p2c_skips_ineligible_and_falls_back_to_scan() {
        // Only slot 3 is eligible; random probes always hit slot 0.
        let pick = p2c(5, |i| (i == 3).then_some(1.0), |_| 0);
        assert_eq!(pick, Some(3));
        assert_eq!(p2c(5, |_| None, |n| n - 1), None);
        assert_eq!(p2c(0, |_| Some(1.0), |_| 0), None);
        assert_eq!(p2c(1, |_| Some(1.0), |_| 0), Some(0));
        assert_eq!(p2c(1, |_| None, |_| 0), None);
    }

    #[test]
    fn p2c_walk_cost_does_not_grow_with_the_board_when_few_are_eligible() {
        // 10 % eligible: the work is about the same at 1,000 and 100,000 slots.
        let probes_for = |len: usize| {
            let mut probes = 0usize;
            let mut seed = 12345u64;
            for _ in 0..200 {
                let pick = p2c(
                    len,
                    |i| {
                        probes += 1;
                        (i % 10 == 3).then_some(i as f64)
                    },
                    |n| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (seed >> 33) as usize % n
                    },
                );
                assert!(pick.is_some_and(|i| i % 10 == 3));
            }
            probes as f64 / 200.0
        };
        let (small, large) = (probes_for(1_000), probes_for(100_000));
        assert!(large < small * 1.5 + 5.0, "probes per pick: {small} at 1k vs {large} at 100k");
        assert!(large < 60.0, "{large}");
    }

    #[test]
    fn p2c_probes_a_bounded_number_of_slots_when_many_are_eligible() {
        let mut probes = 0;
        let mut i = 0;
        let pick = p2c(
            10_000,
            |_| {
                probes += 1;
                Some(1.0)
            },
            |n| {
                i = (i + 7919) % n;
                i
            },
        );
        assert!(pick.is_some());
        assert_eq!(probes, 2);
    }
}

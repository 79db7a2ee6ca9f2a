//! The status page's recent past: a bounded ring of samples, one every `period` (10 s by
//! default), over a `window` (15 min): per pair its median latency and success ratio, per
//! capability its answers per second, queue depth and queue wait. Pure: the supervisor feeds
//! it counters it reads from the pairs' views and the queues (`supervisor/history.rs`), and
//! the admin API reads it (`GET /admin/history`).
//!
//! Memory is bounded whatever happens: `window / period` samples (at most [`MAX_SAMPLES`]) of
//! at most `max_pairs` pairs and [`MAX_CAPABILITIES`] capabilities, four bytes a value; a pair
//! or capability that is gone at a sample is dropped with its series.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use crate::capability::Capability;
use crate::pair::view::PairKey;

/// Most samples a series holds (the window over the period).
pub const MAX_SAMPLES: usize = 1_000;
/// Most capabilities with series.
pub const MAX_CAPABILITIES: usize = 1_000;

/// How often to sample, how far back to keep, and for how many pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// Time between samples.
    pub period: Duration,
    /// How far back the series reach.
    pub window: Duration,
    /// Pairs with series, the first in (orchestrator id, capability) order.
    pub max_pairs: usize,
}

impl Default for HistorySettings {
    fn default() -> Self {
        Self { period: Duration::from_secs(10), window: Duration::from_secs(15 * 60), max_pairs: 1_000 }
    }
}

impl HistorySettings {
    /// Samples a series holds: the window over the period, at least 2, at most [`MAX_SAMPLES`].
    pub fn samples(&self) -> usize {
        let n = self.window.as_millis() / self.period.as_millis().max(1);
        (n as usize).clamp(2, MAX_SAMPLES)
    }
}

/// A pair as read at one sample: its cumulative counters and its current median latency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairReading {
    /// 2xx answers so far.
    pub success: u64,
    /// Failed calls so far (5xx, connect, timeout, transport, out of memory, contract,
    /// refusals, bad status; not the client's 4xx nor capacity refusals).
    pub failures: u64,
    /// Median of its recent successful calls, in ms.
    pub p50_ms: Option<f64>,
}

/// A capability as read at one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapabilityReading {
    /// Jobs waiting in its queue now.
    pub queue_depth: u64,
    /// Jobs its queue has handed a slot so far.
    pub dispatched: u64,
    /// Their summed wait so far, in ms.
    pub wait_ms_total: u64,
}

/// A fixed-capacity series: pushing past the capacity drops the oldest value. `NaN` is "no
/// value" (nothing happened in that interval), shown as `null`.
#[derive(Debug, Clone, PartialEq)]
struct Ring {
    values: VecDeque<f32>,
}

impl Ring {
    /// A series of `len` empty values (a series that starts after the others lines up).
    fn empty(len: usize, capacity: usize) -> Self {
        let mut values = VecDeque::with_capacity(capacity);
        values.extend(std::iter::repeat_n(f32::NAN, len));
        Self { values }
    }

    fn push(&mut self, v: Option<f64>, capacity: usize) {
        if self.values.len() == capacity {
            self.values.pop_front();
        }
        self.values.push_back(v.map_or(f32::NAN, |v| v as f32));
    }

    fn values(&self) -> Vec<Option<f32>> {
        self.values.iter().map(|v| (!v.is_nan()).then_some(*v)).collect()
    }
}

#[derive(Debug, Clone)]
struct PairSeries {
    last: PairReading,
    latency: Ring,
    success: Ring,
}

#[derive(Debug, Clone)]
struct CapabilitySeries {
    /// Summed over its pairs at the last sample.
    last_answers: (u64, u64),
    last: CapabilityReading,
    ok_per_sec: Ring,
    failed_per_sec: Ring,
    queue_depth: Ring,
    queue_wait_ms: Ring,
}

/// The samples so far.
#[derive(Debug, Clone)]
pub struct History {
    settings: HistorySettings,
    capacity: usize,
    /// When each sample was taken (Unix ms); every series has one value per entry.
    times: VecDeque<u64>,
    pairs: BTreeMap<PairKey, PairSeries>,
    capabilities: BTreeMap<Capability, CapabilitySeries>,
    /// Pairs left without series at the last sample (over `max_pairs`).
    pairs_omitted: usize,
}

/// Counter growth between two readings; a counter that went down (a pair restored from an
/// older record) counts from zero.
fn growth(now: u64, before: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

impl History {
    /// An empty history.
    pub fn new(settings: HistorySettings) -> Self {
        let capacity = settings.samples();
        Self {
            settings,
            capacity,
            times: VecDeque::with_capacity(capacity),
            pairs: BTreeMap::new(),
            capabilities: BTreeMap::new(),
            pairs_omitted: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &HistorySettings {
        &self.settings
    }

    /// Records one sample taken at `at_unix_ms`, `elapsed` after the previous one: `pairs` in
    /// key order (only the first `max_pairs` get series) and `capabilities`. Series of pairs
    /// and capabilities not in this sample are dropped.
    pub fn record(
        &mut self,
        at_unix_ms: u64,
        elapsed: Duration,
        pairs: &[(PairKey, PairReading)],
        capabilities: &[(Capability, CapabilityReading)],
    ) {
        let capacity = self.capacity;
        let len = self.times.len();
        if len == capacity {
            self.times.pop_front();
        }
        self.times.push_back(at_unix_ms);
        let len_before = len.min(capacity - 1);
        let seconds = elapsed.as_secs_f64().max(0.001);

        let kept = pairs.len().min(self.settings.max_pairs);
        self.pairs_omitted = pairs.len() - kept;
        let mut answers: BTreeMap<&Capability, (u64, u64)> = BTreeMap::new();
        for (key, r) in pairs {
            let a = answers.entry(&key.capability).or_default();
            a.0 += r.success;
            a.1 += r.failures;
        }
        let mut next_pairs = BTreeMap::new();
        for (key, r) in &pairs[..kept] {
            let mut s = self.pairs.remove(key).unwrap_or_else(|| PairSeries {
                last: *r,
                latency: Ring::empty(len_before, capacity),
                success: Ring::empty(len_before, capacity),
            });
            let (ok, failed) = (growth(r.success, s.last.success), growth(r.failures, s.last.failures));
            let answered = ok + failed;
            s.success.push((answered > 0).then(|| ok as f64 / answered as f64), capacity);
            s.latency.push(r.p50_ms.filter(|_| ok > 0), capacity);
            s.last = *r;
            next_pairs.insert(key.clone(), s);
        }
        self.pairs = next_pairs;

        let mut next_caps = BTreeMap::new();
        for (cap, r) in capabilities.iter().take(MAX_CAPABILITIES) {
            let now = answers.get(cap).copied().unwrap_or_default();
            let mut s = self.capabilities.remove(cap).unwrap_or_else(|| CapabilitySeries {
                last_answers: now,
                last: *r,
                ok_per_sec: Ring::empty(len_before, capacity),
                failed_per_sec: Ring::empty(len_before, capacity),
                queue_depth: Ring::empty(len_before, capacity),
                queue_wait_ms: Ring::empty(len_before, capacity),
            });
            s.ok_per_sec.push(Some(growth(now.0, s.last_answers.0) as f64 / seconds), capacity);
            s.failed_per_sec.push(Some(growth(now.1, s.last_answers.1) as f64 / seconds), capacity);
            s.queue_depth.push(Some(r.queue_depth as f64), capacity);
            let dispatched = growth(r.dispatched, s.last.dispatched);
            let waited = growth(r.wait_ms_total, s.last.wait_ms_total);
            s.queue_wait_ms.push((dispatched > 0).then(|| waited as f64 / dispatched as f64), capacity);
            s.last_answers = now;
            s.last = *r;
            next_caps.insert(cap.clone(), s);
        }
        self.capabilities = next_caps;
    }

    /// What `GET /admin/history` answers.
    pub fn report(&self) -> HistoryReport {
        HistoryReport {
            period_ms: self.settings.period.as_millis() as u64,
            window_ms: self.settings.window.as_millis() as u64,
            samples_max: self.capacity,
            samples: self.times.iter().copied().collect(),
            pairs: self
                .pairs
                .iter()
                .map(|(k, s)| PairHistory {
                    orchestrator: k.orchestrator.to_string(),
                    capability: k.capability.to_string(),
                    latency_p50_ms: s.latency.values(),
                    success_ratio: s.success.values(),
                })
                .collect(),
            pairs_omitted: self.pairs_omitted,
            capabilities: self
                .capabilities
                .iter()
                .map(|(c, s)| CapabilityHistory {
                    name: c.to_string(),
                    ok_per_sec: s.ok_per_sec.values(),
                    failed_per_sec: s.failed_per_sec.values(),
                    queue_depth: s.queue_depth.values(),
                    queue_wait_ms: s.queue_wait_ms.values(),
                })
                .collect(),
        }
    }

    /// Values held over all series (what the memory bound counts).
    pub fn values_held(&self) -> usize {
        self.times.len()
            + self.pairs.values().map(|s| s.latency.values.len() + s.success.values.len()).sum::<usize>()
            + self.capabilities.values().map(|s| 4 * s.queue_depth.values.len()).sum::<usize>()
    }
}

/// `GET /admin/history`: one value per sample in every series (`null` where nothing happened
/// in that interval), oldest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryReport {
    /// Time between samples, in ms.
    pub period_ms: u64,
    /// How far back the series reach, in ms.
    pub window_ms: u64,
    /// Most samples a series holds.
    pub samples_max: usize,
    /// When each sample was taken (Unix ms).
    pub samples: Vec<u64>,
    /// Per pair, in (orchestrator id, capability) order.
    pub pairs: Vec<PairHistory>,
    /// Pairs without series (over `history.max_pairs`).
    pub pairs_omitted: usize,
    /// Per capability.
    pub capabilities: Vec<CapabilityHistory>,
}

/// One pair's series.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PairHistory {
    /// Orchestrator id.
    pub orchestrator: String,
    /// Capability.
    pub capability: String,
    /// Median latency of its recent successful calls (ms), when it answered in the interval.
    pub latency_p50_ms: Vec<Option<f32>>,
    /// Share of its calls in the interval that succeeded (client 4xx and capacity refusals
    /// left out), when it had any.
    pub success_ratio: Vec<Option<f32>>,
}

/// One capability's series.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CapabilityHistory {
    /// Capability.
    pub name: String,
    /// Successful answers per second over the interval, summed over its pairs.
    pub ok_per_sec: Vec<Option<f32>>,
    /// Failed calls per second over the interval.
    pub failed_per_sec: Vec<Option<f32>>,
    /// Jobs waiting in its queue at the sample.
    pub queue_depth: Vec<Option<f32>>,
    /// Mean wait of the jobs its queue dispatched in the interval (ms), when any.
    pub queue_wait_ms: Vec<Option<f32>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::OrchestratorId;

    fn key(o: &str, c: &str) -> PairKey {
        PairKey { orchestrator: OrchestratorId(o.into()), capability: Capability::new(c).expect("valid") }
    }

    fn settings(samples: u64, max_pairs: usize) -> HistorySettings {
        HistorySettings { period: Duration::from_secs(10), window: Duration::from_secs(10 * samples), max_pairs }
    }

    fn reading(success: u64, failures: u64, p50: f64) -> PairReading {
        PairReading { success, failures, p50_ms: Some(p50) }
    }

    const TEN: Duration = Duration::from_secs(10);

    #[test]
    fn samples_are_window_over_period_and_bounded() {
        assert_eq!(HistorySettings::default().samples(), 90, "15 minutes of 10 s samples");
        assert_eq!(settings(1, 1).samples(), 2, "at least two");
        let tiny =
            HistorySettings { period: Duration::from_millis(1), window: Duration::from_secs(3600), max_pairs: 1 };
        assert_eq!(tiny.samples(), MAX_SAMPLES);
    }

    #[test]
    fn every_series_keeps_at_most_the_window_however_long_it_runs() {
        let mut h = History::new(settings(5, 10));
        let k = key("orch-1", "depth");
        let depth = Capability::new("depth").expect("valid");
        for i in 0..1_000u64 {
            let pairs = [(k.clone(), reading(i * 3, i, 40.0 + i as f64))];
            let caps =
                [(depth.clone(), CapabilityReading { queue_depth: i % 4, dispatched: i, wait_ms_total: i * 20 })];
            h.record(i * 10_000, TEN, &pairs, &caps);
            assert!(h.times.len() <= 5);
        }
        let r = h.report();
        assert_eq!(r.samples, vec![9_950_000, 9_960_000, 9_970_000, 9_980_000, 9_990_000], "the newest five");
        assert_eq!(r.pairs[0].latency_p50_ms.len(), 5);
        assert_eq!(r.pairs[0].latency_p50_ms[4], Some(1039.0));
        assert_eq!(r.pairs[0].success_ratio[4], Some(0.75), "3 successes and 1 failure per interval");
        assert_eq!(r.capabilities[0].ok_per_sec[4], Some(0.3));
        assert_eq!(r.capabilities[0].failed_per_sec[4], Some(0.1));
        assert_eq!(r.capabilities[0].queue_wait_ms[4], Some(20.0));
        assert_eq!(h.values_held(), 5 + 2 * 5 + 4 * 5);
    }

    #[test]
    fn pairs_past_the_bound_get_no_series_and_vanished_ones_are_dropped() {
        let mut h = History::new(settings(4, 2));
        let keys: Vec<PairKey> = (1..=5).map(|i| key(&format!("orch-{i}"), "depth")).collect();
        let all: Vec<(PairKey, PairReading)> = keys.iter().map(|k| (k.clone(), reading(0, 0, 5.0))).collect();
        h.record(1, TEN, &all, &[]);
        let r = h.report();
        assert_eq!(r.pairs.iter().map(|p| p.orchestrator.as_str()).collect::<Vec<_>>(), vec!["orch-1", "orch-2"]);
        assert_eq!(r.pairs_omitted, 3);
        // orch-1 is removed: its series goes, orch-3 takes its place and starts empty.
        h.record(2, TEN, &all[1..], &[]);
        let r = h.report();
        assert_eq!(r.pairs.iter().map(|p| p.orchestrator.as_str()).collect::<Vec<_>>(), vec!["orch-2", "orch-3"]);
        assert_eq!(r.pairs[1].success_ratio, vec![None, None], "lined up with the samples, nothing before it");
        assert_eq!(h.pairs.len(), 2);
    }

    #[test]
    fn an_idle_interval_is_a_gap_not_a_stale_value() {
        let mut h = History::new(settings(10, 10));
        let k = key("orch-1", "depth");
        h.record(1, TEN, &[(k.clone(), reading(10, 0, 30.0))], &[]);
        h.record(2, TEN, &[(k.clone(), reading(12, 2, 31.0))], &[]);
        h.record(3, TEN, &[(k.clone(), reading(12, 2, 31.0))], &[]);
        h.record(4, TEN, &[(k.clone(), reading(12, 6, 31.0))], &[]);
        let r = h.report();
        assert_eq!(r.pairs[0].success_ratio, vec![None, Some(0.5), None, Some(0.0)]);
        assert_eq!(r.pairs[0].latency_p50_ms, vec![None, Some(31.0), None, None], "no success, no latency");
    }

    #[test]
    fn a_counter_that_goes_back_counts_from_zero() {
        assert_eq!(growth(5, 3), 2);
        assert_eq!(growth(2, 9), 2);
    }
}

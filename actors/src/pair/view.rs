//! What a pair actor publishes about itself: the live [`PairView`] the dispatcher selects
//! from and the admin API reports, and the [`PairRecord`] the store persists.
//!
//! Only the pair actor writes its view (after every change of its state); the dispatcher and
//! the supervisor read it without a message round trip, which keeps selection O(1) and
//! `/admin/pairs` cheap with thousands of pairs.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::breaker::State;
use crate::capability::Capability;
use crate::orchestrator::OrchestratorId;
use crate::score::PeakEwma;

/// Identifies a pair: one orchestrator serving one capability.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PairKey {
    /// The orchestrator.
    pub orchestrator: OrchestratorId,
    /// The capability.
    pub capability: Capability,
}

impl fmt::Display for PairKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.orchestrator, self.capability)
    }
}

/// The last failure a pair saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LastError {
    /// Failure class (`connect`, `timeout`, `http-5xx`, `token`, ...).
    pub class: String,
    /// Human-readable detail.
    pub message: String,
    /// Unix time in milliseconds.
    pub at_unix_ms: u64,
}

/// Outcome counters of a pair, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Counters {
    /// 2xx answers.
    pub success: u64,
    /// 4xx answers (the client's fault; relayed, not held against the pair).
    pub http_4xx: u64,
    /// 5xx answers.
    pub http_5xx: u64,
    /// Connect refused, reset or unreachable.
    pub connect: u64,
    /// No answer in time.
    pub timeout: u64,
    /// Broken transport or unusable answer.
    pub transport: u64,
    /// 5xx answers recognised as GPU out-of-memory (counted here, not in `http_5xx`).
    pub oom: u64,
    /// Capacity refusals (503/429): backed off, not held against health.
    pub capacity: u64,
    /// 2xx answers with the wrong content type (response contract broken).
    pub contract: u64,
}

/// The live state of a pair as published by its actor.
#[derive(Debug, Clone)]
pub struct PairView {
    /// Which pair.
    pub key: PairKey,
    /// Orchestrator base URL (where tokens are probed).
    pub orchestrator_url: Arc<str>,
    /// Where jobs go (the token's `service_addr`), once a token was seen.
    pub service_addr: Option<Arc<str>>,
    /// Breaker state.
    pub breaker: State,
    /// Breaker level (consecutive openings).
    pub breaker_level: u32,
    /// When an open breaker admits a trial.
    pub open_until: Option<Instant>,
    /// Whether a half-open breaker has a trial permit left.
    pub trial_available: bool,
    /// Consecutive failures while closed.
    pub consecutive_failures: u32,
    /// The first token probe of this incarnation has finished.
    pub probed: bool,
    /// The last token probe succeeded.
    pub token_ok: bool,
    /// Capacity from the last token.
    pub available_capacity: i64,
    /// Price from the last token (wei per `pixels_per_unit`).
    pub price_per_unit: i64,
    /// Units the price covers.
    pub pixels_per_unit: i64,
    /// The orchestrator has offered this capability at least once (capacity > 0 or an answer).
    pub offered: bool,
    /// Peak-EWMA latency estimate (read it with `latency.estimate_at(now)`).
    pub latency: PeakEwma,
    /// Decaying success rate.
    pub success_rate: f64,
    /// Calls admitted with a lease (trials, cold start) and not yet recorded.
    pub inflight: u32,
    /// Calls admitted on the fast path and not yet finished: counted by the caller (an
    /// [`InflightGuard`] increments it and decrements it when dropped, so a cancelled call
    /// cannot leak one), read here. Shared with the pair actor, which owns the cell.
    pub live_inflight: Arc<AtomicU32>,
    /// Duration of the first answer this pair gave.
    pub cold_start_ms: Option<u64>,
    /// The last failure.
    pub last_error: Option<Arc<LastError>>,
    /// Restarts by the supervisor.
    pub restarts: u32,
    /// Outcome counters.
    pub counters: Counters,
    /// Retired (orchestrator removed): takes no new work.
    pub retired: bool,
    /// Its orchestrator is disabled by the operator (draining).
    pub disabled: bool,
    /// A connect failure on this orchestrator (this pair or a sibling) awaits a re-probe.
    pub node_unreachable: bool,
    /// The advertised price is over the capability's ceiling.
    pub over_ceiling: bool,
    /// Price relative to the ceiling in [0, 1], a factor in the selection cost.
    pub price_share: f64,
    /// No answer yet since the pair started (or its orchestrator came back): limited
    /// concurrency.
    pub warming: bool,
    /// Jobs a warming pair may have in flight.
    pub cold_start_concurrency: u32,
    /// A configured warm-up job has not succeeded yet: no client traffic.
    pub warmup_pending: bool,
    /// A slow cold start deprioritises the pair until then.
    pub deprioritized_until: Option<Instant>,
    /// A capacity refusal keeps the pair out of rotation until then.
    pub capacity_backoff_until: Option<Instant>,
    /// Bumped on every publish that changes a persisted field ([`PairRecord`]); the
    /// supervisor persists pairs whose generation moved.
    pub generation: u64,
}

/// Why a pair cannot take a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unroutable {
    /// Its orchestrator was removed.
    Retired,
    /// Its orchestrator is disabled (draining) by the operator.
    Disabled,
    /// Its first token probe has not finished yet.
    TokenPending,
    /// It never offered the capability.
    NotOffered,
    /// The last token probe failed.
    TokenUnavailable,
    /// The token reports no capacity.
    NoCapacity,
    /// A connect failure on this orchestrator; waiting for a re-probe.
    NodeUnreachable,
    /// The advertised price is over the capability's ceiling.
    PriceOverCeiling,
    /// The configured warm-up job has not succeeded yet.
    WarmingUp,
    /// The orchestrator refused for capacity; backing off until the instant.
    CapacityBackoff(Instant),
    /// Not answered yet since start and already at its cold-start concurrency.
    ColdStart,
    /// The breaker is open (until the instant, if known) or out of trial permits.
    BreakerOpen(Option<Instant>),
}

impl Unroutable {
    /// Stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unroutable::Retired => "retired",
            Unroutable::Disabled => "disabled",
            Unroutable::TokenPending => "token-pending",
            Unroutable::NotOffered => "not-offered",
            Unroutable::TokenUnavailable => "token-unavailable",
            Unroutable::NoCapacity => "no-capacity",
            Unroutable::NodeUnreachable => "node-unreachable",
            Unroutable::PriceOverCeiling => "price-over-ceiling",
            Unroutable::WarmingUp => "warming-up",
            Unroutable::CapacityBackoff(_) => "capacity-backoff",
            Unroutable::ColdStart => "cold-start",
            Unroutable::BreakerOpen(_) => "breaker-open",
        }
    }
}

impl PairView {
    /// A fresh view for a pair that has not probed yet.
    pub fn new(key: PairKey, orchestrator_url: Arc<str>) -> Self {
        Self {
            key,
            orchestrator_url,
            service_addr: None,
            breaker: State::Closed,
            breaker_level: 0,
            open_until: None,
            trial_available: false,
            consecutive_failures: 0,
            probed: false,
            token_ok: false,
            available_capacity: 0,
            price_per_unit: 0,
            pixels_per_unit: 1,
            offered: false,
            latency: PeakEwma::new(0.0, std::time::Duration::from_secs(10)),
            success_rate: 1.0,
            inflight: 0,
            live_inflight: Arc::default(),
            cold_start_ms: None,
            last_error: None,
            restarts: 0,
            counters: Counters::default(),
            retired: false,
            disabled: false,
            node_unreachable: false,
            over_ceiling: false,
            price_share: 0.0,
            warming: false,
            cold_start_concurrency: 1,
            warmup_pending: false,
            deprioritized_until: None,
            capacity_backoff_until: None,
            generation: 0,
        }
    }

    /// Whether the pair can take a job at `now`, and if not, why.
    pub fn routable_at(&self, now: Instant) -> Result<(), Unroutable> {
        if self.retired {
            return Err(Unroutable::Retired);
        }
        if self.disabled {
            return Err(Unroutable::Disabled);
        }
        if !self.probed {
            return Err(Unroutable::TokenPending);
        }
        if !self.offered {
            return Err(Unroutable::NotOffered);
        }
        if !self.token_ok {
            return Err(Unroutable::TokenUnavailable);
        }
        if self.node_unreachable {
            return Err(Unroutable::NodeUnreachable);
        }
        if self.available_capacity <= 0 {
            return Err(Unroutable::NoCapacity);
        }
        if self.over_ceiling {
            return Err(Unroutable::PriceOverCeiling);
        }
        if self.warmup_pending {
            return Err(Unroutable::WarmingUp);
        }
        if let Some(t) = self.capacity_backoff_until.filter(|t| now < *t) {
            return Err(Unroutable::CapacityBackoff(t));
        }
        if self.warming && self.total_inflight() >= self.cold_start_concurrency {
            return Err(Unroutable::ColdStart);
        }
        match self.breaker {
            State::Closed => Ok(()),
            State::Open => match self.open_until {
                Some(t) if now < t => Err(Unroutable::BreakerOpen(Some(t))),
                _ => Ok(()),
            },
            State::HalfOpen if self.trial_available => Ok(()),
            State::HalfOpen => Err(Unroutable::BreakerOpen(None)),
        }
    }

    /// Calls in flight: leased plus fast-path.
    pub fn total_inflight(&self) -> u32 {
        self.inflight.saturating_add(self.live_inflight.load(Ordering::Relaxed))
    }

    /// Where to send a job admitted without asking the actor, when that is safe: the pair is
    /// routable, its breaker closed (so no trial permit is at stake) and it is not warming
    /// (so no cold-start concurrency limit applies). `None` means "ask the actor" ([`Admit`]).
    ///
    /// A breaker closed here may open a moment later; the few calls already admitted are
    /// then recorded as non-trial calls, which an open or half-open breaker does not count.
    ///
    /// [`Admit`]: crate::pair::Admit
    pub fn fast_admission(&self, now: Instant) -> Option<Arc<str>> {
        if self.breaker != State::Closed || self.warming {
            return None;
        }
        self.routable_at(now).ok()?;
        self.service_addr.clone()
    }

    /// Selection cost at `now` (lower is better): peak-EWMA latency x (in-flight + 1) /
    /// success rate, times 1 + half the price share of the ceiling (a pair at the ceiling
    /// must be 1.5x better to win), times 10 while a slow cold start deprioritises it.
    pub fn cost_at(&self, now: Instant) -> f64 {
        let base = crate::score::cost(crate::score::CostInputs {
            latency_ms: self.latency.estimate_at(now),
            inflight: self.total_inflight(),
            success_rate: self.success_rate,
        });
        let deprioritized = self.deprioritized_until.is_some_and(|t| now < t);
        base * (1.0 + 0.5 * self.price_share) * if deprioritized { 10.0 } else { 1.0 }
    }

    /// The admin API's JSON shape of this view at `now`.
    pub fn report(&self, now: Instant) -> PairReport {
        let routable = self.routable_at(now);
        PairReport {
            orchestrator: self.key.orchestrator.to_string(),
            orchestrator_url: self.orchestrator_url.to_string(),
            capability: self.key.capability.to_string(),
            service_addr: self.service_addr.as_deref().map(str::to_string),
            breaker: BreakerReport {
                state: self.breaker.as_str(),
                level: self.breaker_level,
                consecutive_failures: self.consecutive_failures,
                open_until_unix_ms: self.open_until.map(|t| instant_to_unix_ms(t, now)),
            },
            routable: routable.is_ok(),
            unroutable_reason: routable.err().map(Unroutable::as_str),
            latency_ewma_ms: (self.latency.estimate_at(now) * 1000.0).round() / 1000.0,
            latency_peak_ms: (self.latency.estimate_ms() * 1000.0).round() / 1000.0,
            success_rate: (self.success_rate * 10_000.0).round() / 10_000.0,
            inflight: self.total_inflight(),
            available_capacity: self.available_capacity,
            price_per_unit: self.price_per_unit,
            pixels_per_unit: self.pixels_per_unit,
            offered: self.offered,
            token_ok: self.token_ok,
            cold_start_ms: self.cold_start_ms,
            last_error: self.last_error.as_deref().cloned(),
            restarts: self.restarts,
            counters: self.counters,
            retired: self.retired,
            disabled: self.disabled,
            warming: self.warming,
            deprioritized_until_unix_ms: self
                .deprioritized_until
                .filter(|t| *t > now)
                .map(|t| instant_to_unix_ms(t, now)),
            capacity_backoff_until_unix_ms: self
                .capacity_backoff_until
                .filter(|t| *t > now)
                .map(|t| instant_to_unix_ms(t, now)),
            cost: if routable.is_ok() { Some((self.cost_at(now) * 1000.0).round() / 1000.0) } else { None },
        }
    }

    /// The persisted form.
    pub fn record(&self, now: Instant) -> PairRecord {
        PairRecord {
            orchestrator: self.key.orchestrator.clone(),
            capability: self.key.capability.clone(),
            latency_ewma_ms: self.latency.estimate_ms(),
            latency_updated_unix_ms: self.latency.updated().map(|t| instant_to_unix_ms(t, now)),
            success_rate: self.success_rate,
            breaker: self.breaker,
            breaker_level: self.breaker_level,
            open_until_unix_ms: self.open_until.map(|t| instant_to_unix_ms(t, now)),
            offered: self.offered,
            cold_start_ms: self.cold_start_ms,
            counters: self.counters,
            restarts: self.restarts,
            saved_at_unix_ms: unix_ms_now(),
        }
    }
}

/// Breaker part of [`PairReport`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BreakerReport {
    /// `closed`, `open` or `half_open`.
    #[schema(value_type = String)]
    pub state: &'static str,
    /// Consecutive openings.
    pub level: u32,
    /// Consecutive failures while closed.
    pub consecutive_failures: u32,
    /// When an open breaker admits a trial (Unix ms).
    pub open_until_unix_ms: Option<u64>,
}

/// One element of `GET /admin/pairs`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PairReport {
    /// Orchestrator id.
    pub orchestrator: String,
    /// Orchestrator URL.
    pub orchestrator_url: String,
    /// Capability.
    pub capability: String,
    /// Where jobs go.
    pub service_addr: Option<String>,
    /// Breaker.
    pub breaker: BreakerReport,
    /// Can take a job now.
    pub routable: bool,
    /// Why not, when not.
    #[schema(value_type = Option<String>)]
    pub unroutable_reason: Option<&'static str>,
    /// Latency estimate now (decayed while idle; what selection uses).
    pub latency_ewma_ms: f64,
    /// Latency estimate as of the last sample.
    pub latency_peak_ms: f64,
    /// Success rate.
    pub success_rate: f64,
    /// In flight.
    pub inflight: u32,
    /// Capacity from the last token.
    pub available_capacity: i64,
    /// Price.
    pub price_per_unit: i64,
    /// Price units.
    pub pixels_per_unit: i64,
    /// Ever offered.
    pub offered: bool,
    /// Last token probe succeeded.
    pub token_ok: bool,
    /// First answer time.
    pub cold_start_ms: Option<u64>,
    /// Last failure.
    pub last_error: Option<LastError>,
    /// Restarts.
    pub restarts: u32,
    /// Outcome counters.
    pub counters: Counters,
    /// Retired.
    pub retired: bool,
    /// Its orchestrator is disabled (draining).
    pub disabled: bool,
    /// No answer yet since start or recovery (limited concurrency).
    pub warming: bool,
    /// Deprioritised after a slow cold start until (Unix ms).
    pub deprioritized_until_unix_ms: Option<u64>,
    /// Out of rotation after a capacity refusal until (Unix ms).
    pub capacity_backoff_until_unix_ms: Option<u64>,
    /// Current selection cost (lower wins), when routable.
    pub cost: Option<f64>,
}

/// A pair's learned state as persisted in the store; restored at start (warm start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PairRecord {
    /// Orchestrator id.
    pub orchestrator: OrchestratorId,
    /// Capability.
    pub capability: Capability,
    /// Latency estimate as of its last sample.
    pub latency_ewma_ms: f64,
    /// When that sample was taken (Unix ms), so idle decay continues across restarts.
    #[serde(default)]
    pub latency_updated_unix_ms: Option<u64>,
    /// Success rate.
    pub success_rate: f64,
    /// Breaker state.
    pub breaker: State,
    /// Breaker level.
    pub breaker_level: u32,
    /// Open until (Unix ms).
    pub open_until_unix_ms: Option<u64>,
    /// Ever offered.
    pub offered: bool,
    /// First answer time.
    pub cold_start_ms: Option<u64>,
    /// Outcome counters.
    #[serde(default)]
    pub counters: Counters,
    /// Restarts.
    #[serde(default)]
    pub restarts: u32,
    /// When saved (Unix ms).
    pub saved_at_unix_ms: u64,
}

impl PairRecord {
    /// The key of the pair this record belongs to.
    pub fn key(&self) -> PairKey {
        PairKey { orchestrator: self.orchestrator.clone(), capability: self.capability.clone() }
    }
}

/// The cell a pair publishes into.
pub type SharedView = Arc<RwLock<PairView>>;

/// One fast-path call in flight on a pair: counted while the guard lives.
#[derive(Debug)]
pub struct InflightGuard(Arc<AtomicU32>);

impl InflightGuard {
    /// Counts one call on `view`'s pair until the guard is dropped.
    pub fn new(view: &PairView) -> Self {
        view.live_inflight.fetch_add(1, Ordering::Relaxed);
        Self(view.live_inflight.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Converts a monotonic instant to Unix milliseconds, relative to `now`.
pub fn instant_to_unix_ms(t: Instant, now: Instant) -> u64 {
    let base = unix_ms_now();
    if t >= now {
        base.saturating_add((t - now).as_millis() as u64)
    } else {
        base.saturating_sub((now - t).as_millis() as u64)
    }
}

/// Converts Unix milliseconds to a monotonic instant, relative to `now`.
pub fn unix_ms_to_instant(ms: u64, now: Instant) -> Instant {
    let base = unix_ms_now();
    if ms >= base {
        // A stored time comes from disk or an import file: never trust it not to overflow.
        now.checked_add(std::time::Duration::from_millis(ms - base)).unwrap_or(now)
    } else {
        now.checked_sub(std::time::Duration::from_millis(base - ms)).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn view() -> PairView {
        let key = PairKey {
            orchestrator: OrchestratorId("orch-1".into()),
            capability: Capability::new("depth").expect("valid"),
        };
        PairView::new(key, Arc::from("http://x"))
    }

    #[test]
    fn routable_needs_offer_token_capacity_and_breaker() {
        let now = Instant::now();
        let mut v = view();
        assert_eq!(v.routable_at(now), Err(Unroutable::TokenPending));
        v.probed = true;
        assert_eq!(v.routable_at(now), Err(Unroutable::NotOffered));
        v.offered = true;
        assert_eq!(v.routable_at(now), Err(Unroutable::TokenUnavailable));
        v.token_ok = true;
        assert_eq!(v.routable_at(now), Err(Unroutable::NoCapacity));
        v.available_capacity = 2;
        assert_eq!(v.routable_at(now), Ok(()));
        v.breaker = State::Open;
        v.open_until = Some(now + Duration::from_secs(3));
        assert_eq!(v.routable_at(now), Err(Unroutable::BreakerOpen(v.open_until)));
        assert_eq!(v.routable_at(now + Duration::from_secs(3)), Ok(()));
        v.retired = true;
        assert_eq!(v.routable_at(now), Err(Unroutable::Retired));
    }

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

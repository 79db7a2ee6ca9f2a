//! What a pair actor publishes about itself: the live [`PairView`] the dispatcher selects
//! from and the admin API reports, and the [`PairRecord`] the store persists.
//!
//! Only the pair actor writes its view (after every change of its state); the dispatcher and
//! the supervisor read it without a message round trip, which keeps selection O(1) and
//! `/admin/pairs` cheap with thousands of pairs.

mod record;
mod report;
mod unroutable;

pub use record::PairRecord;
pub use report::PairReport;
pub use unroutable::{Reason, Unroutable};

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::breaker::{Pool, State};
use crate::capability::Capability;
use crate::client_errors::ClientErrors;
use crate::clock::{instant_to_unix_ms, unix_ms_now};
use crate::orchestrator::{Label, OrchestratorId};
use crate::outcome::Refusal;
use crate::score::PeakEwma;

use super::slots::Slots;

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

/// A pair's orchestrator as its view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrchestratorRef {
    /// Base URL (where tokens are probed).
    pub(crate) url: Arc<str>,
    /// The operator's label.
    pub(crate) label: Option<Label>,
}

/// The last failure a pair saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LastError {
    /// Failure class (`connect`, `timeout`, `http-5xx`, `token`, ...).
    pub(crate) class: String,
    /// Human-readable detail.
    pub(crate) message: String,
    /// Unix time in milliseconds.
    pub(crate) at_unix_ms: u64,
}

/// Outcome counters of a pair, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Counters {
    /// 2xx answers.
    pub success: u64,
    /// 4xx answers (the client's fault; relayed, not held against the pair).
    pub(crate) http_4xx: u64,
    /// 5xx answers.
    pub http_5xx: u64,
    /// Connect refused, reset or unreachable.
    pub(crate) connect: u64,
    /// No answer in time.
    pub(crate) timeout: u64,
    /// Broken transport or unusable answer.
    pub(crate) transport: u64,
    /// 5xx answers recognised as GPU out-of-memory (counted here, not in `http_5xx`).
    pub oom: u64,
    /// Capacity refusals (503/429): backed off, not held against health.
    pub(crate) capacity: u64,
    /// 2xx answers with the wrong content type (response contract broken).
    pub(crate) contract: u64,
    /// Answers with a status no job can end with (1xx, 3xx, past 599): never relayed.
    pub(crate) bad_status: u64,
    /// Refusals that are not the client's fault (routing loop, credentials, payment, price):
    /// failed over, the pair taken out of rotation.
    pub(crate) refused: u64,
}

impl Counters {
    /// Failed calls: every failure class, not the client's 4xx nor capacity refusals (what the
    /// status page and the per-pair series call failures).
    pub(crate) fn failures(&self) -> u64 {
        self.http_5xx
            + self.connect
            + self.timeout
            + self.transport
            + self.oom
            + self.contract
            + self.refused
            + self.bad_status
    }
}

/// The live state of a pair as published by its actor.
#[derive(Debug, Clone)]
pub struct PairView {
    /// Which pair.
    pub(crate) key: PairKey,
    /// Its orchestrator's URL (where tokens are probed) and label, behind one pointer (a view
    /// counts 10,000 times).
    pub(crate) orchestrator: Arc<OrchestratorRef>,
    /// Where jobs go (the token's `service_addr`), once a token was seen.
    pub(crate) service_addr: Option<Arc<str>>,
    /// Breaker state.
    pub(crate) breaker: State,
    /// Breaker level (consecutive openings).
    pub(crate) breaker_level: u32,
    /// When an open breaker admits a trial while the capability's pool is ample.
    pub(crate) open_until: Option<Instant>,
    /// ... and while it is short (`breaker.rs`).
    pub(crate) open_until_short: Option<Instant>,
    /// Half-open trials running plus passed.
    pub(crate) trials_used: u32,
    /// Trials a half-open breaker lets run at once while the pool is ample, and while short.
    pub(crate) permits: (u32, u32),
    /// Consecutive failures while closed.
    pub(crate) consecutive_failures: u32,
    /// The first token probe of this incarnation has finished.
    pub probed: bool,
    /// The last token probe succeeded.
    pub token_ok: bool,
    /// Token probes that failed in a row (they back off, doubling up to
    /// `routing.token_retry_max`).
    pub(crate) token_failures: u32,
    /// Capacity from the last token.
    pub(crate) available_capacity: i64,
    /// What the last token said the pair can take from this gateway (its free slots plus the
    /// gateway's own jobs there when it was read); `None` before the first token.
    pub capacity_ceiling: Option<u32>,
    /// Price from the last token (wei per `pixels_per_unit`).
    pub(crate) price_per_unit: i64,
    /// Units the price covers.
    pub(crate) pixels_per_unit: i64,
    /// The orchestrator has offered this capability at least once (capacity > 0 or an answer).
    pub offered: bool,
    /// Peak-EWMA latency of successful calls, as measured (failures do not inflate it and it
    /// does not decay while the pair is idle).
    pub latency: PeakEwma,
    /// Median and 99th percentile of the pair's recent successful calls, in ms.
    pub(crate) latency_percentiles: Option<(f64, f64)>,
    /// Decaying success rate.
    pub(crate) success_rate: f64,
    /// Jobs in flight against the pair's concurrency limit, shared with every worker (a job
    /// holds a [`SlotGuard`](super::slots::SlotGuard) until it ends, so a cancelled call cannot
    /// leak one).
    pub slots: Arc<Slots>,
    /// Duration of the first answer this pair gave.
    pub(crate) cold_start_ms: Option<u64>,
    /// The last failure.
    pub(crate) last_error: Option<Arc<LastError>>,
    /// Restarts by the supervisor.
    pub(crate) restarts: u32,
    /// Outcome counters.
    pub(crate) counters: Counters,
    /// Times its breaker opened since the pair started (not persisted).
    pub(crate) breaker_opens: u32,
    /// Retired (orchestrator removed): takes no new work.
    pub(crate) retired: bool,
    /// Its orchestrator is disabled by the operator (draining).
    pub(crate) disabled: bool,
    /// The operator tripped the breaker: held open until a reset (or `forced_until`).
    pub(crate) forced: bool,
    /// When a forced trip given a duration ends.
    pub(crate) forced_until: Option<Instant>,
    /// When the breaker entered its current state (or the pair started).
    pub(crate) state_since: Instant,
    /// When the last token probe ended.
    pub(crate) last_probe: Option<Instant>,
    /// The last token probe could not reach the orchestrator (connect refused, timeout).
    pub(crate) unreachable: bool,
    /// What the last priced token offers to pay against (ticket params, balance).
    pub(crate) payment: Option<Arc<super::PaymentTerms>>,
    /// Its ticket params are over the operator's payment limits.
    pub(crate) payment_over_limit: bool,
    /// Its ticket params are unfit to pay against (an empty `recipient_rand_hash`, no expiry, a
    /// negative round, ...).
    pub(crate) ticket_params_invalid: bool,
    /// It refused a job after taking a payment: out of rotation until then.
    pub(crate) payment_backoff_until: Option<Instant>,
    /// Refusals after a payment since it last answered a job (the back-off doubles with each).
    pub(crate) payment_backoff_level: u32,
    /// A connect failure on this orchestrator (this pair or a sibling) awaits a re-probe.
    pub(crate) node_unreachable: bool,
    /// The orchestrator refused a job for a reason that is not the client's (a routing loop,
    /// credentials, payment, price): out of rotation until its token changes or an operator
    /// resets the pair.
    pub(crate) refusal: Option<Refusal>,
    /// The token prices the capability and the gateway's balance there is under the
    /// orchestrator's minimum (60 s x price): every job would be refused for want of payment.
    pub(crate) payment_required: bool,
    /// The advertised price is over the capability's ceiling.
    pub(crate) over_ceiling: bool,
    /// Price relative to the ceiling in [0, 1], a factor in the selection cost.
    pub(crate) price_share: f64,
    /// No answer yet since the pair started (or its orchestrator came back): its limit is the
    /// capability's `cold_start_concurrency`, and its attempts get the job's full time.
    pub(crate) warming: bool,
    /// A configured warm-up job has not succeeded yet: no client traffic.
    pub(crate) warmup_pending: bool,
    /// A slow cold start deprioritises the pair until then.
    pub(crate) deprioritized_until: Option<Instant>,
    /// A capacity refusal with none of the gateway's jobs there keeps the pair out of
    /// rotation until then (at most about one job's time).
    pub(crate) capacity_backoff_until: Option<Instant>,
    /// Its share of 4xx answers, and whether it stands far above its siblings' (then selection
    /// ranks it last and gives it none of the jobs its siblings have no room for).
    pub(crate) client_errors: ClientErrors,
    /// What its offer's source shows of it (a Live Runner record: app, GPU, version,
    /// capacity, price, discovery standing), reported as `runner`.
    pub(crate) details: Option<Arc<serde_json::Value>>,
    /// Bumped on every publish that changes a persisted field ([`PairRecord`]); the
    /// supervisor persists pairs whose generation moved.
    pub(crate) generation: u64,
}

impl PairView {
    /// A fresh view for a pair that has not probed yet.
    pub fn new(key: PairKey, orchestrator_url: Arc<str>) -> Self {
        Self::of(key, Arc::new(OrchestratorRef { url: orchestrator_url, label: None }))
    }

    /// A fresh view for a pair of `orchestrator` (shared by its pairs).
    pub(crate) fn of(key: PairKey, orchestrator: Arc<OrchestratorRef>) -> Self {
        Self {
            key,
            orchestrator,
            service_addr: None,
            breaker: State::Closed,
            breaker_level: 0,
            open_until: None,
            open_until_short: None,
            trials_used: 0,
            permits: (1, 1),
            consecutive_failures: 0,
            probed: false,
            token_ok: false,
            token_failures: 0,
            available_capacity: 0,
            capacity_ceiling: None,
            price_per_unit: 0,
            pixels_per_unit: 1,
            offered: false,
            latency: PeakEwma::new(0.0, std::time::Duration::from_secs(10)),
            latency_percentiles: None,
            success_rate: 1.0,
            slots: Arc::default(),
            cold_start_ms: None,
            last_error: None,
            restarts: 0,
            counters: Counters::default(),
            breaker_opens: 0,
            retired: false,
            disabled: false,
            forced: false,
            forced_until: None,
            state_since: Instant::now(),
            last_probe: None,
            unreachable: false,
            payment: None,
            payment_over_limit: false,
            ticket_params_invalid: false,
            payment_backoff_until: None,
            payment_backoff_level: 0,
            node_unreachable: false,
            refusal: None,
            payment_required: false,
            over_ceiling: false,
            price_share: 0.0,
            warming: false,
            warmup_pending: false,
            deprioritized_until: None,
            capacity_backoff_until: None,
            client_errors: ClientErrors::default(),
            details: None,
            generation: 0,
        }
    }

    /// Whether the pair can take a job at `now`, and if not, why.
    pub(crate) fn routable_at(&self, now: Instant) -> Result<(), Unroutable> {
        if self.retired {
            return Err(Unroutable::Retired);
        }
        if self.disabled {
            return Err(Unroutable::Disabled);
        }
        if self.forced_at(now) {
            return Err(Unroutable::ForcedOpen(self.forced_until));
        }
        if !self.probed {
            return Err(Unroutable::TokenPending);
        }
        if self.unreachable {
            // Before "not offered": an orchestrator the gateway cannot reach has not said
            // whether it offers anything.
            return Err(Unroutable::Unreachable);
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
        if let Some(r) = self.refusal {
            return Err(Unroutable::from(r));
        }
        if self.capacity_ceiling.unwrap_or(0) == 0 {
            return Err(Unroutable::NoCapacity);
        }
        if self.over_ceiling {
            return Err(Unroutable::PriceOverCeiling);
        }
        if self.payment_required {
            return Err(Unroutable::PaymentRequired);
        }
        if self.payment_over_limit {
            return Err(Unroutable::PaymentOverLimit);
        }
        if self.ticket_params_invalid {
            return Err(Unroutable::TicketParamsInvalid);
        }
        if let Some(t) = self.payment_backoff_until.filter(|t| now < *t) {
            return Err(Unroutable::PaymentBackoff(t));
        }
        if self.warmup_pending {
            return Err(Unroutable::WarmingUp);
        }
        if let Some(t) = self.capacity_backoff_until.filter(|t| now < *t) {
            return Err(Unroutable::CapacityBackoff(t));
        }
        let pool = self.slots.pool(now);
        match self.breaker {
            State::Closed => Ok(()),
            State::Open => match self.open_until_at(pool) {
                Some(t) if now < t => Err(Unroutable::BreakerOpen(Some(t))),
                _ => Ok(()),
            },
            State::HalfOpen if self.trials_used < self.permits_at(pool) => Ok(()),
            State::HalfOpen => Err(Unroutable::BreakerOpen(None)),
        }
    }

    /// When an open breaker admits a trial, given how short the capability's pool is.
    pub(crate) fn open_until_at(&self, pool: Pool) -> Option<Instant> {
        match pool {
            Pool::Ample => self.open_until,
            Pool::Short => self.open_until_short,
        }
    }

    fn permits_at(&self, pool: Pool) -> u32 {
        match pool {
            Pool::Ample => self.permits.0,
            Pool::Short => self.permits.1,
        }
    }

    /// Whether an operator's trip holds the pair out at `now`.
    pub(crate) fn forced_at(&self, now: Instant) -> bool {
        self.forced && self.forced_until.is_none_or(|t| now < t)
    }

    /// The breaker state the next job would see at `now`: an open breaker whose time is up
    /// admits a trial, so it reads half-open; a forced trip reads open.
    pub(crate) fn breaker_state_at(&self, now: Instant) -> State {
        let until = self.open_until_at(self.slots.pool(now));
        match self.breaker {
            State::Open if !self.forced_at(now) && until.is_some_and(|t| t <= now) => State::HalfOpen,
            s => s,
        }
    }

    /// Jobs in flight on the pair.
    pub(crate) fn inflight(&self) -> u32 {
        self.slots.inflight()
    }

    /// Where to send a job admitted without asking the actor, when that is safe: the pair is
    /// routable and its breaker closed (so no trial permit is at stake). `None` means "ask the
    /// actor" ([`Admit`]). Concurrency (the pair's limit, cold start included) is the slot the
    /// caller already holds.
    ///
    /// A breaker closed here may open a moment later; the few calls already admitted are
    /// then recorded as non-trial calls, which an open or half-open breaker does not count.
    ///
    /// [`Admit`]: crate::pair::Admit
    pub(crate) fn fast_admission(&self, now: Instant) -> Option<Arc<str>> {
        if self.breaker != State::Closed {
            return None;
        }
        self.routable_at(now).ok()?;
        self.service_addr.clone()
    }

    /// The factor failures add to the selection cost: 1 / success rate (floored at 5 %).
    pub(crate) fn penalty(&self) -> f64 {
        1.0 / self.success_rate.clamp(0.05, 1.0)
    }

    /// The latency selection expects of a job here: the median of the pair's recent successful
    /// calls (robust to one slow outlier, which would otherwise make a pair that then gets few
    /// jobs look slow for a long time), or its learned estimate before it has any this run.
    pub(crate) fn expected_latency_ms(&self) -> f64 {
        self.latency_percentiles.map_or(self.latency.estimate_ms(), |(p50, _)| p50)
    }

    /// How long the pair has had jobs in flight with no answer back, in ms, at `now`.
    pub(crate) fn unanswered_ms(&self, now: Instant) -> Option<f64> {
        self.slots.unanswered(now).map(|d| d.as_secs_f64() * 1000.0)
    }

    /// Selection cost at `now` (lower is better): expected latency (at least the silence of its
    /// jobs in flight once they are overdue, [`in_flight_latency`](crate::score::in_flight_latency))
    /// x (1 + in flight / limit) x [`penalty`](Self::penalty), times 1 + half the price share of
    /// the ceiling (a pair at the ceiling must be 1.5x better to win), times 10 while a slow cold
    /// start deprioritises it.
    pub(crate) fn cost_at(&self, now: Instant) -> f64 {
        let latency_ms = crate::score::in_flight_latency(
            self.expected_latency_ms(),
            self.latency_percentiles.map(|p| p.1),
            self.unanswered_ms(now),
        );
        let base = crate::score::cost(crate::score::CostInputs {
            latency_ms,
            inflight: self.inflight(),
            limit: self.slots.limit(),
            success_rate: self.success_rate,
        });
        base * (1.0 + 0.5 * self.price_share) * if self.deprioritized_at(now) { 10.0 } else { 1.0 }
    }

    /// Whether a slow cold start deprioritises the pair at `now` (selection then prefers any
    /// other pair with room).
    pub(crate) fn deprioritized_at(&self, now: Instant) -> bool {
        self.deprioritized_until.is_some_and(|t| now < t)
    }
}

/// The cell a pair publishes into.
pub type SharedView = Arc<RwLock<PairView>>;

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
        v.capacity_ceiling = Some(2);
        assert_eq!(v.routable_at(now), Ok(()));
        v.breaker = State::Open;
        v.open_until = Some(now + Duration::from_secs(3));
        assert_eq!(v.routable_at(now), Err(Unroutable::BreakerOpen(v.open_until)));
        assert_eq!(v.routable_at(now + Duration::from_secs(3)), Ok(()));
        v.retired = true;
        assert_eq!(v.routable_at(now), Err(Unroutable::Retired));
    }

    #[test]
    fn every_reason_is_named_once_and_in_order() {
        let t = Instant::now();
        let all = [
            Unroutable::Retired,
            Unroutable::Disabled,
            Unroutable::ForcedOpen(None),
            Unroutable::TokenPending,
            Unroutable::Unreachable,
            Unroutable::NotOffered,
            Unroutable::TokenUnavailable,
            Unroutable::NodeUnreachable,
            Unroutable::RoutingLoop,
            Unroutable::CredentialsRejected,
            Unroutable::PriceUnavailable,
            Unroutable::PaymentRejected,
            Unroutable::NoCapacity,
            Unroutable::PriceOverCeiling,
            Unroutable::PaymentRequired,
            Unroutable::PaymentOverLimit,
            Unroutable::TicketParamsInvalid,
            Unroutable::PaymentBackoff(t),
            Unroutable::WarmingUp,
            Unroutable::CapacityBackoff(t),
            Unroutable::BreakerOpen(None),
        ];
        let reasons: Vec<Reason> = all.iter().map(|r| r.reason()).collect();
        assert_eq!(reasons, Reason::ALL, "Reason::ALL lists every reason once, in check order");
        let names: std::collections::BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len(), "names are distinct");
    }
}

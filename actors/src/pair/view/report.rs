//! The admin API's shape of a pair (`GET /admin/pairs`).

use super::*;

impl PairView {
    /// The admin API's JSON shape of this view at `now`.
    pub(crate) fn report(&self, now: Instant) -> PairReport {
        let routable = self.routable_at(now);
        let pool = self.slots.pool(now);
        PairReport {
            orchestrator: self.key.orchestrator.to_string(),
            orchestrator_url: self.orchestrator.url.to_string(),
            orchestrator_label: self.orchestrator.label.as_ref().map(|l| l.to_string()),
            capability: self.key.capability.to_string(),
            service_addr: self.service_addr.as_deref().map(str::to_string),
            breaker: BreakerReport {
                state: self.breaker_state_at(now).as_str(),
                forced: self.forced_at(now),
                forced_until_unix_ms: self
                    .forced_until
                    .filter(|_| self.forced_at(now))
                    .map(|t| instant_to_unix_ms(t, now)),
                since_unix_ms: instant_to_unix_ms(self.state_since, now),
                level: self.breaker_level,
                consecutive_failures: self.consecutive_failures,
                open_until_unix_ms: self.open_until_at(pool).map(|t| instant_to_unix_ms(t, now)),
                short_pool: pool == crate::breaker::Pool::Short,
            },
            routable: routable.is_ok(),
            unroutable_reason: routable.err().map(Unroutable::as_str),
            latency_ewma_ms: self.latency.updated().map(|_| round3(self.latency.estimate_ms())),
            latency_p50_ms: self.latency_percentiles.map(|p| round3(p.0)),
            latency_p99_ms: self.latency_percentiles.map(|p| round3(p.1)),
            latency_measured_unix_ms: self.latency.updated().map(|t| instant_to_unix_ms(t, now)),
            penalty: round3(self.penalty()),
            success_rate: (self.success_rate * 10_000.0).round() / 10_000.0,
            inflight: self.inflight(),
            unanswered_ms: self.unanswered_ms(now).map(round3),
            slots: self.slots.limit(),
            capacity_ceiling: self.capacity_ceiling,
            available_capacity: self.available_capacity,
            price_per_unit: self.price_per_unit,
            pixels_per_unit: self.pixels_per_unit,
            offered: self.offered,
            token_ok: self.token_ok,
            token_failures: self.token_failures,
            last_probe_unix_ms: self.last_probe.map(|t| instant_to_unix_ms(t, now)),
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
            client_errors: ClientErrorsReport {
                share: round3(self.client_errors.share()),
                answers: self.client_errors.answers(),
                deprioritized: self.client_errors.outlier,
            },
            cost: if routable.is_ok() { Some(round3(self.cost_at(now))) } else { None },
            payment_backoff: (self.payment_backoff_level > 0).then(|| PaymentBackoffReport {
                level: self.payment_backoff_level,
                until_unix_ms: self.payment_backoff_until.filter(|t| *t > now).map(|t| instant_to_unix_ms(t, now)),
            }),
            payment: None,
            discovery_age_ms: self
                .details
                .as_ref()
                .and(self.last_probe)
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            runner: self.details.as_deref().cloned(),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Breaker part of [`PairReport`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BreakerReport {
    /// `closed`, `open` or `half_open`: the state the next job would see (an open breaker
    /// whose `open_until` has passed admits a trial, so it reads `half_open`).
    #[schema(value_type = String)]
    pub state: &'static str,
    /// The operator tripped it: held open until a reset, or until `forced_until_unix_ms`.
    pub(crate) forced: bool,
    /// When a trip given a duration (`?for=`) ends (Unix ms).
    pub(crate) forced_until_unix_ms: Option<u64>,
    /// When the breaker entered its current state (Unix ms).
    pub(crate) since_unix_ms: u64,
    /// Consecutive openings.
    pub(crate) level: u32,
    /// Consecutive failures while closed.
    pub(crate) consecutive_failures: u32,
    /// When an open breaker admits a trial (Unix ms), given how short the pool is now.
    pub(crate) open_until_unix_ms: Option<u64>,
    /// The capability's pool is short now (jobs queued within 2 s, or most of its pairs are
    /// out): an open breaker admits its trial after `base_open` whatever its level, and a
    /// half-open one lets `short_pool_permits` trials run at once.
    pub(crate) short_pool: bool,
}

/// The `client_errors` part of [`PairReport`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClientErrorsReport {
    /// Share of its recent answers (2xx and 4xx) that were 4xx, in [0, 1].
    pub(crate) share: f64,
    /// Answers counted since the pair started.
    pub(crate) answers: u32,
    /// The share stands far above its siblings' (at least 0.5, and 0.5 above the lowest
    /// sibling's): ranked last in selection and given none of the jobs its siblings have no
    /// room for, except one job per exploration interval. Its 4xx answers are still relayed.
    pub(crate) deprioritized: bool,
}

/// A pair's back-off after refusing jobs it was paid for ([`PairReport::payment_backoff`]).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentBackoffReport {
    /// Refusals after a payment since it last answered a job (the wait doubles with each).
    pub(crate) level: u32,
    /// When it may take a job again (Unix ms); `None` once that has passed (the next refusal
    /// then backs it off for twice as long).
    pub(crate) until_unix_ms: Option<u64>,
}

/// One element of `GET /admin/pairs`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PairReport {
    /// Orchestrator id.
    pub orchestrator: String,
    /// Orchestrator URL.
    pub orchestrator_url: String,
    /// The operator's label of the orchestrator (null when it has none).
    pub orchestrator_label: Option<String>,
    /// Capability.
    pub capability: String,
    /// Where jobs go.
    pub(crate) service_addr: Option<String>,
    /// Breaker.
    pub breaker: BreakerReport,
    /// Can take a job now.
    pub routable: bool,
    /// Why not, when not.
    #[schema(value_type = Option<String>)]
    pub unroutable_reason: Option<&'static str>,
    /// Measured latency of successful calls: peak-EWMA (jumps up on a slow call, eases down),
    /// as of the last one (`None` before any). Failures are not in it; see `penalty`.
    pub(crate) latency_ewma_ms: Option<f64>,
    /// Median of the pair's recent successful calls.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile of the pair's recent successful calls.
    pub(crate) latency_p99_ms: Option<f64>,
    /// When the last successful call was measured (Unix ms).
    pub(crate) latency_measured_unix_ms: Option<u64>,
    /// Factor failures add to the selection cost (1 / success rate).
    pub(crate) penalty: f64,
    /// Success rate.
    pub(crate) success_rate: f64,
    /// Jobs in flight.
    pub(crate) inflight: u32,
    /// How long the pair has had jobs in flight with no answer coming back (ms; `None` with
    /// nothing in flight): one job's age, or the time since the last answer. Past its p99,
    /// selection expects a job there to take at least this long.
    pub(crate) unanswered_ms: Option<f64>,
    /// Jobs allowed in flight now: the concurrency limit (token figure, lowered after capacity
    /// refusals and raised back by answers; the cold-start concurrency while warming).
    pub(crate) slots: u32,
    /// What the last token said the pair can take from this gateway.
    pub(crate) capacity_ceiling: Option<u32>,
    /// Capacity from the last token.
    pub(crate) available_capacity: i64,
    /// Price.
    pub(crate) price_per_unit: i64,
    /// Price units.
    pub(crate) pixels_per_unit: i64,
    /// Ever offered.
    pub(crate) offered: bool,
    /// Last token probe succeeded.
    pub(crate) token_ok: bool,
    /// Token probes that failed in a row (backing off).
    pub(crate) token_failures: u32,
    /// When the last token probe ended (Unix ms).
    pub(crate) last_probe_unix_ms: Option<u64>,
    /// First answer time.
    pub(crate) cold_start_ms: Option<u64>,
    /// Last failure.
    pub(crate) last_error: Option<LastError>,
    /// Restarts.
    pub(crate) restarts: u32,
    /// Outcome counters.
    pub counters: Counters,
    /// Retired.
    pub(crate) retired: bool,
    /// Its orchestrator is disabled (draining).
    pub(crate) disabled: bool,
    /// No answer yet since start or recovery (limited concurrency).
    pub(crate) warming: bool,
    /// Deprioritised after a slow cold start until (Unix ms).
    pub(crate) deprioritized_until_unix_ms: Option<u64>,
    /// Out of rotation after a capacity refusal until (Unix ms).
    pub(crate) capacity_backoff_until_unix_ms: Option<u64>,
    /// Its 4xx answers compared with its siblings'.
    pub(crate) client_errors: ClientErrorsReport,
    /// Current selection cost (lower wins), when routable.
    pub(crate) cost: Option<f64>,
    /// Its back-off after refusing jobs it was paid for, until it answers a job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) payment_backoff: Option<PaymentBackoffReport>,
    /// What the gateway paid there (priced pairs, once it has paid): balance, tickets, EV.
    /// Filled in by the admin API from the routers' ledger.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payment: Option<serde_json::Value>,
    /// A Live Runner pair: how long ago its discovery record was last fetched (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) discovery_age_ms: Option<u64>,
    /// A Live Runner pair: its runner as discovery lists it (`runner` id, `app`, `mode`, `url`,
    /// `gpu`, `version`, `metadata`, `capacity`, `capacity_used`, `capacity_available`,
    /// `price`, `standing`: fresh, stale or expired).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub runner: Option<serde_json::Value>,
}

//! What the admin API reads: pairs (whole or a page), and the supervisor's own report.

use super::*;

/// Lists pairs, optionally filtered.
#[derive(Message, Default)]
#[rtype(result = "Vec<PairReport>")]
pub struct ListPairs {
    /// Only this capability.
    pub capability: Option<String>,
    /// Only this orchestrator id.
    pub orchestrator: Option<String>,
}

impl Handler<ListPairs> for Supervisor {
    type Result = ResponseActFuture<Self, Vec<PairReport>>;

    fn handle(&mut self, msg: ListPairs, _ctx: &mut Self::Context) -> Self::Result {
        let page = ListPairsPage { capability: msg.capability, orchestrator: msg.orchestrator, offset: 0, limit: None };
        Box::pin(self.settle().into_actor(self).map(move |(), act, _ctx| act.pairs_page(&page).pairs))
    }
}

/// One page of pairs, in a stable order (orchestrator id, then capability), optionally
/// filtered. Only the pairs of the page are turned into reports, so a small page of a large
/// registry is cheap.
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "PairsPage")]
pub struct ListPairsPage {
    /// Only this capability.
    pub capability: Option<String>,
    /// Only this orchestrator id.
    pub orchestrator: Option<String>,
    /// Matching pairs skipped before the page.
    pub offset: usize,
    /// Largest page (`None`: every matching pair from `offset` on).
    pub limit: Option<usize>,
}

/// A page of pairs and how many match in all.
#[derive(Debug, Clone, Default)]
pub struct PairsPage {
    /// Pairs matching the filters, over all pages.
    pub total: usize,
    /// This page.
    pub pairs: Vec<PairReport>,
}

impl Handler<ListPairsPage> for Supervisor {
    type Result = ResponseActFuture<Self, PairsPage>;

    fn handle(&mut self, msg: ListPairsPage, _ctx: &mut Self::Context) -> Self::Result {
        Box::pin(self.settle().into_actor(self).map(move |(), act, _ctx| act.pairs_page(&msg)))
    }
}

/// The supervisor's own view for `/admin/supervisor`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SupervisorReport {
    /// The gateway's version.
    pub(crate) version: &'static str,
    /// Seconds since the supervisor started (the gateway's uptime).
    pub(crate) uptime_seconds: u64,
    /// Registered orchestrators.
    pub orchestrators: usize,
    /// Registered capabilities.
    pub(crate) capabilities: Vec<String>,
    /// Pair actors alive.
    pub pair_actors: usize,
    /// Pair actors by breaker state.
    #[schema(value_type = Object)]
    pub(crate) pairs_by_state: BTreeMap<&'static str, u32>,
    /// Routable pairs.
    pub routable: u32,
    /// Restarts summed over all pair actors.
    pub(crate) restarts_total: u64,
    /// Pairs that have been restarted, with their counts.
    pub(crate) restarted_pairs: Vec<RestartedPair>,
    /// Capabilities remembered as offered by nobody (fast 404s).
    pub(crate) not_offered_cached: usize,
    /// Capabilities registered by lazy discovery, against their bound.
    pub(crate) discovered_capabilities: DiscoveredReport,
    /// Surveys of which orchestrators offer which capabilities.
    pub(crate) survey: SurveyReport,
    /// Mailbox pressure on the central actors.
    pub(crate) mailbox: MailboxPressure,
    /// When changed pair scores were last written to the store (Unix ms); scores learned
    /// since then are lost by a crash.
    pub(crate) scores_saved_at_unix_ms: Option<u64>,
}

/// The surveys of who offers what (see `supervisor/survey.rs`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SurveyReport {
    /// Pairs off the board waiting for their first probe (surveys and capability-name probes).
    pub(crate) in_flight: usize,
    /// Walks still queued: hot-added orchestrators, new capabilities, the current pass.
    pub(crate) queued_walks: usize,
    /// Pairs asked about since start.
    pub(crate) asked: u64,
    /// Of those, pairs found offering (now on the board).
    pub(crate) found: u64,
    /// Orchestrators the survey could not reach, asked again on a back-off (about every 2 s
    /// while few are unreachable).
    pub(crate) unreachable: usize,
}

/// How loaded the central actors' mailboxes are, measured every second.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MailboxPressure {
    /// How late the supervisor's one-second tick last ran (ms): its mailbox backlog.
    pub(crate) supervisor_tick_lag_ms: u64,
    /// Round trip of a message to the store behind its queue (µs), measured every 10 s; null
    /// if it timed out.
    pub(crate) store_round_trip_us: Option<u64>,
}

/// A pair with restarts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestartedPair {
    /// Orchestrator id.
    pub(crate) orchestrator: String,
    /// Capability.
    pub(crate) capability: String,
    /// Restarts.
    pub(crate) restarts: u32,
}

/// Asks for the supervisor's view.
#[derive(Message)]
#[rtype(result = "SupervisorReport")]
pub struct GetSupervisorReport;

impl Handler<GetSupervisorReport> for Supervisor {
    type Result = MessageResult<GetSupervisorReport>;

    fn handle(&mut self, _msg: GetSupervisorReport, _ctx: &mut Self::Context) -> Self::Result {
        self.note_proven();
        let now = Instant::now();
        let mut by_state: BTreeMap<&'static str, u32> = BTreeMap::new();
        let mut routable = 0;
        let mut restarts_total = 0u64;
        let mut restarted = Vec::new();
        for (key, entry) in &self.pairs {
            let v = entry.view.read();
            *by_state.entry(v.breaker.as_str()).or_default() += 1;
            if v.routable_at(now).is_ok() {
                routable += 1;
            }
            restarts_total += u64::from(v.restarts);
            if v.restarts > 0 {
                restarted.push(RestartedPair {
                    orchestrator: key.orchestrator.to_string(),
                    capability: key.capability.to_string(),
                    restarts: v.restarts,
                });
            }
        }
        MessageResult(SupervisorReport {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started_at.elapsed().as_secs(),
            orchestrators: self.orchestrators.len(),
            capabilities: self.registered.iter().map(|c| c.to_string()).collect(),
            pair_actors: self.pairs.len(),
            pairs_by_state: by_state,
            routable,
            restarts_total,
            restarted_pairs: restarted,
            not_offered_cached: self.not_offered.len(),
            discovered_capabilities: DiscoveredReport {
                count: self.discovered.len(),
                limit: self.max_discovered,
                unproven: self.unproven.len(),
                refused: self.discovery_refused,
            },
            survey: SurveyReport {
                in_flight: self.off_board.len(),
                queued_walks: self.survey.queued(),
                asked: self.survey.asked,
                found: self.survey.found,
                unreachable: self.survey.unreachable_count(),
            },
            scores_saved_at_unix_ms: self.scores_saved_at,
            mailbox: MailboxPressure {
                supervisor_tick_lag_ms: self.tick_lag_ms,
                store_round_trip_us: self.store_rtt_us,
            },
        })
    }
}

impl Supervisor {
    pub(super) fn pairs_page(&self, q: &ListPairsPage) -> PairsPage {
        let now = Instant::now();
        let matching = || {
            self.pairs
                .iter()
                .filter(|(k, _)| q.capability.as_deref().is_none_or(|c| k.capability.as_str() == c))
                .filter(|(k, _)| q.orchestrator.as_deref().is_none_or(|o| &*k.orchestrator.0 == o))
        };
        let total =
            if q.capability.is_none() && q.orchestrator.is_none() { self.pairs.len() } else { matching().count() };
        let pairs = matching()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .map(|(_, e)| e.view.read().report(now))
            .collect();
        PairsPage { total, pairs }
    }
}

impl Supervisor {
    /// The registry's gauges, from one walk over the pairs: pairs per breaker state, routable
    /// pairs, unroutable pairs per reason (every reason, at zero when no pair has it), and per
    /// registered capability the slots of its routable pairs and its jobs in flight.
    pub(super) fn publish_gauges(&self, now: Instant) {
        let (mut closed, mut open, mut half, mut routable) = (0u32, 0u32, 0u32, 0u32);
        let mut unroutable = [0u32; Reason::ALL.len()];
        let mut per_cap: BTreeMap<&Capability, CapabilityCount> = BTreeMap::new();
        for (key, entry) in &self.pairs {
            let v = entry.view.read();
            match v.breaker {
                crate::breaker::State::Closed => closed += 1,
                crate::breaker::State::Open => open += 1,
                crate::breaker::State::HalfOpen => half += 1,
            }
            let c = per_cap.entry(&key.capability).or_default();
            c.inflight += u64::from(v.inflight());
            let on_offer = entry.on_board && v.offered;
            c.offered += u32::from(on_offer);
            match v.routable_at(now) {
                Ok(()) => {
                    routable += 1;
                    c.slots += u64::from(v.slots.limit());
                    c.routable += u32::from(on_offer);
                }
                Err(why) => unroutable[why.reason() as usize] += 1,
            }
        }
        metrics::gauge!(m::PAIRS, "state" => "closed").set(closed);
        metrics::gauge!(m::PAIRS, "state" => "open").set(open);
        metrics::gauge!(m::PAIRS, "state" => "half_open").set(half);
        metrics::gauge!(m::PAIRS_ROUTABLE).set(routable);
        metrics::gauge!(m::ORCHESTRATORS).set(self.orchestrators.len() as f64);
        for reason in Reason::ALL {
            metrics::gauge!(m::PAIRS_UNROUTABLE, "reason" => reason.as_str()).set(unroutable[reason as usize]);
        }
        for (cap, c) in per_cap.into_iter().filter(|(c, _)| self.registered.contains(*c)) {
            let label = self.scoreboard.label(cap);
            if label != m::CapabilityLabel::UNKNOWN {
                metrics::gauge!(m::SLOTS, "capability" => label.value()).set(c.slots as f64);
                metrics::gauge!(m::SLOTS_INFLIGHT, "capability" => label.value()).set(c.inflight as f64);
            }
            // Envoy's panic threshold: fewer than half of the pairs that offer it routable
            // makes the capability's pool short (its breakers trial sooner).
            if let Some(q) = self.scoreboard.queue(cap) {
                q.set_mostly_out(c.routable * 2 < c.offered);
            }
        }
    }
}

/// One capability's pairs, counted for the gauges and the pool's shortness.
#[derive(Debug, Default)]
struct CapabilityCount {
    /// Jobs its routable pairs may have in flight.
    slots: u64,
    /// Jobs in flight on its pairs.
    inflight: u64,
    /// Pairs on the board that have offered it.
    offered: u32,
    /// Of those, routable now.
    routable: u32,
}

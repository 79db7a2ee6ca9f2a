//! The persisted form of a pair (its learned scores), as the store keeps it.

use super::*;

impl PairView {
    /// The persisted form.
    pub(crate) fn record(&self, now: Instant) -> PairRecord {
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

/// A pair's learned state as persisted in the store; restored at start (warm start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PairRecord {
    /// Orchestrator id.
    pub orchestrator: OrchestratorId,
    /// Capability.
    pub(crate) capability: Capability,
    /// Latency estimate as of its last sample.
    pub(crate) latency_ewma_ms: f64,
    /// When that sample was taken (Unix ms), so idle decay continues across restarts.
    #[serde(default)]
    pub(crate) latency_updated_unix_ms: Option<u64>,
    /// Success rate.
    pub(crate) success_rate: f64,
    /// Breaker state.
    pub(crate) breaker: State,
    /// Breaker level.
    pub(crate) breaker_level: u32,
    /// Open until (Unix ms).
    pub(crate) open_until_unix_ms: Option<u64>,
    /// Ever offered.
    pub(crate) offered: bool,
    /// First answer time.
    pub(crate) cold_start_ms: Option<u64>,
    /// Outcome counters.
    #[serde(default)]
    pub(crate) counters: Counters,
    /// Restarts.
    #[serde(default)]
    pub(crate) restarts: u32,
    /// When saved (Unix ms).
    pub(crate) saved_at_unix_ms: u64,
}

impl PairRecord {
    /// The key of the pair this record belongs to.
    pub(crate) fn key(&self) -> PairKey {
        PairKey { orchestrator: self.orchestrator.clone(), capability: self.capability.clone() }
    }
}

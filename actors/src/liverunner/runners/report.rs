//! What the admin API reads and does: runner pairs as `GET /admin/pairs` shows pairs, each
//! orchestrator's discovery standing (`GET /admin/runners`), and an operator's trip or reset
//! of a runner's breaker.

use serde::Serialize;

use super::*;
use crate::clock::instant_to_unix_ms;
use crate::liverunner::freshness::Standing;
use crate::pair::{ForceBreaker, PairReport};
use crate::supervisor::RegistryError;

/// Lists runner pairs as pair reports, filtered by app and by orchestrator (a runner matches
/// its own id, `orch-1:route`, and its orchestrator's, `orch-1`).
#[derive(Message)]
#[rtype(result = "Vec<PairReport>")]
pub struct ListRunnerPairs {
    /// Only this app.
    pub app: Option<String>,
    /// Only this orchestrator or runner.
    pub orchestrator: Option<String>,
}

impl Handler<ListRunnerPairs> for Runners {
    type Result = MessageResult<ListRunnerPairs>;

    fn handle(&mut self, msg: ListRunnerPairs, _ctx: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let reports = self
            .runners
            .iter()
            .filter(|(_, r)| msg.app.as_deref().is_none_or(|a| r.record.app.as_str() == a))
            .filter(|(rid, r)| msg.orchestrator.as_deref().is_none_or(|o| &*rid.0 == o || &*r.target.0 == o))
            .map(|(_, r)| r.view.read().report(now))
            .collect();
        MessageResult(reports)
    }
}

/// One orchestrator's discovery, as `GET /admin/runners` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DiscoveryTarget {
    /// Its id (the registry's, or `signer-N` for one the remote signer found).
    pub orchestrator: String,
    /// Its URL.
    pub url: String,
    /// `registry` or `signer`.
    pub source: &'static str,
    /// `pending`, `fresh`, `stale`, `expired` or `unsupported` (no Live Runner there).
    pub standing: &'static str,
    /// When a fetch last succeeded (Unix ms).
    pub last_ok_unix_ms: Option<u64>,
    /// How long ago that was (ms).
    pub discovery_age_ms: Option<u64>,
    /// Fetches failed in a row.
    pub failures: u32,
    /// What the last failed fetch said.
    pub last_error: Option<String>,
    /// Its runners (listed or kept).
    pub runners: usize,
}

/// Each target orchestrator's discovery standing.
#[derive(Message)]
#[rtype(result = "Vec<DiscoveryTarget>")]
pub struct GetRunnerTargets;

impl Handler<GetRunnerTargets> for Runners {
    type Result = MessageResult<GetRunnerTargets>;

    fn handle(&mut self, _msg: GetRunnerTargets, _ctx: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let targets = self
            .targets
            .iter()
            .map(|(id, t)| {
                let standing: Standing = t.freshness.standing(now, self.settings.grace);
                DiscoveryTarget {
                    orchestrator: id.to_string(),
                    url: t.url.clone(),
                    source: match t.source {
                        TargetSource::Registry => "registry",
                        TargetSource::Signer => "signer",
                    },
                    standing: standing.as_str(),
                    last_ok_unix_ms: t.freshness.last_ok().map(|l| instant_to_unix_ms(l, now)),
                    discovery_age_ms: t
                        .freshness
                        .last_ok()
                        .map(|l| now.saturating_duration_since(l).as_millis() as u64),
                    failures: t.freshness.failures(),
                    last_error: t.freshness.last_error().map(str::to_string),
                    runners: self.runners.values().filter(|r| &r.target == id).count(),
                }
            })
            .collect();
        MessageResult(targets)
    }
}

/// Forces a runner's breaker open (`trip`) or closed.
#[derive(Message)]
#[rtype(result = "Result<PairReport, RegistryError>")]
pub struct ForceRunner {
    /// The runner id (`orch-1:route`).
    pub runner: String,
    /// Trip (true) or reset (false).
    pub trip: bool,
    /// With `trip`: how long to hold it (`None`: until a reset).
    pub hold_for: Option<Duration>,
}

impl Handler<ForceRunner> for Runners {
    type Result = ResponseFuture<Result<PairReport, RegistryError>>;

    fn handle(&mut self, msg: ForceRunner, _ctx: &mut Self::Context) -> Self::Result {
        let addr = self.runners.get(&OrchestratorId(Arc::from(msg.runner.as_str()))).map(|r| r.addr.clone());
        Box::pin(async move {
            let addr = addr.ok_or_else(|| RegistryError::NotFound(msg.runner.clone()))?;
            let view = addr
                .send(ForceBreaker { trip: msg.trip, hold_for: msg.hold_for })
                .timeout(Duration::from_secs(5))
                .await
                .map_err(|_| RegistryError::Unavailable("pair actor"))?;
            Ok(view.report(Instant::now()))
        })
    }
}

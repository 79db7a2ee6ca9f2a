//! The Live Runner routes of the admin API: each orchestrator's discovery standing and the
//! known apps (`GET /admin/runners`), one runner's pair (`GET /admin/runners/{runner}`), and an
//! operator's trip or reset of a runner's breaker. Runner pairs also appear in
//! `GET /admin/pairs`, after the BYOC pairs.

use byoc_actors::liverunner::runners::{DiscoveryTarget, ForceRunner, GetRunnerTargets, ListRunnerPairs};
use byoc_actors::liverunner::Runners;

use super::pair::TripQuery;
use super::*;

/// The discovery actor, or the 404 that says Live Runner is off.
fn runners(state: &AdminState) -> Result<&Addr<Runners>, ApiError> {
    state.runners.as_ref().ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "live-runner-disabled",
            "Live Runner is switched off (live_runner.enabled = false)",
        )
    })
}

/// Runner pairs matching the filters (none when Live Runner is off), sorted by runner id.
pub(super) async fn runner_pairs(
    state: &AdminState,
    app: Option<String>,
    orchestrator: Option<String>,
) -> Result<Vec<PairReport>, ApiError> {
    let Some(addr) = state.runners.as_ref() else { return Ok(Vec::new()) };
    let mut pairs = addr
        .send(ListRunnerPairs { app, orchestrator })
        .timeout(ADMIN_TIMEOUT)
        .await
        .map_err(|_| mailbox("live runner discovery"))?;
    pairs.sort_by(|a, b| (&a.orchestrator, &a.capability).cmp(&(&b.orchestrator, &b.capability)));
    Ok(pairs)
}

/// `GET /admin/runners`'s body.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct RunnersReport {
    /// Each orchestrator whose discovery is fetched, with its standing.
    pub orchestrators: Vec<DiscoveryTarget>,
    /// Known apps with their runner counts.
    #[schema(value_type = Vec<Object>)]
    pub apps: Vec<serde_json::Value>,
}

/// Each orchestrator's Live Runner discovery (standing: `pending`, `fresh`, `stale`, `expired`,
/// `unsupported`; age of its records; failures) and the apps known from it.
#[utoipa::path(tag = "live-runner", responses(
    (status = 200, body = RunnersReport), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody, description = "live-runner-disabled"),
))]
#[get("/runners")]
pub(super) async fn list_runners(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let addr = runners(&state)?;
    let orchestrators =
        addr.send(GetRunnerTargets).timeout(ADMIN_TIMEOUT).await.map_err(|_| mailbox("live runner discovery"))?;
    let pairs = runner_pairs(&state, None, None).await?;
    let mut apps: std::collections::BTreeMap<String, (u32, u32, u32)> = std::collections::BTreeMap::new();
    for p in &pairs {
        let e = apps.entry(p.capability.clone()).or_default();
        match p.runner.as_ref().and_then(|r| r["mode"].as_str()) {
            Some("single-shot") => e.1 += 1,
            _ => e.0 += 1,
        }
        e.2 += u32::from(p.routable);
    }
    let apps = apps
        .into_iter()
        .map(|(app, (persistent, single_shot, routable))| {
            serde_json::json!({"app": app, "persistent": persistent, "single_shot": single_shot, "routable": routable})
        })
        .collect();
    Ok(HttpResponse::Ok().json(RunnersReport { orchestrators, apps }))
}

/// One runner's pair (`{runner}` is its id, `orch-1:route`).
#[utoipa::path(tag = "live-runner", params(("runner" = String, Path)), responses(
    (status = 200, body = PairReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[get("/runners/{runner}")]
pub(super) async fn get_runner(
    state: web::Data<AdminState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let runner = path.into_inner();
    runners(&state)?;
    let pairs = runner_pairs(&state, None, Some(runner.clone())).await?;
    let pair = pairs.into_iter().find(|p| p.orchestrator == runner).ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "runner-not-found",
            format!("no runner with id '{runner}'"),
        )
    })?;
    Ok(HttpResponse::Ok().json(pair))
}

async fn force_runner(
    state: &AdminState,
    runner: String,
    trip: bool,
    hold_for: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    let report = runners(state)?
        .send(ForceRunner { runner: runner.clone(), trip, hold_for })
        .timeout(ADMIN_TIMEOUT)
        .await
        .map_err(|_| mailbox("live runner discovery"))?
        .map_err(|e| match e {
            byoc_actors::supervisor::RegistryError::NotFound(_) => ApiError::new(
                actix_web::http::StatusCode::NOT_FOUND,
                "runner-not-found",
                format!("no runner with id '{runner}'"),
            ),
            other => ApiError::from(other),
        })?;
    Ok(HttpResponse::Ok().json(report))
}

/// Forces a runner's breaker open (until a reset, or for `?for=`): it takes no call or session.
#[utoipa::path(tag = "live-runner", params(("runner" = String, Path), TripQuery), responses(
    (status = 200, body = PairReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody),
))]
#[post("/runners/{runner}/trip")]
pub(super) async fn trip_runner(
    state: web::Data<AdminState>,
    path: web::Path<String>,
    q: web::Query<TripQuery>,
) -> Result<HttpResponse, ApiError> {
    let hold_for = super::pair::hold_for(q.into_inner())?;
    force_runner(&state, path.into_inner(), true, hold_for).await
}

/// Forces a runner's breaker closed and forgets its failures and back-offs.
#[utoipa::path(tag = "live-runner", params(("runner" = String, Path)), responses(
    (status = 200, body = PairReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[post("/runners/{runner}/reset")]
pub(super) async fn reset_runner(
    state: web::Data<AdminState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    force_runner(&state, path.into_inner(), false, None).await
}

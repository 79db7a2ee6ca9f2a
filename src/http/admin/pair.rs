//! The pair routes: list (filtered, paged), read, trip and reset a pair's breaker.

use super::*;

/// Largest `limit` of `GET /admin/pairs` (about 750 bytes of JSON per pair).
pub const MAX_PAIRS_PAGE: usize = 1000;

/// Query of `GET /admin/pairs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PairFilter {
    /// Only this capability.
    pub capability: Option<String>,
    /// Only this orchestrator id.
    pub orchestrator: Option<String>,
    /// Page size, 1 to 1000. Without it, every matching pair from `offset` on (the array can
    /// be large: about 7.5 MB for 10,000 pairs).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Matching pairs to skip (order: orchestrator id, then capability). Default 0.
    pub offset: Option<usize>,
}

/// Every pair actor's state, optionally filtered, in a stable order (orchestrator id, then
/// capability). The body is always a JSON array; `X-Total-Count` says how many pairs match in
/// all, and with `limit`, `Link: <...>; rel="next"` gives the next page while there is one.
#[utoipa::path(tag = "pairs", params(PairFilter), responses(
    (status = 200, body = [PairReport], headers(
        ("X-Total-Count" = usize, description = "Pairs matching the filters, over all pages"),
        ("Link" = String, description = "With `limit`, while more pairs follow: `<URL>; rel=\"next\"`"),
    )),
    (status = 400, body = ErrorBody, description = "invalid-query (e.g. limit out of 1..=1000)"),
    (status = 401, body = ErrorBody),
))]
#[get("/pairs")]
pub(super) async fn list_pairs(
    state: web::Data<AdminState>,
    q: web::Query<PairFilter>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    if let Some(limit) = q.limit.filter(|l| !(1..=MAX_PAIRS_PAGE).contains(l)) {
        return Err(ApiError::bad_request(
            "invalid-query",
            format!("limit must be between 1 and {MAX_PAIRS_PAGE} (got {limit})"),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    // Live Runner pairs (runner x app) follow the BYOC pairs in the listing's order.
    let runners = super::runner::runner_pairs(&state, q.capability.clone(), q.orchestrator.clone()).await?;
    let page = ListPairsPage { capability: q.capability, orchestrator: q.orchestrator, offset, limit: q.limit };
    let PairsPage { total: byoc_total, mut pairs } = ask(&state, page.clone()).await?;
    with_payments(&state, &mut pairs);
    let total = byoc_total + runners.len();
    let room = page.limit.map_or(usize::MAX, |l| l.saturating_sub(pairs.len()));
    pairs.extend(runners.into_iter().skip(offset.saturating_sub(byoc_total)).take(room));
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("X-Total-Count", total));
    let next = offset.saturating_add(pairs.len());
    if let (Some(limit), true) = (page.limit, next < total) {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(c) = &page.capability {
            query.append_pair("capability", c);
        }
        if let Some(o) = &page.orchestrator {
            query.append_pair("orchestrator", o);
        }
        query.append_pair("limit", &limit.to_string()).append_pair("offset", &next.to_string());
        resp.insert_header((header::LINK, format!("</admin/pairs?{}>; rel=\"next\"", query.finish())));
    }
    Ok(resp.json(pairs))
}

/// One pair actor's state.
#[utoipa::path(tag = "pairs", params(("orchestrator" = String, Path), ("capability" = String, Path)), responses(
    (status = 200, body = PairReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[get("/pairs/{orchestrator}/{capability}")]
pub(super) async fn get_pair(
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (orchestrator, capability) = path.into_inner();
    let pairs =
        ask(&state, ListPairs { capability: Some(capability.clone()), orchestrator: Some(orchestrator.clone()) })
            .await?;
    let mut pair = pairs
        .into_iter()
        .next()
        .ok_or(byoc_actors::supervisor::RegistryError::PairNotFound(orchestrator, capability))?;
    with_payments(&state, std::slice::from_mut(&mut pair));
    Ok(HttpResponse::Ok().json(pair))
}

/// Adds what the gateway paid at each pair (priced pairs it has paid) from the routers' ledger.
fn with_payments(state: &AdminState, pairs: &mut [PairReport]) {
    for p in pairs {
        let Ok(capability) = byoc_actors::capability::Capability::new(&p.capability) else { continue };
        let key = byoc_actors::pair::PairKey {
            orchestrator: byoc_actors::orchestrator::OrchestratorId(p.orchestrator.as_str().into()),
            capability,
        };
        p.payment = state.payments.report(&key).and_then(|r| serde_json::to_value(r).ok());
    }
}

pub(super) async fn force(
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
    trip: bool,
    hold_for: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    let (orchestrator, capability) = path.into_inner();
    let report = ask(&state, ForcePairBreaker { orchestrator, capability, trip, hold_for }).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// Query of `POST .../trip`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TripQuery {
    /// Hold the breaker open this long (`30s`, `10m`, `2h`; at most 7 days); without it, until
    /// a reset.
    #[serde(default, rename = "for")]
    pub hold_for: Option<String>,
}

/// Forces a pair's breaker open and holds it open until `POST .../reset` (or for `?for=`):
/// the pair takes no job meanwhile (`unroutable_reason: "forced-open"`, `breaker.forced`).
#[utoipa::path(tag = "pairs", params(("orchestrator" = String, Path), ("capability" = String, Path), TripQuery), responses(
    (status = 200, body = PairReport), (status = 400, body = ErrorBody, description = "invalid-duration"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[post("/pairs/{orchestrator}/{capability}/trip")]
pub(super) async fn trip_pair(
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
    q: web::Query<TripQuery>,
) -> Result<HttpResponse, ApiError> {
    let hold_for = hold_for(q.into_inner())?;
    force(state, path, true, hold_for).await
}

/// The `?for=` of a trip: how long to hold the breaker (`None`: until a reset).
pub(super) fn hold_for(q: TripQuery) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = q.hold_for else { return Ok(None) };
    let d = humantime_serde::re::humantime::parse_duration(raw.trim()).map_err(|e| {
        ApiError::bad_request("invalid-duration", format!("for={raw:?} is not a duration such as 30s, 10m or 2h: {e}"))
    })?;
    if d.is_zero() || d > byoc_actors::policy::MAX_DURATION {
        return Err(ApiError::bad_request(
            "invalid-duration",
            format!("for={raw:?} must be more than 0 and at most 7 days"),
        ));
    }
    Ok(Some(d))
}

/// Forces a pair's breaker closed and forgets its failure history and capacity back-off.
#[utoipa::path(tag = "pairs", params(("orchestrator" = String, Path), ("capability" = String, Path)), responses(
    (status = 200, body = PairReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[post("/pairs/{orchestrator}/{capability}/reset")]
pub(super) async fn reset_pair(
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    force(state, path, false, None).await
}

//! The admin API (bearer token when configured): the orchestrator registry, pair actors and
//! their breakers, capability policies, the supervisor's view, configuration reload, store
//! export, `/metrics`, the live status page, and the OpenAPI document of all of it.
//!
//! Every route is registered through `utoipa-actix-web` from the same `#[utoipa::path]` +
//! actix route macros that define it, so `/admin/openapi.json` cannot drift from the handlers.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use byoc_actors::discovery::{DiscoveryReport, GetDiscovery};
use byoc_actors::orchestrator::{Orchestrator, Source};
use byoc_actors::pair::PairReport;
use byoc_actors::policy::CapabilityPolicy;
use byoc_actors::store::StoreExport;
use byoc_actors::supervisor::{
    AddOrchestrator, CapabilityReport, DeleteCapabilityPolicy, ExportStore, ForcePairBreaker, GetCapability,
    GetSupervisorReport, ListCapabilities, ListOrchestrators, ListPairs, ListPairsPage, PairsPage, ReloadReport,
    RemoveOrchestrator, SetCapabilityPolicy, SetEnabledOrchestrator, Supervisor, SupervisorReport,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_actix_web::AppExt;

use super::error::{mailbox, ApiError, ErrorBody};

mod access;
use access::{authorized, local_only, require_token};

/// Bound on an admin call to an actor.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Re-reads the configuration file and hands the result to the supervisor; `None` when the
/// gateway was started without a config file.
pub type Reloader = Arc<dyn Fn() -> Option<Result<byoc_actors::supervisor::Reload, String>> + Send + Sync>;

/// State of the admin listener.
pub struct AdminState {
    /// The registry.
    pub supervisor: Addr<Supervisor>,
    /// Prometheus handle.
    pub metrics: PrometheusHandle,
    /// Required bearer token, if any.
    pub token: Option<Arc<str>>,
    /// Whether `/metrics` also requires the token.
    pub metrics_require_token: bool,
    /// Config reload.
    pub reloader: Reloader,
    /// Bound on one admin call, its body included (`limits.body_read_timeout`).
    pub request_timeout: Duration,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "byoc-gateway admin API", description = "Registry, pair actors, capability policies and operations of byoc-gateway."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "orchestrators", description = "The orchestrator registry"),
        (name = "pairs", description = "Pair actors (orchestrator x capability) and their breakers"),
        (name = "capabilities", description = "Capability routing policies"),
        (name = "operations", description = "Supervisor, reload, store, metrics, status page"),
    )
)]
struct AdminApi;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/admin` routes behind the token check. One list, used both to serve and to document
/// them, so the document is exactly what is served.
fn admin_scope() -> utoipa_actix_web::scope::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    utoipa_actix_web::scope("/admin")
        .wrap(actix_web::middleware::from_fn(require_token))
        .service(list_orchestrators)
        .service(add_orchestrator)
        .service(get_orchestrator)
        .service(patch_orchestrator)
        .service(remove_orchestrator)
        .service(list_pairs)
        .service(get_pair)
        .service(trip_pair)
        .service(reset_pair)
        .service(capabilities)
        .service(get_capability)
        .service(put_capability)
        .service(delete_capability)
        .service(supervisor)
        .service(discovery)
        .service(reload)
        .service(export_store)
}

/// The OpenAPI document of the admin listener, collected from the registered handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(AdminApi::openapi())
        .service(metrics)
        .service(ui)
        .service(admin_scope())
        .split_for_parts();
    api
}

/// Builds the admin app: JSON error handling, the token check, every route, the OpenAPI
/// document (`api`, from [`openapi`]) and the JSON 404.
pub fn app(
    state: web::Data<AdminState>,
    api: web::Data<utoipa::openapi::OpenApi>,
    json_limit: usize,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let scope = admin_scope().app_data(api).route(
        "/openapi.json",
        web::get().to(|api: web::Data<utoipa::openapi::OpenApi>| async move { HttpResponse::Ok().json(api.get_ref()) }),
    );
    actix_web::App::new()
        .app_data(state)
        .app_data(json_config(json_limit))
        .app_data(web::QueryConfig::default().error_handler(|err, _req| {
            ApiError::bad_request("invalid-query", format!("invalid query string: {err}")).into()
        }))
        .app_data(
            web::PathConfig::default().error_handler(|err, _req| {
                ApiError::bad_request("invalid-path", format!("invalid path: {err}")).into()
            }),
        )
        .into_utoipa_app()
        .service(metrics)
        .service(ui)
        .service(scope)
        .into_app()
        .default_service(web::to(super::not_found))
        .wrap(actix_web::middleware::from_fn(bounded))
        .wrap(actix_web::middleware::from_fn(local_only))
}

/// Bounds one admin call, its body included: a client trickling its JSON body gets a 408 and
/// the connection back, instead of holding it.
async fn bounded(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let limit = req.app_data::<web::Data<AdminState>>().map_or(ADMIN_TIMEOUT * 3, |s| s.request_timeout);
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(res) => res.map(ServiceResponse::map_into_boxed_body),
        Err(_) => Err(ApiError::new(
            actix_web::http::StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            format!("the admin call (its body included) did not complete within {}s", limit.as_secs_f64()),
        )
        .into()),
    }
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).content_type_required(false).error_handler(|err, _req| {
        let api = match &err {
            actix_web::error::JsonPayloadError::Overflow { limit }
            | actix_web::error::JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::body_too_large(*limit),
            other => {
                ApiError::bad_request("invalid-json", format!("the body is not valid JSON for this call: {other}"))
            }
        };
        api.into()
    })
}

/// Sends one message to the supervisor with the admin bound and maps a mailbox failure.
async fn ask<M>(state: &AdminState, msg: M) -> Result<M::Result, ApiError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    Supervisor: actix::Handler<M>,
{
    state.supervisor.send(msg).timeout(ADMIN_TIMEOUT).await.map_err(|_| mailbox("supervisor"))
}

/// Prometheus metrics (token required only when `metrics_require_token` is set).
#[utoipa::path(tag = "operations", security(()), responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain"),
    (status = 401, body = ErrorBody),
))]
#[get("/metrics")]
async fn metrics(req: HttpRequest, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    if let (true, Some(token)) = (state.metrics_require_token, &state.token) {
        if !authorized(&req, token) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render()))
}

/// The live status page: a self-contained HTML page (no build step, no CDN). It holds no data;
/// it asks for the token and calls the admin API from the browser.
#[utoipa::path(tag = "operations", security(()), responses((status = 200, description = "HTML page", content_type = "text/html")))]
#[get("/admin/ui")]
async fn ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ))
        .insert_header(("Cache-Control", "no-store"))
        .body(include_str!("ui.html"))
}

/// The registry.
#[utoipa::path(tag = "orchestrators", responses((status = 200, body = [Orchestrator]), (status = 401, body = ErrorBody)))]
#[get("/orchestrators")]
async fn list_orchestrators(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let list = ask(&state, ListOrchestrators).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Body of `POST /admin/orchestrators`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    /// URL or host:port (host:port means https, as go-livepeer's -orchAddr).
    pub url: String,
    /// Declared capabilities (pairs start at once); others are discovered as jobs ask.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Registers an orchestrator; durable before the 201.
#[utoipa::path(tag = "orchestrators", request_body = AddBody, responses(
    (status = 201, body = Orchestrator),
    (status = 400, body = ErrorBody, description = "invalid-url, invalid-capability, invalid-json"),
    (status = 401, body = ErrorBody), (status = 409, body = ErrorBody, description = "duplicate-orchestrator"),
    (status = 413, body = ErrorBody), (status = 503, body = ErrorBody, description = "store-unavailable"),
))]
#[post("/orchestrators")]
async fn add_orchestrator(state: web::Data<AdminState>, body: web::Json<AddBody>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let orch = ask(&state, AddOrchestrator { url: body.url, capabilities: body.capabilities, source: Source::Admin })
        .await??;
    Ok(HttpResponse::Created().json(orch))
}

/// One orchestrator.
#[utoipa::path(tag = "orchestrators", params(("id" = String, Path, description = "Orchestrator id")), responses(
    (status = 200, body = Orchestrator), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[get("/orchestrators/{id}")]
async fn get_orchestrator(state: web::Data<AdminState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let list = ask(&state, ListOrchestrators).await?;
    let orch = list.into_iter().find(|o| *o.id.0 == *id).ok_or(byoc_actors::supervisor::RegistryError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(orch))
}

/// Body of `PATCH /admin/orchestrators/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// false drains the orchestrator (in-flight jobs finish, no new ones); true takes it back.
    pub enabled: bool,
}

/// Enables or disables (drains) an orchestrator; durable before the answer.
#[utoipa::path(tag = "orchestrators", params(("id" = String, Path, description = "Orchestrator id")), request_body = PatchBody,
    responses((status = 200, body = Orchestrator), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[patch("/orchestrators/{id}")]
async fn patch_orchestrator(
    state: web::Data<AdminState>,
    id: web::Path<String>,
    body: web::Json<PatchBody>,
) -> Result<HttpResponse, ApiError> {
    let orch = ask(&state, SetEnabledOrchestrator { id: id.into_inner(), enabled: body.enabled }).await??;
    Ok(HttpResponse::Ok().json(orch))
}

/// Removes an orchestrator (durably); its pairs leave rotation at once and stop once their
/// in-flight jobs have finished.
#[utoipa::path(tag = "orchestrators", params(("id" = String, Path, description = "Orchestrator id")), responses(
    (status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
))]
#[delete("/orchestrators/{id}")]
async fn remove_orchestrator(state: web::Data<AdminState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ask(&state, RemoveOrchestrator { id: id.into_inner() }).await??;
    Ok(HttpResponse::NoContent().finish())
}

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
async fn list_pairs(state: web::Data<AdminState>, q: web::Query<PairFilter>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    if let Some(limit) = q.limit.filter(|l| !(1..=MAX_PAIRS_PAGE).contains(l)) {
        return Err(ApiError::bad_request(
            "invalid-query",
            format!("limit must be between 1 and {MAX_PAIRS_PAGE} (got {limit})"),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    let page = ListPairsPage { capability: q.capability, orchestrator: q.orchestrator, offset, limit: q.limit };
    let PairsPage { total, pairs } = ask(&state, page.clone()).await?;
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
async fn get_pair(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (orchestrator, capability) = path.into_inner();
    let pairs =
        ask(&state, ListPairs { capability: Some(capability.clone()), orchestrator: Some(orchestrator.clone()) })
            .await?;
    let pair = pairs
        .into_iter()
        .next()
        .ok_or(byoc_actors::supervisor::RegistryError::PairNotFound(orchestrator, capability))?;
    Ok(HttpResponse::Ok().json(pair))
}

async fn force(
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
    trip: bool,
) -> Result<HttpResponse, ApiError> {
    let (orchestrator, capability) = path.into_inner();
    let report = ask(&state, ForcePairBreaker { orchestrator, capability, trip }).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// Forces a pair's breaker open (at its current level).
#[utoipa::path(tag = "pairs", params(("orchestrator" = String, Path), ("capability" = String, Path)), responses(
    (status = 200, body = PairReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[post("/pairs/{orchestrator}/{capability}/trip")]
async fn trip_pair(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    force(state, path, true).await
}

/// Forces a pair's breaker closed and forgets its failure history and capacity back-off.
#[utoipa::path(tag = "pairs", params(("orchestrator" = String, Path), ("capability" = String, Path)), responses(
    (status = 200, body = PairReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[post("/pairs/{orchestrator}/{capability}/reset")]
async fn reset_pair(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    force(state, path, false).await
}

/// Registered capabilities and those with a policy.
#[utoipa::path(tag = "capabilities", responses((status = 200, body = [CapabilityReport]), (status = 401, body = ErrorBody)))]
#[get("/capabilities")]
async fn capabilities(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let list = ask(&state, ListCapabilities).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One capability: its policy, the knobs in force and its pair counts.
#[utoipa::path(tag = "capabilities", params(("name" = String, Path)), responses(
    (status = 200, body = CapabilityReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody),
))]
#[get("/capabilities/{name}")]
async fn get_capability(state: web::Data<AdminState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, GetCapability { name: name.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// Sets a capability's policy (replacing it): validated, durable, applied at once.
#[utoipa::path(tag = "capabilities", params(("name" = String, Path)), request_body = CapabilityPolicy, responses(
    (status = 200, body = CapabilityReport), (status = 400, body = ErrorBody, description = "invalid-policy, invalid-json, invalid-capability"),
    (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
))]
#[put("/capabilities/{name}")]
async fn put_capability(
    state: web::Data<AdminState>,
    name: web::Path<String>,
    body: web::Json<CapabilityPolicy>,
) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, SetCapabilityPolicy { name: name.into_inner(), policy: body.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// Removes a capability's runtime policy; the config file's (or the default) applies again.
#[utoipa::path(tag = "capabilities", params(("name" = String, Path)), responses(
    (status = 200, body = CapabilityReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
))]
#[delete("/capabilities/{name}")]
async fn delete_capability(state: web::Data<AdminState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, DeleteCapabilityPolicy { name: name.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// The supervisor: actor counts, restarts per pair, mailbox pressure.
#[utoipa::path(tag = "operations", responses((status = 200, body = SupervisorReport), (status = 401, body = ErrorBody)))]
#[get("/supervisor")]
async fn supervisor(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, GetSupervisorReport).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The discovery webhook: configuration, the last fetch (time, outcome, error, entries listed
/// and skipped, what it added and removed) and counts. `enabled: false` when none is set.
#[utoipa::path(tag = "operations", responses((status = 200, body = DiscoveryReport), (status = 401, body = ErrorBody)))]
#[get("/discovery")]
async fn discovery(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, GetDiscovery).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Re-reads the config file's static orchestrators and capability policies (as SIGHUP does),
/// without dropping in-flight jobs. An invalid file changes nothing.
#[utoipa::path(tag = "operations", responses(
    (status = 200, body = ReloadReport), (status = 400, body = ErrorBody, description = "invalid-config, no-config-file"),
    (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
))]
#[post("/reload")]
async fn reload(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let msg = match (state.reloader)() {
        None => {
            return Err(ApiError::bad_request(
                "no-config-file",
                "the gateway was started without --config; nothing to reload",
            ))
        }
        Some(Err(e)) => return Err(ApiError::bad_request("invalid-config", e)),
        Some(Ok(msg)) => msg,
    };
    let report = ask(&state, msg).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// A consistent snapshot of the store (registry, learned scores, policies), for
/// `byoc-gateway store export` and backups.
#[utoipa::path(tag = "operations", responses(
    (status = 200, body = StoreExport), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
))]
#[get("/store/export")]
async fn export_store(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let export = ask(&state, ExportStore).await??;
    Ok(HttpResponse::Ok().json(export))
}

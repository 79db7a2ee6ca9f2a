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
use byoc_actors::history::HistoryReport;
use byoc_actors::orchestrator::{Orchestrator, Source};
use byoc_actors::pair::PairReport;
use byoc_actors::policy::CapabilityPolicy;
use byoc_actors::store::StoreExport;
use byoc_actors::supervisor::{
    AddOrchestrator, CapabilityReport, ChangeOrchestrator, DeleteCapabilityPolicy, ExportStore, ForcePairBreaker,
    ForgetCapability, ForgottenCapability, GetCapability, GetHistory, GetSupervisorReport, ListCapabilities,
    ListOrchestrators, ListPairs, ListPairsPage, PairsPage, ReloadReport, RemoveOrchestrator, RenderPairMetrics,
    SetCapabilityPolicy, Supervisor, SupervisorReport,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_actix_web::AppExt;

use super::error::{mailbox, ApiError, ErrorBody};

mod access;
mod capability;
pub mod fleet;
mod orchestrator;
mod pair;
mod runner;
mod session;
mod stream;

use access::{authorized, local_only, require_token};
use capability::{capabilities, delete_capability, forget_capability, get_capability, put_capability};
use orchestrator::{add_orchestrator, get_orchestrator, list_orchestrators, patch_orchestrator, remove_orchestrator};
use pair::{get_pair, list_pairs, reset_pair, trip_pair};
use runner::{get_runner, list_runners, reset_runner, trip_runner};
use session::{list_sessions, stop_session};
use stream::{get_stream, list_streams, stop_stream};

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
    /// Most pairs with per-pair series on `/metrics` (`metrics_pair_series`).
    pub metrics_pair_series: usize,
    /// Config reload.
    pub reloader: Reloader,
    /// Bound on one admin call, its body included (`limits.body_read_timeout`).
    pub request_timeout: Duration,
    /// The routers' payment ledger (what `GET /admin/pairs` shows as `payment`).
    pub payments: Arc<byoc_actors::route::Payments>,
    /// Live streams.
    pub streams: byoc_actors::stream::Streams,
    /// How fresh the registry copy is (headers of every admin answer, `GET /admin/registry`).
    pub registry: byoc_actors::registry::RegistryStatus,
    /// This replica in its fleet (`GET /admin/fleet`).
    pub fleet: Arc<fleet::Fleet>,
    /// The Live Runner discovery actor, unless Live Runner is off.
    pub runners: Option<Addr<byoc_actors::liverunner::Runners>>,
    /// The Live Runner sessions, unless Live Runner is off.
    pub sessions: Option<byoc_actors::liverunner::Sessions>,
    /// The upstream client's settings (to release a session an operator stops).
    pub client: byoc_actors::protocol::client::ClientSettings,
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
        (name = "streams", description = "Live streams (go-livepeer's /process/stream API)"),
        (name = "live-runner", description = "Live Runner runners (discovery, breakers) and sessions"),
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
        .wrap(actix_web::middleware::from_fn(fleet::registry_headers))
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
        .service(list_runners)
        .service(get_runner)
        .service(trip_runner)
        .service(reset_runner)
        .service(list_sessions)
        .service(stop_session)
        .service(capabilities)
        .service(get_capability)
        .service(put_capability)
        .service(delete_capability)
        .service(forget_capability)
        .service(list_streams)
        .service(get_stream)
        .service(stop_stream)
        .service(supervisor)
        .service(history)
        .service(discovery)
        .service(reload)
        .service(export_store)
        .service(fleet::fleet)
        .service(fleet::registry_status)
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

/// A request no route took: 405 with `Allow` when the path is an admin route served for other
/// methods (as the public API answers), the JSON 404 otherwise. The routes are read from the
/// OpenAPI document, which is built from the served handlers.
async fn unrouted(req: HttpRequest, api: web::Data<utoipa::openapi::OpenApi>) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    let matches = |template: &str| {
        let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
    };
    let mut allowed: Vec<&str> = Vec::new();
    for (_, item) in api.paths.paths.iter().filter(|(t, _)| matches(t)) {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ] {
            if op.is_some() && !allowed.contains(&method) {
                allowed.push(method);
            }
        }
    }
    if allowed.is_empty() {
        return Err(ApiError::route_not_found(req.method().as_str(), path));
    }
    let allow = allowed.join(", ");
    let mut resp = actix_web::ResponseError::error_response(&ApiError::method_not_allowed(&allow));
    if let Ok(v) = header::HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    Ok(resp)
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
    let scope = admin_scope().app_data(api.clone()).route(
        "/openapi.json",
        web::get().to(|api: web::Data<utoipa::openapi::OpenApi>| async move { HttpResponse::Ok().json(api.get_ref()) }),
    );
    actix_web::App::new()
        .app_data(state)
        .app_data(api)
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
        .default_service(web::to(unrouted))
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
    // Without the series of capabilities an operator forgot (the recorder cannot drop them).
    let mut text = byoc_actors::metrics::hidden::filter(state.metrics.render());
    // The per-pair series, as the pairs are now. A supervisor too busy to answer costs them
    // this scrape, not the whole scrape.
    match ask(&state, RenderPairMetrics { limit: state.metrics_pair_series }).await {
        Ok(pairs) => text.push_str(&pairs),
        Err(e) => tracing::warn!(error = %e, "per-pair series left out of this scrape"),
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text))
}

/// The live status page: a self-contained HTML page (no build step, no CDN). It holds no data;
/// it asks for the token and calls the admin API from the browser. No page may frame it
/// (`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for browsers without CSP level 2): a
/// framing page could otherwise trick an operator into clicking its trip and reset buttons.
#[utoipa::path(tag = "operations", security(()), responses((status = 200, description = "HTML page", content_type = "text/html")))]
#[get("/admin/ui")]
async fn ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Cache-Control", "no-store"))
        .body(include_str!("ui.html"))
}

/// The supervisor: actor counts, restarts per pair, mailbox pressure.
#[utoipa::path(tag = "operations", responses((status = 200, body = SupervisorReport), (status = 401, body = ErrorBody)))]
#[get("/supervisor")]
async fn supervisor(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, GetSupervisorReport).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The status page's plots: per pair its median latency and success ratio, per capability its
/// answers and failures per second, queue depth and queue wait, one value per sample
/// (`history.period`, 10 s) over `history.window` (15 min), oldest first, `null` where nothing
/// happened in an interval.
#[utoipa::path(tag = "operations", responses((status = 200, body = HistoryReport), (status = 401, body = ErrorBody)))]
#[get("/history")]
async fn history(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, GetHistory).await?;
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

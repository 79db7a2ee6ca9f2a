//! The admin API (bearer token when configured): the orchestrator registry, pair actors and
//! their breakers, the supervisor's view, capability policies, and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use byoc_actors::orchestrator::Source;
use byoc_actors::policy::CapabilityPolicy;
use byoc_actors::supervisor::{
    AddOrchestrator, DeleteCapabilityPolicy, ForcePairBreaker, GetCapability, GetSupervisorReport, ListCapabilities,
    ListOrchestrators, ListPairs, RemoveOrchestrator, SetCapabilityPolicy, Supervisor,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;

use super::error::{mailbox, ApiError};

/// Bound on an admin call to an actor.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// State of the admin listener.
pub struct AdminState {
    /// The registry.
    pub supervisor: Addr<Supervisor>,

    /// Prometheus handle.
    pub metrics: PrometheusHandle,
    /// Required bearer token, if any.
    pub token: Option<Arc<str>>,
}

/// Registers the admin routes with the token check and JSON error handling.
pub fn configure(cfg: &mut web::ServiceConfig, json_limit: usize) {
    cfg.app_data(web::JsonConfig::default().limit(json_limit).content_type_required(false).error_handler(
        |err, _req| {
            let api = match &err {
                actix_web::error::JsonPayloadError::Overflow { limit }
                | actix_web::error::JsonPayloadError::OverflowKnownLength { limit, .. } => {
                    ApiError::body_too_large(*limit)
                }
                other => {
                    ApiError::bad_request("invalid-json", format!("the body is not valid JSON for this call: {other}"))
                }
            };
            api.into()
        },
    ))
    .app_data(web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::bad_request("invalid-query", format!("invalid query string: {err}")).into()
    }))
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _req| ApiError::bad_request("invalid-path", format!("invalid path: {err}")).into()),
    )
    .service(web::resource("/metrics").route(web::get().to(metrics)))
    .service(
        web::scope("/admin")
            .wrap(actix_web::middleware::from_fn(require_token))
            .service(
                web::resource("/orchestrators")
                    .route(web::get().to(list_orchestrators))
                    .route(web::post().to(add_orchestrator)),
            )
            .service(web::resource("/orchestrators/{id}").route(web::delete().to(remove_orchestrator)))
            .service(web::resource("/pairs").route(web::get().to(list_pairs)))
            .service(web::resource("/pairs/{orchestrator}/{capability}/trip").route(web::post().to(trip)))
            .service(web::resource("/pairs/{orchestrator}/{capability}/reset").route(web::post().to(reset)))
            .service(web::resource("/supervisor").route(web::get().to(supervisor)))
            .service(web::resource("/capabilities").route(web::get().to(capabilities)))
            .service(
                web::resource("/capabilities/{name}")
                    .route(web::get().to(get_capability))
                    .route(web::put().to(put_capability))
                    .route(web::delete().to(delete_capability)),
            ),
    );
}

/// Constant-time comparison, so response timing does not leak how much of a guess matched.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && openssl::memcmp::eq(given, expected)
}

async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let expected = req.app_data::<web::Data<AdminState>>().and_then(|s| s.token.clone());
    if let Some(expected) = expected {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| token_matches(g.as_bytes(), expected.as_bytes())) {
            return Err(ApiError::unauthorized().into());
        }
    }
    next.call(req).await
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

async fn list_orchestrators(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let list =
        state.supervisor.send(ListOrchestrators).timeout(ADMIN_TIMEOUT).await.map_err(|_| mailbox("supervisor"))?;
    Ok(HttpResponse::Ok().json(list))
}

/// Body of `POST /admin/orchestrators`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    /// URL or host:port.
    pub url: String,
    /// Declared capabilities.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

async fn add_orchestrator(state: web::Data<AdminState>, body: web::Json<AddBody>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let orch = state
        .supervisor
        .send(AddOrchestrator { url: body.url, capabilities: body.capabilities, source: Source::Admin })
        .timeout(ADMIN_TIMEOUT)
        .await
        .map_err(|_| mailbox("supervisor"))??;
    Ok(HttpResponse::Created().json(orch))
}

async fn remove_orchestrator(state: web::Data<AdminState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state
        .supervisor
        .send(RemoveOrchestrator { id: id.into_inner() })
        .timeout(ADMIN_TIMEOUT)
        .await
        .map_err(|_| mailbox("supervisor"))??;
    Ok(HttpResponse::NoContent().finish())
}

/// Query of `GET /admin/pairs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairFilter {
    /// Only this capability.
    pub capability: Option<String>,
    /// Only this orchestrator id.
    pub orchestrator: Option<String>,
}

async fn list_pairs(state: web::Data<AdminState>, q: web::Query<PairFilter>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let pairs = state
        .supervisor
        .send(ListPairs { capability: q.capability, orchestrator: q.orchestrator })
        .timeout(ADMIN_TIMEOUT)
        .await
        .map_err(|_| mailbox("supervisor"))?;
    Ok(HttpResponse::Ok().json(pairs))
}

async fn force(
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
    trip: bool,
) -> Result<HttpResponse, ApiError> {
    let (orchestrator, capability) = path.into_inner();
    let report = state
        .supervisor
        .send(ForcePairBreaker { orchestrator, capability, trip })
        .timeout(ADMIN_TIMEOUT)
        .await
        .map_err(|_| mailbox("supervisor"))??;
    Ok(HttpResponse::Ok().json(report))
}

async fn trip(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    force(state, path, true).await
}

async fn reset(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    force(state, path, false).await
}

async fn supervisor(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let report =
        state.supervisor.send(GetSupervisorReport).timeout(ADMIN_TIMEOUT).await.map_err(|_| mailbox("supervisor"))?;
    Ok(HttpResponse::Ok().json(report))
}

async fn capabilities(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let list =
        state.supervisor.send(ListCapabilities).timeout(ADMIN_TIMEOUT).await.map_err(|_| mailbox("supervisor"))?;
    Ok(HttpResponse::Ok().json(list))
}

async fn get_capability(state: web::Data<AdminState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let report = state
        .supervisor
        .send(GetCapability { name: name.into_inner() })
        .timeout(ADMIN_TIMEOUT)
        .await
        .map_err(|_| mailbox("supervisor"))??;
    Ok(HttpResponse::Ok().json(report))
}

async fn delete_capability(state: web::Data<AdminState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let report = state
        .supervisor
        .send(DeleteCapabilityPolicy { name: name.into_inner() })
        .timeout(ADMIN_TIMEOUT)
        .await
        .map_err(|_| mailbox("supervisor"))??;
    Ok(HttpResponse::Ok().json(report))
}

async fn put_capability(
    state: web::Data<AdminState>,
    name: web::Path<String>,
    body: web::Json<CapabilityPolicy>,
) -> Result<HttpResponse, ApiError> {
    let report = state
        .supervisor
        .send(SetCapabilityPolicy { name: name.into_inner(), policy: body.into_inner() })
        .timeout(ADMIN_TIMEOUT)
        .await
        .map_err(|_| mailbox("supervisor"))??;
    Ok(HttpResponse::Ok().json(report))
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"secret", b"secret"));
        assert!(!token_matches(b"secreT", b"secret"));
        assert!(!token_matches(b"secret1", b"secret"));
        assert!(!token_matches(b"", b"secret"));
    }
}

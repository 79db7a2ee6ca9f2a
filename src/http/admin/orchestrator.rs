//! The registry routes: list, add, read, enable or drain, remove orchestrators.

use super::*;

/// The registry.
#[utoipa::path(tag = "orchestrators", responses((status = 200, body = [Orchestrator]), (status = 401, body = ErrorBody)))]
#[get("/orchestrators")]
pub(super) async fn list_orchestrators(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let list = ask(&state, ListOrchestrators).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Body of `POST /admin/orchestrators`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    /// URL or host:port (host:port means https, as go-livepeer's -orchAddr).
    pub url: String,
    /// Declared capabilities (pairs start at once; at most 256); others are discovered as jobs
    /// ask.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The operator's label for it (1-64 characters, no control characters, '=' or ','),
    /// shown beside its id on the status page, in the admin API and in log lines.
    #[serde(default)]
    pub label: Option<String>,
}

/// Registers an orchestrator; durable before the 201.
#[utoipa::path(tag = "orchestrators", request_body = AddBody, responses(
    (status = 201, body = Orchestrator),
    (status = 400, body = ErrorBody, description = "invalid-url, invalid-capability, too-many-capabilities, invalid-label, invalid-json"),
    (status = 401, body = ErrorBody), (status = 409, body = ErrorBody, description = "duplicate-orchestrator"),
    (status = 413, body = ErrorBody), (status = 503, body = ErrorBody, description = "store-unavailable"),
))]
#[post("/orchestrators")]
pub(super) async fn add_orchestrator(
    state: web::Data<AdminState>,
    body: web::Json<AddBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let add =
        AddOrchestrator { url: body.url, capabilities: body.capabilities, label: body.label, source: Source::Admin };
    let orch = ask(&state, add).await??;
    Ok(HttpResponse::Created().json(orch))
}

/// One orchestrator.
#[utoipa::path(tag = "orchestrators", params(("id" = String, Path, description = "Orchestrator id")), responses(
    (status = 200, body = Orchestrator), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[get("/orchestrators/{id}")]
pub(super) async fn get_orchestrator(
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let list = ask(&state, ListOrchestrators).await?;
    let orch = list.into_iter().find(|o| *o.id.0 == *id).ok_or(byoc_actors::supervisor::RegistryError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(orch))
}

/// Body of `PATCH /admin/orchestrators/{id}`: the fields to change (at least one).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// false drains the orchestrator (in-flight jobs finish, no new ones); true takes it back.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A new label, or null to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub label: Option<Option<String>>,
}

/// A field that is present (`Some`), as a value or null, apart from one left out (`None`, the
/// default).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Enables or disables (drains) an orchestrator, sets or removes its label; durable before the
/// answer.
#[utoipa::path(tag = "orchestrators", params(("id" = String, Path, description = "Orchestrator id")), request_body = PatchBody,
    responses((status = 200, body = Orchestrator),
        (status = 400, body = ErrorBody, description = "invalid-label, invalid-patch (nothing to change), invalid-json"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[patch("/orchestrators/{id}")]
pub(super) async fn patch_orchestrator(
    state: web::Data<AdminState>,
    id: web::Path<String>,
    body: web::Json<PatchBody>,
) -> Result<HttpResponse, ApiError> {
    let PatchBody { enabled, label } = body.into_inner();
    if enabled.is_none() && label.is_none() {
        return Err(ApiError::bad_request("invalid-patch", "nothing to change: give 'enabled', 'label' or both"));
    }
    let orch = ask(&state, ChangeOrchestrator { id: id.into_inner(), enabled, label }).await??;
    Ok(HttpResponse::Ok().json(orch))
}

/// Removes an orchestrator (durably); its pairs leave rotation at once and stop once their
/// in-flight jobs have finished.
#[utoipa::path(tag = "orchestrators", params(("id" = String, Path, description = "Orchestrator id")), responses(
    (status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
))]
#[delete("/orchestrators/{id}")]
pub(super) async fn remove_orchestrator(
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    ask(&state, RemoveOrchestrator { id: id.into_inner() }).await??;
    Ok(HttpResponse::NoContent().finish())
}

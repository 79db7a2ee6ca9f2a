//! The capability routes: list, read, set and delete runtime policies, forget a capability.

use super::*;

/// Registered capabilities and those with a policy.
#[utoipa::path(tag = "capabilities", responses((status = 200, body = [CapabilityReport]), (status = 401, body = ErrorBody)))]
#[get("/capabilities")]
pub(super) async fn capabilities(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let list = ask(&state, ListCapabilities).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One capability: its policy, the knobs in force and its pair counts.
#[utoipa::path(tag = "capabilities", params(("name" = String, Path)), responses(
    (status = 200, body = CapabilityReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody),
))]
#[get("/capabilities/{name}")]
pub(super) async fn get_capability(
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, GetCapability { name: name.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// Sets a capability's policy (replacing it): validated, durable, applied at once.
#[utoipa::path(tag = "capabilities", params(("name" = String, Path)), request_body = CapabilityPolicy, responses(
    (status = 200, body = CapabilityReport), (status = 400, body = ErrorBody, description = "invalid-policy, invalid-json, invalid-capability"),
    (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
))]
#[put("/capabilities/{name}")]
pub(super) async fn put_capability(
    state: web::Data<AdminState>,
    name: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    // JSON that parses but is not a policy (an unknown profile, a misspelt key, a wrong type)
    // is an invalid policy, not invalid JSON.
    let policy: CapabilityPolicy = serde_json::from_value(body.into_inner()).map_err(|e| {
        ApiError::from(byoc_actors::supervisor::RegistryError::InvalidPolicy(name.clone(), e.to_string()))
    })?;
    let report = ask(&state, SetCapabilityPolicy { name, policy }).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// Removes a capability's runtime policy; the config file's (or the default) applies again.
#[utoipa::path(tag = "capabilities", params(("name" = String, Path)), responses(
    (status = 200, body = CapabilityReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
))]
#[delete("/capabilities/{name}")]
pub(super) async fn delete_capability(
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, DeleteCapabilityPolicy { name: name.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(report))
}

/// Forgets a capability nothing declares: its pairs stop, its records and runtime policy leave
/// the store, its metric series are no longer exported.
#[utoipa::path(tag = "capabilities", params(("name" = String, Path)), responses(
    (status = 200, body = ForgottenCapability), (status = 400, body = ErrorBody, description = "invalid-capability"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "capability-not-found"),
    (status = 409, body = ErrorBody, description = "capability-declared: the config file or orchestrators declare it"),
    (status = 503, body = ErrorBody),
))]
#[post("/capabilities/{name}/forget")]
pub(super) async fn forget_capability(
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let report = ask(&state, ForgetCapability { name: name.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(report))
}

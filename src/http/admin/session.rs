//! The gateway's Live Runner sessions in the admin API: `GET /admin/sessions` lists them (app,
//! runner, age, idle time, requests in flight), `POST /admin/sessions/{id}/stop` ends one and
//! releases it at its runner.

use byoc_actors::liverunner::sessions::{EndReason, SessionInfo};
use byoc_actors::liverunner::Sessions;

use super::*;

fn sessions(state: &AdminState) -> Result<&Sessions, ApiError> {
    state.sessions.as_ref().ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "live-runner-disabled",
            "Live Runner is switched off (live_runner.enabled = false)",
        )
    })
}

/// `GET /admin/sessions`'s body.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SessionsReport {
    /// Live sessions, by id.
    #[schema(value_type = Vec<Object>)]
    pub sessions: Vec<SessionInfo>,
}

/// The Live Runner sessions the gateway holds.
#[utoipa::path(tag = "live-runner", responses(
    (status = 200, body = SessionsReport), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody, description = "live-runner-disabled"),
))]
#[get("/sessions")]
pub(super) async fn list_sessions(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let sessions = sessions(&state)?.list();
    Ok(HttpResponse::Ok().json(SessionsReport { sessions }))
}

/// Ends a session and releases it at its runner (the client's next request gets
/// `session-ended`).
#[utoipa::path(tag = "live-runner", params(("id" = String, Path)), responses(
    (status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[post("/sessions/{id}/stop")]
pub(super) async fn stop_session(
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sessions = sessions(&state)?;
    let client = byoc_actors::protocol::client::build_client(&state.client).unwrap_or_default();
    let id = id.into_inner();
    if sessions.end(&client, &id, EndReason::Stopped).await {
        Ok(HttpResponse::Ok().json(serde_json::json!({"stopped": id})))
    } else {
        Err(ApiError::new(actix_web::http::StatusCode::NOT_FOUND, "unknown-session", format!("no session {id}")))
    }
}

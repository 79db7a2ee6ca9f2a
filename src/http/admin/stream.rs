//! The stream routes: every stream (live, then the last ended), one stream, and stopping one.

use byoc_actors::stream::{Stopper, StreamError, StreamReport};

use super::*;

/// Every live stream, then the last ended ones (newest first): capability, state, current
/// orchestrator, swaps with reasons, media each way, last event age, payments.
#[utoipa::path(tag = "streams", responses((status = 200, body = [StreamReport]), (status = 401, body = ErrorBody)))]
#[get("/streams")]
pub(super) async fn list_streams(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok().json(state.streams.list())
}

/// One stream.
#[utoipa::path(tag = "streams", params(("id" = String, Path)), responses(
    (status = 200, body = StreamReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
))]
#[get("/streams/{id}")]
pub(super) async fn get_stream(state: web::Data<AdminState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state
        .streams
        .report(&id)
        .map(|r| HttpResponse::Ok().json(r))
        .ok_or_else(|| StreamError::NotFound(id.into_inner()).into())
}

/// Stops a stream: its orchestrator is told (`/ai/stream/stop`), its clients get their end.
/// Answers with the stream as it ended.
#[utoipa::path(tag = "streams", params(("id" = String, Path)), responses(
    (status = 200, body = StreamReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "stream-ended: it had already ended"),
))]
#[delete("/streams/{id}")]
pub(super) async fn stop_stream(state: web::Data<AdminState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.streams.stop(&id, Stopper::Operator, bytes::Bytes::from_static(b"stopped by an operator")).await?;
    let report = state.streams.report(&id).ok_or_else(|| StreamError::NotFound(id.to_string()))?;
    Ok(HttpResponse::Ok().json(report))
}

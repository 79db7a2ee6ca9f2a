//! The public API: `POST /process/request/{path...}` (BYOC jobs, go-livepeer compatible),
//! `GET /healthz`, `GET /readyz`.

use std::fmt::Write as _;
use std::time::Duration;

use actix::Addr;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use byoc_actors::log_limit::LogLimit;
use byoc_actors::protocol::header::decode_client_header;
use byoc_actors::protocol::path::check_worker_path;
use byoc_actors::protocol::{names, PROCESS_REQUEST_PREFIX};
use byoc_actors::route::{Job, Router};
use byoc_actors::store::{Ping, Store};
use byoc_actors::supervisor::{GetSupervisorReport, Supervisor};
use serde_json::json;
use tracing::Instrument as _;

use super::body::{read_body, BodyBudget, BodyReservation};
use super::error::ApiError;

/// Failed jobs logged per error code and second; the rest are counted in a summary line.
static JOB_FAILED: LogLimit = LogLimit::new("job failed", 10, Duration::from_secs(1));

/// Per-worker state of the public listener.
pub struct PublicState {
    /// The attempt loop (holds this worker's upstream client).
    pub router: Router,
    /// For `/readyz`.
    pub store: Addr<Store>,
    /// For `/readyz`.
    pub supervisor: Addr<Supervisor>,
    /// How job bodies are read (size, time and pace bounds).
    pub body: super::body::BodyRules,
    /// Jobs in flight, gateway-wide (shared by every worker).
    pub jobs: std::sync::Arc<super::JobLimit>,
    /// Bytes of job bodies held, gateway-wide.
    pub bodies: std::sync::Arc<BodyBudget>,
    /// Live streams (shared by every worker).
    pub streams: byoc_actors::stream::Streams,
    /// WHIP ingest, when it is on.
    pub whip: Option<byoc_actors::media::Whip>,
}

/// Registers the public routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        // A scope with a static prefix matches by string comparison; a `{tail:.*}` resource
        // ran a regex per job (a tenth of the gateway's instructions per request).
        .service(web::scope("/process/request").default_service(web::to(process_request)));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<PublicState>) -> Result<HttpResponse, ApiError> {
    let t = Duration::from_secs(2);
    let store = state.store.send(Ping).timeout(t).await;
    let supervisor = state.supervisor.send(GetSupervisorReport).timeout(t).await;
    match (store, supervisor) {
        (Ok(Ok(())), Ok(report)) => Ok(HttpResponse::Ok().json(json!({
            "status": "ready",
            "orchestrators": report.orchestrators,
            "pair_actors": report.pair_actors,
            "routable": report.routable,
        }))),
        (Ok(Err(e)), _) => {
            Err(ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "not-ready", format!("store: {e}")))
        }
        _ => Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "an actor did not answer in time",
        )),
    }
}

/// Returns the client's `X-Request-Id` if it is sane, or a fresh one.
pub fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get("X-Request-Id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| {
            // Sized up front: `format!` would grow its string on the way (two allocations).
            let mut id = String::with_capacity(32);
            let _ = write!(id, "{:032x}", rand::random::<u128>());
            id
        })
}

async fn process_request(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<PublicState>,
) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    if !path.starts_with(PROCESS_REQUEST_PREFIX) {
        // `/process/request` itself: no worker path.
        return Err(ApiError::route_not_found(req.method().as_str(), path));
    }
    if req.method() != actix_web::http::Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    check_subpath(&path[PROCESS_REQUEST_PREFIX.len()..])?;
    let via = check_loop(&req, &state)?;
    let request_id = request_id(&req);
    let client = decode_client_header(req.headers().get(names::LIVEPEER).map(HeaderValue::as_bytes))?;
    let mut held = BodyReservation::new(&state.bodies, req.peer_addr().map(|a| a.ip()));
    let body = read_body(&req, payload, &state.body, &mut held).await?;
    let slot = state.jobs.admit(held)?;
    let job = Job {
        client,
        path: path.to_string(),
        body,
        content_type: content_type(&req),
        request_id,
        via,
        client_addr: req.peer_addr().map(|a| a.ip()),
    };
    Ok(run_job(&state, job, slot, ErrorShape::AsIs).await)
}

/// Checks the worker path a job is forwarded to (after `/process/request/`) with the
/// protocol's rule ([`check_worker_path`]: no dot segment however it is hidden, no encoded
/// separator): such a path is forwarded as is, and a hop that normalises paths would resolve
/// it to another of the orchestrator's paths, such as its control routes.
pub(super) fn check_subpath(subpath: &str) -> Result<(), ApiError> {
    check_worker_path(subpath).map_err(|why| {
        ApiError::bad_request(
            "invalid-path",
            format!("the path after {PROCESS_REQUEST_PREFIX} {why}; nothing was sent"),
        )
    })
}

/// Refuses a job that already passed through this gateway (its loop marker is in `Via`: an
/// orchestrator's `service_addr` leads back here) with 508 before anything else happens, and
/// returns the `Via` value to send upstream otherwise.
pub(super) fn check_loop(req: &HttpRequest, state: &PublicState) -> Result<HeaderValue, ApiError> {
    let marker = &state.router.marker;
    if marker.seen_in(req.headers()) {
        metrics::counter!(byoc_actors::metrics::ROUTING_LOOPS_TOTAL).increment(1);
        return Err(ApiError::new(
            actix_web::http::StatusCode::LOOP_DETECTED,
            "routing-loop",
            "this job already passed through this gateway (its Via header carries the gateway's marker): an orchestrator's service_addr leads back to it; nothing was sent",
        ));
    }
    Ok(marker.upstream(req.headers()))
}

/// How a relayed orchestrator error reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorShape {
    /// Byte for byte (BYOC clients parse go-livepeer's text errors themselves).
    AsIs,
    /// As the AI runner shapes errors: a text error body (go-livepeer's orchestrator answers
    /// text) becomes `{"detail":{"msg": <text>}}`, which runner clients parse; a JSON body (a
    /// runner's own error) passes byte for byte, typed `application/json`.
    Runner,
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
}

/// The client's `Content-Type`, forwarded as is (a multipart boundary included).
pub(super) fn content_type(req: &HttpRequest) -> Option<String> {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Runs `job` through the router and maps the result to the client's answer: the
/// orchestrator's status, body and headers, or the JSON error. Shared by every job route.
pub(super) async fn run_job(state: &PublicState, job: Job, slot: super::JobSlot, shape: ErrorShape) -> HttpResponse {
    let span = tracing::info_span!("job", capability = %job.client.capability, request_id = %job.request_id,
        include = tracing::field::Empty, exclude = tracing::field::Empty);
    // A job that pins or excludes orchestrators says so in every line it logs.
    let filter = &job.client.orchestrators;
    if !filter.include.is_empty() {
        span.record("include", tracing::field::debug(&filter.include));
    }
    if !filter.exclude.is_empty() {
        span.record("exclude", tracing::field::debug(&filter.exclude));
    }
    let result = state.router.run(&job).instrument(span).await;
    let mut resp = match result {
        Ok(mut reply) => {
            if shape == ErrorShape::Runner && reply.status >= 400 && !is_json(reply.content_type.as_deref()) {
                // go-livepeer's orchestrator relays a worker's JSON error as text/plain: such a
                // body keeps its bytes and gets its JSON type back; text is wrapped.
                let text = reply.body.to_bytes();
                if serde_json::from_slice::<serde::de::IgnoredAny>(&text).is_err() {
                    let msg = String::from_utf8_lossy(&text).trim().to_string();
                    reply.body = actix_web::web::Bytes::from(json!({"detail": {"msg": msg}}).to_string()).into();
                }
                reply.content_type = Some("application/json".into());
            }
            let status =
                actix_web::http::StatusCode::from_u16(reply.status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
            let mut b = HttpResponse::build(status);
            if let Some(ct) = &reply.content_type {
                b.insert_header((header::CONTENT_TYPE, ct.as_str()));
            }
            if let Some(v) = &reply.balance {
                b.insert_header((names::LIVEPEER_BALANCE, v.as_str()));
            }
            if let Some(v) = &reply.metadata {
                b.insert_header((names::X_METADATA, v.as_str()));
            }
            b.insert_header((names::X_ORCHESTRATOR_URL, &*reply.orchestrator_url));
            b.insert_header((names::X_GATEWAY_ATTEMPTS, reply.attempts));
            match reply.stream {
                // Relayed chunk by chunk as the orchestrator sends them (actix writes each one
                // out as it comes); proxies in between must not buffer or cache it either.
                Some(mut stream) => {
                    b.insert_header((header::CACHE_CONTROL, "no-cache"));
                    b.insert_header((header::HeaderName::from_static("x-accel-buffering"), "no"));
                    // A streaming job is in flight until its stream ends.
                    stream.hold(slot);
                    b.streaming(stream)
                }
                // The body holds its bytes of the answer budget until it is sent.
                None => b.body(reply.body.stream()),
            }
        }
        Err(e) => {
            let err = ApiError::from(e);
            // A warning, not an error: the client got a clear answer and the gateway is fine;
            // at error level every failing job of a bad orchestrator flooded the log. Limited
            // per code: clients can cause these at any rate (an overload refuses thousands of
            // jobs the same way, jobs can name random capabilities), and
            // `byoc_gateway_requests_total` counts every one.
            if err.status.is_server_error() && JOB_FAILED.allow(err.code) {
                tracing::warn!(capability = %job.client.capability, request_id = %job.request_id, code = err.code,
                    attempts = err.attempts.len(), "job failed: {}", err.message);
            }
            actix_web::ResponseError::error_response(&err)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&job.request_id) {
        resp.headers_mut().insert(names::X_REQUEST_ID, v);
    }
    resp
}

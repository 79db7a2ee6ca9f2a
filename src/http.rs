//! The HTTP surface: the public API (jobs, AI-runner paths, health) and the admin API (registry, pairs,
//! supervisor, metrics). Handlers are thin: parse, one domain call, map the result through
//! [`error::ApiError`].

pub mod admin;
pub mod error;
pub mod public;
pub mod runner;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;

use error::ApiError;

/// The JSON 404 of both listeners.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::route_not_found(req.method().as_str(), req.path()))
}

/// Reads a request body up to `limit` bytes: a declared `Content-Length` over the limit is
/// refused before reading anything, a chunked body as soon as it crosses the limit.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    payload: actix_web::web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    // A client trickling its body must not hold a connection and a buffer forever.
    match tokio::time::timeout(timeout, read_body_inner(req, payload, limit)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            actix_web::http::StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!("the request body did not arrive within {}s", timeout.as_secs_f64()),
        )),
    }
}

async fn read_body_inner(
    req: &actix_web::HttpRequest,
    mut payload: actix_web::web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::body_too_large(limit));
    }
    // A body that arrives in one chunk (the usual case for small jobs) is kept as is; only a
    // body in several chunks is copied into one buffer.
    let mut single: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request("bad-body", format!("cannot read the request body: {e}")))?;
        total += chunk.len();
        if total > limit {
            return Err(ApiError::body_too_large(limit));
        }
        if single.is_none() && buf.is_empty() {
            single = Some(chunk);
            continue;
        }
        if let Some(first) = single.take() {
            buf.reserve(declared.unwrap_or(total).clamp(total, limit));
            buf.extend_from_slice(&first);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(single.unwrap_or_else(|| buf.freeze()))
}

/// The gateway-wide bound on jobs in flight (`limits.max_inflight_jobs`), shared by every
/// worker. Past it a job is refused at once with 503 `overloaded` before its body is read, so
/// overload costs a fast answer, not memory or a queue (load shedding, as Envoy's overload
/// manager and its `max_requests` circuit breaker do).
#[derive(Debug)]
pub struct JobLimit {
    limit: usize,
    inflight: std::sync::atomic::AtomicUsize,
}

/// One admitted job; frees its place when dropped (also when the client goes away).
#[derive(Debug)]
pub struct JobSlot(std::sync::Arc<JobLimit>);

impl JobLimit {
    /// A limit of `limit` jobs.
    pub fn new(limit: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self { limit, inflight: std::sync::atomic::AtomicUsize::new(0) })
    }

    /// A place for one job, or the 503 to answer.
    pub fn admit(self: &std::sync::Arc<Self>) -> Result<JobSlot, ApiError> {
        use std::sync::atomic::Ordering;
        let prev = self.inflight.fetch_add(1, Ordering::AcqRel);
        if prev >= self.limit {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(byoc_actors::metrics::JOBS_SHED_TOTAL).increment(1);
            return Err(ApiError::shed(self.limit));
        }
        Ok(JobSlot(self.clone()))
    }
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

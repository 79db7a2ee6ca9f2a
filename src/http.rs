//! The HTTP surface: the public API (jobs, AI-runner paths, health) and the admin API (registry, pairs,
//! supervisor, metrics). Handlers are thin: parse, one domain call, map the result through
//! [`error::ApiError`].

pub mod admin;
pub mod apps;
pub mod body;
pub mod error;
pub mod public;
pub mod runner;
pub mod stream;

use body::BodyReservation;
use error::ApiError;

/// The JSON 404 of both listeners.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::route_not_found(req.method().as_str(), req.path()))
}

/// The gateway-wide bound on jobs in flight (`limits.max_inflight_jobs`), shared by every
/// worker. A job takes its place once its body is read (a client sending its body slowly holds
/// a connection and the bytes it sent, never a place), and past the limit it is refused at once
/// with 503 `overloaded`, so overload costs a fast answer, not memory or a queue (load shedding,
/// as Envoy's overload manager and its `max_requests` circuit breaker do).
#[derive(Debug)]
pub struct JobLimit {
    limit: usize,
    inflight: std::sync::atomic::AtomicUsize,
}

/// One admitted job with its body's bytes of the body budget; frees both when dropped (also
/// when the client goes away), which is when its answer has been sent.
#[derive(Debug)]
pub struct JobSlot {
    limit: std::sync::Arc<JobLimit>,
    _body: BodyReservation,
}

impl JobLimit {
    /// A limit of `limit` jobs.
    pub fn new(limit: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self { limit, inflight: std::sync::atomic::AtomicUsize::new(0) })
    }

    /// Jobs in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A place for one job whose body holds `body`, or the 503 to answer.
    pub fn admit(self: &std::sync::Arc<Self>, body: BodyReservation) -> Result<JobSlot, ApiError> {
        use std::sync::atomic::Ordering;
        let prev = self.inflight.fetch_add(1, Ordering::AcqRel);
        if prev >= self.limit {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(byoc_actors::metrics::JOBS_SHED_TOTAL).increment(1);
            return Err(ApiError::shed(self.limit));
        }
        Ok(JobSlot { limit: self.clone(), _body: body })
    }
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        self.limit.inflight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

//! Reading a job's body: bounded per job (`limits.max_body_bytes`, 413), in time
//! (`limits.body_read_timeout`, 408) and, over all jobs, by a budget of buffered body bytes
//! (`limits.body_budget_bytes`, 503).
//!
//! The budget counts bytes as they arrive, not what a `Content-Length` announces: a client that
//! announces a large body and sends it slowly holds only what it has sent. A body is held once,
//! as the chunks the server read ([`JobBody`]), until its job ends (also while the job waits in
//! a queue), and then its bytes go back to the budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use byoc_actors::protocol::body::JobBody;
use futures_util::StreamExt as _;

use super::error::ApiError;

/// The gateway-wide budget of buffered body bytes.
pub struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
    /// `byoc_gateway_body_bytes`, kept in step with `used`.
    gauge: metrics::Gauge,
}

impl std::fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBudget").field("limit", &self.limit).field("used", &self.used()).finish()
    }
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        let gauge = metrics::gauge!(byoc_actors::metrics::BODY_BYTES);
        Arc::new(Self { limit, used: AtomicUsize::new(0), gauge })
    }

    /// Bytes held by bodies now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The bytes one body holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct BodyReservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyReservation {
    /// An empty reservation on `budget`.
    pub fn new(budget: &Arc<BodyBudget>) -> Self {
        Self { budget: budget.clone(), bytes: 0 }
    }

    /// Takes `n` more bytes, or none when the budget has not that many left.
    fn grow(&mut self, n: usize) -> bool {
        let limit = self.budget.limit;
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(n).filter(|t| *t <= limit));
        if taken.is_ok() {
            self.bytes += n;
            self.budget.gauge.increment(n as f64);
        }
        taken.is_ok()
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.gauge.decrement(self.bytes as f64);
    }
}

/// The 503 of a full budget.
fn budget_full(budget: &BodyBudget) -> ApiError {
    metrics::counter!(byoc_actors::metrics::BODY_BUDGET_REFUSED_TOTAL).increment(1);
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "body-budget-exhausted",
        format!(
            "the gateway holds {} bytes of job bodies, its budget (limits.body_budget_bytes) is {}; retry shortly",
            budget.used(),
            budget.limit
        ),
    );
    e.retry_after = Some(1);
    e
}

/// Reads a request body up to `limit` bytes within `timeout`, each chunk taken from `reserve`'s
/// budget as it arrives. A declared `Content-Length` over the limit is refused before anything
/// is read, a chunked body as soon as it crosses it.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    payload: actix_web::web::Payload,
    limit: usize,
    timeout: Duration,
    reserve: &mut BodyReservation,
) -> Result<JobBody, ApiError> {
    // A client trickling its body must not hold a connection and a buffer forever.
    match tokio::time::timeout(timeout, read_chunks(req, payload, limit, reserve)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!("the request body did not arrive within {}s", timeout.as_secs_f64()),
        )),
    }
}

async fn read_chunks(
    req: &actix_web::HttpRequest,
    mut payload: actix_web::web::Payload,
    limit: usize,
    reserve: &mut BodyReservation,
) -> Result<JobBody, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::body_too_large(limit));
    }
    let mut chunks = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request("bad-body", format!("cannot read the request body: {e}")))?;
        total += chunk.len();
        if total > limit {
            return Err(ApiError::body_too_large(limit));
        }
        if !reserve.grow(chunk.len()) {
            return Err(budget_full(&reserve.budget));
        }
        chunks.push(chunk);
    }
    Ok(JobBody::from_chunks(chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_take_and_give_back_the_budget() {
        let budget = BodyBudget::new(10);
        let mut a = BodyReservation::new(&budget);
        assert!(a.grow(6));
        let mut b = BodyReservation::new(&budget);
        assert!(!b.grow(5), "over the budget: nothing taken");
        assert!(b.grow(4));
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!(budget.used(), 4);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}

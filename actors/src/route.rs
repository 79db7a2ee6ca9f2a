//! The job router: the attempt loop of one job, a short pipeline whose steps each live in
//! their own module:
//!
//! 1. **place** ([`place`]): select the best pair with a free slot on the capability's
//!    scoreboard, waiting in the capability's queue when every pair is full, then **admit**
//!    the job there ([`admit`]: on the pair's published view while its breaker is closed, by
//!    asking its actor for a trial permit otherwise);
//! 2. pay the retry budget for an attempt after the first;
//! 3. **call** the orchestrator ([`call`]), within the time [`deadline`] gives the attempt, and
//!    abandon it early if it is stuck while another pair has room;
//! 4. **account** for it ([`account`]): classify how it ended ([`Outcome`], the one place
//!    answers are classified), free its slot, tell the pair;
//! 5. **decide** ([`decide`]): relay the answer, or fail over with the orchestrator excluded, until the
//!    attempt limit, the retry timeout, the retry budget or the job's deadline ([`state`]).
//!
//! The upstream call runs here, on the HTTP worker that owns the client's connection, with
//! that worker's `awc::Client`; actors only decide and account. The common case costs no
//! awaited actor round trip.

mod account;
mod admit;
mod call;
pub(crate) mod deadline;
mod decide;
mod error;
mod pay;
pub(crate) mod place;
pub(crate) mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::budget::RetryBudgets;
use crate::capability::Capability;
use crate::metrics as m;
use crate::policy::PolicyBook;
use crate::protocol::client::{EventStream, UpstreamReply};
use crate::protocol::header::{encode_job_request, ClientJob};
use crate::protocol::signer::SharedSigner;
use crate::protocol::via::LoopMarker;
use crate::scoreboard::Scoreboard;
use crate::supervisor::{Availability, EnsureCapability, Supervisor};

pub(crate) use admit::admit_on;
use decide::Decision;
pub use error::{AttemptKind, AttemptReport, RouteError};
pub use pay::{PaymentReport, Payments};
use state::JobState;

/// One job as received.
#[derive(Debug, Clone)]
pub struct Job {
    /// The decoded client header.
    pub client: ClientJob,
    /// The path to forward (`/process/request/...`), without the query string.
    pub path: String,
    /// The request body, held once as it arrived and replayed on failover.
    pub body: crate::protocol::body::JobBody,
    /// The client's `Content-Type`.
    pub content_type: Option<String>,
    /// The request id (sent upstream as `X-Request-Id`).
    pub request_id: String,
    /// The `Via` header to send upstream ([`LoopMarker::upstream`]).
    pub via: awc::http::header::HeaderValue,
    /// The client's address, when known: its share of a full queue is counted by it.
    pub client_addr: Option<std::net::IpAddr>,
}

/// The answer relayed to the client.
#[derive(Debug)]
pub struct Reply {
    /// The orchestrator's status (2xx or 4xx).
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its `Livepeer-Balance`.
    pub balance: Option<String>,
    /// Its `X-Metadata`.
    pub metadata: Option<String>,
    /// The `service_addr` that answered.
    pub orchestrator_url: Arc<str>,
    /// The body (empty when `stream` is set), holding its bytes of the answer budget until
    /// it is sent ([`JobBody::stream`](crate::protocol::body::JobBody::stream)).
    pub body: crate::protocol::body::JobBody,
    /// A `text/event-stream` answer, relayed as it arrives. Once its headers are in, the job is
    /// committed to this orchestrator: nothing is retried after the first byte.
    pub stream: Option<EventStream>,
    /// Attempts made, the answering one included.
    pub attempts: usize,
}

impl Reply {
    fn relay(reply: UpstreamReply, orchestrator_url: Arc<str>, attempts: usize) -> Self {
        Self {
            status: reply.status,
            content_type: reply.content_type,
            balance: reply.balance,
            metadata: reply.metadata,
            orchestrator_url,
            body: reply.body,
            stream: reply.stream,
            attempts,
        }
    }
}

/// Everything the attempt loop needs; one per HTTP worker (it holds that worker's client).
#[derive(Clone)]
pub struct Router {
    /// The dispatcher's published boards.
    pub scoreboard: Scoreboard,
    /// The supervisor (lazy capability discovery).
    pub supervisor: Addr<Supervisor>,
    /// This worker's upstream client.
    pub client: awc::Client,
    /// Capability policies.
    pub policies: PolicyBook,
    /// The gateway's identity.
    pub signer: SharedSigner,
    /// Largest orchestrator answer accepted.
    pub max_response_bytes: usize,
    /// The bytes of answers held at once, over every job (shared by every worker).
    pub answers: Arc<crate::memory::ByteBudget>,
    /// Bound on waiting for an actor's answer.
    pub mailbox_timeout: Duration,
    /// Bound on lazy capability discovery.
    pub probe_wait: Duration,
    /// Retry budgets, shared by all workers.
    pub budgets: RetryBudgets,
    /// This worker's metric handles per offered capability.
    pub metrics: m::JobMetricsCache,
    /// This gateway's loop marker (shared by every worker).
    pub marker: Arc<LoopMarker>,
    /// Payments to priced orchestrators (shared by every worker).
    pub payments: Arc<Payments>,
}

impl Router {
    /// Runs one job to an answer or an error. Metrics are recorded here; the HTTP layer
    /// only maps the result.
    pub async fn run(&self, job: &Job) -> Result<Reply, RouteError> {
        let started = Instant::now();
        let cap = &job.client.capability;
        let result = self.attempts(job, started).await;
        let outcome = match &result {
            Ok(r) if r.status < 400 => "success",
            Ok(_) => "client-error",
            Err(e) => e.code(),
        };
        let elapsed = started.elapsed();
        tracing::debug!(
            outcome,
            attempts = result.as_ref().map_or(0, |r| r.attempts),
            duration_ms = elapsed.as_millis() as u64,
            "job answered"
        );
        // Decided once the job is over: a capability first offered during this job has its
        // board by now. Any other name (unknown, or refused before discovery) is `unknown`.
        let label = self.scoreboard.label(cap);
        match &result {
            Ok(r) => {
                let h = self.metrics.get(&label);
                if r.status < 400 { &h.requests_success } else { &h.requests_client_error }.increment(1);
                h.request_duration.record(elapsed.as_secs_f64());
            }
            Err(_) => {
                metrics::counter!(m::REQUESTS_TOTAL, "capability" => label.value(), "outcome" => outcome).increment(1);
                metrics::histogram!(m::REQUEST_DURATION_SECONDS, "capability" => label.value())
                    .record(elapsed.as_secs_f64());
            }
        }
        result
    }

    async fn attempts(&self, job: &Job, started: Instant) -> Result<Reply, RouteError> {
        let mut s = JobState::new(job, self.policies.effective(&job.client.capability), started);
        // The job header is the same for every attempt.
        let sig = self.signer.sign_job(&job.client.request, &job.client.parameters);
        let header = encode_job_request(&job.client, self.signer.address(), &sig);
        loop {
            s.may_attempt()?;
            let placed = self.place(&mut s).await?;
            self.pay_for_retry(&mut s, placed.picked.label())?;
            let mut call = self.call(&s, &header, &placed).await;
            let place::Placed { picked, guard, service_addr, lease, .. } = placed;
            let outcome = self.account(&s, &picked, lease, guard, &mut call).await;
            match self.decide(&s, call, &outcome, &picked, service_addr) {
                Decision::Relay(reply) => return Ok(reply),
                Decision::FailOver(report) => s.failed(picked.key.orchestrator.clone(), report, &outcome)?,
                Decision::End(e) => return Err(e),
            }
        }
    }

    /// Retries are paid from the capability's budget; first attempts fill it. Once per attempt,
    /// after a pair was placed (a pick refused at admission does not pay, and unknown names
    /// never create a budget).
    fn pay_for_retry(&self, s: &mut JobState<'_>, label: &m::CapabilityLabel) -> Result<(), RouteError> {
        let cap = s.capability();
        let now = Instant::now();
        if s.attempts.is_empty() {
            self.budgets.deposit(cap, now);
        } else if self.budgets.withdraw(cap, now, s.policy.retry_budget_percent, s.policy.retry_budget_min_per_sec) {
            metrics::counter!(m::RETRIES_TOTAL, "capability" => label.value()).increment(1);
        } else {
            metrics::counter!(m::RETRY_BUDGET_EXHAUSTED_TOTAL, "capability" => label.value()).increment(1);
            return Err(RouteError::BudgetExhausted { attempts: std::mem::take(&mut s.attempts) });
        }
        Ok(())
    }

    async fn ensure(&self, cap: &Capability) -> Result<Availability, RouteError> {
        self.supervisor
            .send(EnsureCapability { capability: cap.clone() })
            .timeout(self.probe_wait + self.mailbox_timeout)
            .await
            .map_err(|_| mailbox_error("supervisor"))
    }
}

fn mailbox_error(actor: &'static str) -> RouteError {
    metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => actor).increment(1);
    RouteError::Overloaded(actor)
}

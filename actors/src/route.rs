//! The job router: the attempt loop of one job.
//!
//! `select (the dispatcher's scoreboard) -> admit -> call the orchestrator -> record (PairActor)`,
//! repeated on a retryable failure (connect error, timeout, 5xx including GPU out-of-memory,
//! capacity refusal, response contract mismatch) with the orchestrators already tried
//! excluded, until success, a 4xx (relayed as is), the capability's attempt limit, its retry
//! timeout, or its retry budget. The upstream call runs here, on the HTTP worker that owns the
//! client's connection, with that worker's `awc::Client`; actors only decide and account.
//!
//! The common case costs no awaited actor round trip: selection reads the scoreboard the
//! dispatcher publishes, a pair whose breaker is closed and that is not warming admits on its
//! published view ([`PairView::fast_admission`], counted by an [`InflightGuard`]), and a
//! success is recorded without waiting. Half-open trials and cold-start-limited pairs ask the
//! pair actor ([`Admit`]), and failures are recorded and awaited before the next attempt, so
//! the breaker has seen a failure before the job's next selection. Fast-path answers go to the
//! pair's [`Tally`](crate::pair::Tally), which its actor drains in batches.
//!
//! [`PairView::fast_admission`]: crate::pair::PairView::fast_admission

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use serde::Serialize;
use tracing::Instrument as _;

use crate::budget::RetryBudgets;
use crate::capability::Capability;
use crate::dispatcher::{Scoreboard, Selection, Unavailable};
use crate::metrics as m;
use crate::orchestrator::OrchestratorId;
use crate::pair::view::InflightGuard;
use crate::pair::{Admit, Deposit, DrainTally, Outcome, Permit, Record, Sample};
use crate::policy::PolicyBook;
use crate::protocol::client::{forward_job, EventStream, Forward, UpstreamError, UpstreamReply};
use crate::protocol::header::{encode_job_request, ClientJob};
use crate::protocol::signer::SharedSigner;
use crate::supervisor::{Availability, EnsureCapability, NodeUnreachable, Supervisor};

/// Admission refusals tolerated per job beyond the attempt limit (a pair's state can change
/// between its published view and the admit; each refusal excludes that pair).
const MAX_REFUSALS: usize = 16;

/// One job as received.
#[derive(Debug, Clone)]
pub struct Job {
    /// The decoded client header.
    pub client: ClientJob,
    /// The path to forward (`/process/request/...`), without the query string.
    pub path: String,
    /// The request body, buffered once and replayed on failover.
    pub body: Bytes,
    /// The client's `Content-Type`.
    pub content_type: Option<String>,
    /// The request id (sent upstream as `X-Request-Id`).
    pub request_id: String,
}

/// One attempt, as reported back to the client on failure and logged.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    /// Orchestrator id.
    pub orchestrator: String,
    /// Where the job was sent.
    pub url: String,
    /// `http-5xx`, `http-4xx`, `connect`, `timeout`, ...
    pub result: &'static str,
    /// HTTP status, when there was an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Detail (error text or body excerpt).
    pub detail: String,
    /// Duration of the attempt.
    pub elapsed_ms: u64,
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
    /// The body (empty when `stream` is set).
    pub body: Bytes,
    /// A `text/event-stream` answer, relayed as it arrives. Once its headers are in, the job is
    /// committed to this orchestrator: nothing is retried after the first byte.
    pub stream: Option<EventStream>,
    /// Attempts made, the answering one included.
    pub attempts: usize,
}

/// Why a job got no orchestrator answer to relay. Each maps to one status and error code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// No orchestrator has ever offered the capability.
    #[error("no orchestrator offers capability '{0}'")]
    UnknownCapability(Capability),
    /// Orchestrators offer it, but none can take the job now.
    #[error("no orchestrator can take a '{capability}' job now ({})", describe(.why))]
    NoneRoutable {
        /// The capability.
        capability: Capability,
        /// Why, summarised.
        why: Unavailable,
        /// Seconds until the earliest breaker admits a trial, if a breaker is the reason.
        retry_after: Option<u64>,
        /// Attempts made before running out of candidates.
        attempts: Vec<AttemptReport>,
    },
    /// Every attempt failed and the attempt limit was reached.
    #[error("all {} attempts failed", .attempts.len())]
    AttemptsExhausted {
        /// The attempts.
        attempts: Vec<AttemptReport>,
    },
    /// A retry was needed but the capability's retry budget is spent (the pool is failing
    /// too much for retries to be safe).
    #[error("the retry budget of this capability is spent; not retrying after {} failed attempt(s)", .attempts.len())]
    BudgetExhausted {
        /// The attempts.
        attempts: Vec<AttemptReport>,
    },
    /// The retry timeout passed before an answer.
    #[error("no answer within the retry timeout of {}s", .timeout.as_secs_f64())]
    RetryTimeout {
        /// The capability's retry timeout.
        timeout: Duration,
        /// The attempts.
        attempts: Vec<AttemptReport>,
    },
    /// An actor's mailbox did not take the message in time: the gateway is overloaded.
    #[error("the gateway is overloaded ({0} did not answer in time)")]
    Overloaded(&'static str),
}

fn describe(why: &Unavailable) -> String {
    let mut parts: Vec<String> = why.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    if why.tried > 0 {
        parts.push(format!("{} already tried", why.tried));
    }
    if parts.is_empty() {
        "no pairs".into()
    } else {
        parts.join(", ")
    }
}

impl RouteError {
    /// The attempts made, if any.
    pub fn attempts(&self) -> &[AttemptReport] {
        match self {
            RouteError::NoneRoutable { attempts, .. }
            | RouteError::AttemptsExhausted { attempts }
            | RouteError::BudgetExhausted { attempts }
            | RouteError::RetryTimeout { attempts, .. } => attempts,
            _ => &[],
        }
    }

    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::UnknownCapability(_) => "unknown-capability",
            RouteError::NoneRoutable { .. } => "no-routable-orchestrator",
            RouteError::AttemptsExhausted { .. } => "upstream-failed",
            RouteError::BudgetExhausted { .. } => "retry-budget-exhausted",
            RouteError::RetryTimeout { .. } => "retry-timeout",
            RouteError::Overloaded(_) => "overloaded",
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
    /// Bound on waiting for an actor's answer.
    pub mailbox_timeout: Duration,
    /// Bound on lazy capability discovery.
    pub probe_wait: Duration,
    /// Retry budgets, shared by all workers.
    pub budgets: RetryBudgets,
    /// This worker's metric handles per offered capability.
    pub metrics: m::JobMetricsCache,
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
        match &result {
            // An answer means an orchestrator offers the capability: a bounded label value.
            Ok(r) => {
                let h = self.metrics.get(cap);
                if r.status < 400 { &h.requests_success } else { &h.requests_client_error }.increment(1);
                h.request_duration.record(elapsed.as_secs_f64());
            }
            Err(e) => {
                // Only offered capabilities become label values (bounded cardinality).
                let label = match e {
                    RouteError::UnknownCapability(_) => "unknown".to_string(),
                    _ => cap.to_string(),
                };
                metrics::counter!(m::REQUESTS_TOTAL, "capability" => label.clone(), "outcome" => outcome).increment(1);
                metrics::histogram!(m::REQUEST_DURATION_SECONDS, "capability" => label).record(elapsed.as_secs_f64());
            }
        }
        result
    }

    async fn attempts(&self, job: &Job, started: Instant) -> Result<Reply, RouteError> {
        let cap = &job.client.capability;
        let policy = self.policies.effective(cap);
        let job_timeout = Duration::from_secs(job.client.timeout_seconds);
        let mut tried: Vec<OrchestratorId> = Vec::new();
        let mut attempts: Vec<AttemptReport> = Vec::new();
        let mut ensured = false;
        let mut refusals = 0usize;
        let mut budget_checked_for: Option<usize> = None;
        // Pairs that refused admission (their published view was a moment behind): their
        // reasons, so that a client refused for them is told why, not just "already tried".
        let mut refused: Vec<crate::pair::Unroutable> = Vec::new();

        // The job header is the same for every attempt.
        let sig = self.signer.sign_job(&job.client.request, &job.client.parameters);
        let header = encode_job_request(&job.client, self.signer.address(), &sig);

        loop {
            if attempts.len() >= policy.max_attempts as usize {
                return Err(exhausted(cap, attempts));
            }
            if !attempts.is_empty() && started.elapsed() >= policy.retry_timeout {
                return Err(RouteError::RetryTimeout { timeout: policy.retry_timeout, attempts });
            }
            let slot = match self.scoreboard.select(cap, &tried) {
                Selection::Picked(slot) => slot,
                Selection::Unknown if !ensured && attempts.is_empty() => {
                    ensured = true;
                    match self.ensure(cap).await? {
                        Availability::Offered => continue,
                        Availability::NotOffered => return Err(RouteError::UnknownCapability(cap.clone())),
                    }
                }
                Selection::Unknown if attempts.is_empty() => return Err(RouteError::UnknownCapability(cap.clone())),
                Selection::Unknown => return Err(RouteError::AttemptsExhausted { attempts }),
                Selection::Unavailable(why) if !ensured && why.reasons.iter().any(|(r, _)| *r == "token-pending") => {
                    // Pairs just started (gateway start-up, hot-add, restart): wait for their
                    // first probes rather than refuse the job, also after a first attempt failed
                    // (the other pairs may just not have probed yet).
                    ensured = true;
                    self.ensure(cap).await?;
                    continue;
                }
                Selection::Unavailable(mut why) => {
                    fold_refusals(&mut why, &refused);
                    if !attempts.is_empty() && why.reasons.is_empty() {
                        // Every candidate was tried and failed.
                        return Err(exhausted(cap, attempts));
                    }
                    let retry_after = why
                        .retry_at
                        .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64().ceil().max(1.0) as u64);
                    return Err(RouteError::NoneRoutable { capability: cap.clone(), why, retry_after, attempts });
                }
            };

            // The first attempt gets its full per-try timeout; later ones only what is left
            // of the retry timeout.
            let mut per_try = policy.per_try_timeout.min(job_timeout);
            if !attempts.is_empty() {
                per_try = per_try.min(policy.retry_timeout.saturating_sub(started.elapsed()));
            }
            let per_try = per_try.max(Duration::from_millis(1));

            // Retries are paid from the capability's budget; first attempts fill it. Checked
            // once per attempt number (an admission refusal below does not pay twice), and
            // only once a pair was picked, so unknown names never create a budget.
            if budget_checked_for != Some(attempts.len()) {
                budget_checked_for = Some(attempts.len());
                if attempts.is_empty() {
                    self.budgets.deposit(cap, Instant::now());
                } else if self.budgets.withdraw(
                    cap,
                    Instant::now(),
                    policy.retry_budget_percent,
                    policy.retry_budget_min_per_sec,
                ) {
                    metrics::counter!(m::RETRIES_TOTAL, "capability" => cap.to_string()).increment(1);
                } else {
                    metrics::counter!(m::RETRY_BUDGET_EXHAUSTED_TOTAL, "capability" => cap.to_string()).increment(1);
                    return Err(RouteError::BudgetExhausted { attempts });
                }
            }

            // Fast path: admitted on the published view, counted by the guard until the call ends.
            let fast = {
                let v = slot.view.read();
                v.fast_admission(Instant::now()).map(|addr| (addr, InflightGuard::new(&v)))
            };
            let (permit, mut guard) = match fast {
                Some((service_addr, guard)) => (Admitted { service_addr, lease: None, trial: false }, Some(guard)),
                None => match slot.addr.send(Admit { timeout: per_try }).timeout(self.mailbox_timeout).await {
                    Ok(Ok(p)) => (Admitted::from(p), None),
                    refusal => {
                        match refusal {
                            Ok(Err(reason)) => {
                                tracing::debug!(pair = %slot.key, reason = reason.as_str(), "admission refused; selecting again");
                                refused.push(reason);
                            }
                            _ => metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "pair").increment(1),
                        }
                        tried.push(slot.key.orchestrator.clone());
                        refusals += 1;
                        if refusals > MAX_REFUSALS {
                            return Err(exhausted(cap, attempts));
                        }
                        continue;
                    }
                },
            };

            let t0 = Instant::now();
            let mut res = forward_job(
                &self.client,
                Forward {
                    url: attempt_url(&permit.service_addr, &job.path),
                    job_header: &header,
                    content_type: job.content_type.as_deref(),
                    request_id: &job.request_id,
                    timeout: per_try,
                    max_response_bytes: self.max_response_bytes,
                    stream_timeout: job_timeout,
                },
                job.body.clone(),
            )
            .instrument(tracing::info_span!(
                "attempt",
                n = attempts.len() + 1,
                orchestrator = %slot.key.orchestrator,
                trial = permit.trial
            ))
            .await;
            let elapsed = t0.elapsed();
            // A streamed answer's call is in flight until the stream ends: its in-flight count
            // goes with the stream.
            if let Ok(UpstreamReply { stream: Some(stream), .. }) = &mut res {
                if let Some(g) = guard.take() {
                    stream.hold(g);
                }
            }
            let outcome = match &res {
                Ok(reply) => Outcome::classify(reply.status, reply.content_type.as_deref(), &reply.body, &policy),
                Err(e) => Outcome::Failed(e.clone()),
            };
            let h = self.metrics.get(cap);
            if outcome == Outcome::Success {
                h.attempts_success.increment(1);
            } else {
                metrics::counter!(m::ATTEMPTS_TOTAL, "capability" => cap.to_string(), "result" => outcome.class())
                    .increment(1);
            }
            h.upstream_duration.record(elapsed.as_secs_f64());
            if matches!(res, Err(UpstreamError::Connect(_))) {
                // A container crash is a node-level event: the orchestrator's other pairs
                // leave rotation now rather than each paying a failed attempt. Best effort:
                // dropped if the supervisor's mailbox is full.
                metrics::counter!(m::NODE_UNREACHABLE_TOTAL).increment(1);
                if self.supervisor.try_send(NodeUnreachable { orchestrator: slot.key.orchestrator.clone() }).is_err() {
                    metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "supervisor").increment(1);
                }
            }
            drop(guard);
            if permit.lease.is_none() && !outcome.retryable() {
                // A fast-path answer to relay: deposited for batched accounting, without making
                // the client wait or waking the actor thread per job.
                let sample = Sample { outcome: outcome.clone(), elapsed, at: Instant::now() };
                if slot.tally.deposit(sample) == Deposit::RequestDrain && slot.addr.try_send(DrainTally).is_err() {
                    slot.tally.unrequest();
                    metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "pair").increment(1);
                }
            } else {
                // Leases and failures: the pair has taken them into account before the job's
                // next selection (and before the client hears of a refusal).
                let record = Record { lease: permit.lease, outcome: outcome.clone(), elapsed };
                if slot.addr.send(record).timeout(self.mailbox_timeout).await.is_err() {
                    // A lease expires on its own; the pair just misses one sample.
                    metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "pair").increment(1);
                }
            }

            let (status, detail) = match res {
                Ok(reply) if !outcome.retryable() => {
                    if !attempts.is_empty() {
                        tracing::warn!(capability = %cap, attempts = attempts.len() + 1, orchestrator = %slot.key.orchestrator,
                            "job recovered by failover");
                    }
                    return Ok(Reply {
                        status: reply.status,
                        content_type: reply.content_type,
                        balance: reply.balance,
                        metadata: reply.metadata,
                        orchestrator_url: permit.service_addr,
                        body: reply.body,
                        stream: reply.stream,
                        attempts: attempts.len() + 1,
                    });
                }
                Ok(reply) => {
                    let detail = match &outcome {
                        Outcome::ServerError(_, body) | Outcome::OutOfMemory(body) => body.clone(),
                        Outcome::ContractMismatch(ct) => format!("answered {ct}"),
                        _ => crate::protocol::client::excerpt(&reply.body),
                    };
                    (Some(reply.status), detail)
                }
                Err(e) => (None, e.to_string()),
            };
            tracing::info!(capability = %cap, orchestrator = %slot.key.orchestrator, result = outcome.class(), ?status,
                "attempt failed; failing over");
            attempts.push(AttemptReport {
                orchestrator: slot.key.orchestrator.to_string(),
                url: attempt_url(&permit.service_addr, &job.path),
                result: outcome.class(),
                status,
                detail,
                elapsed_ms: elapsed.as_millis() as u64,
            });
            tried.push(slot.key.orchestrator.clone());
            if matches!(outcome, Outcome::Failed(UpstreamError::Timeout(_)))
                && started.elapsed() >= policy.retry_timeout
            {
                return Err(RouteError::RetryTimeout { timeout: policy.retry_timeout, attempts });
            }
        }
    }

    async fn ensure(&self, cap: &Capability) -> Result<Availability, RouteError> {
        self.supervisor
            .send(EnsureCapability { capability: cap.clone() })
            .timeout(self.probe_wait + self.mailbox_timeout)
            .await
            .map_err(|_| mailbox_error("supervisor"))
    }
}

/// An attempt's admission: from the fast path (no lease) or from the pair actor.
struct Admitted {
    service_addr: Arc<str>,
    lease: Option<u64>,
    trial: bool,
}

impl From<Permit> for Admitted {
    fn from(p: Permit) -> Self {
        Self { service_addr: p.service_addr, lease: Some(p.lease), trial: p.trial }
    }
}

/// The URL of one attempt: the pair's service address plus the client's path, in one
/// allocation of the right size (`format!` grows its string once per piece).
fn attempt_url(service_addr: &str, path: &str) -> String {
    let mut url = String::with_capacity(service_addr.len() + path.len());
    url.push_str(service_addr);
    url.push_str(path);
    url
}

/// The error once no further attempt will be made. When every attempt was refused for
/// capacity, the pool is full, not broken: that is a 503 with `Retry-After`, not a 502.
fn exhausted(cap: &Capability, attempts: Vec<AttemptReport>) -> RouteError {
    if !attempts.is_empty() && attempts.iter().all(|a| a.result == "capacity") {
        let why = Unavailable { retry_at: None, tried: 0, reasons: vec![("capacity-backoff", attempts.len() as u32)] };
        return RouteError::NoneRoutable { capability: cap.clone(), why, retry_after: Some(1), attempts };
    }
    RouteError::AttemptsExhausted { attempts }
}

/// Counts pairs that refused admission under their reason instead of "already tried", and
/// lets their back-off times feed `Retry-After`.
fn fold_refusals(why: &mut Unavailable, refused: &[crate::pair::Unroutable]) {
    use crate::pair::Unroutable;
    for reason in refused {
        why.tried = why.tried.saturating_sub(1);
        match why.reasons.iter_mut().find(|(r, _)| *r == reason.as_str()) {
            Some((_, n)) => *n += 1,
            None => why.reasons.push((reason.as_str(), 1)),
        }
        if let Unroutable::BreakerOpen(Some(t)) | Unroutable::CapacityBackoff(t) = *reason {
            why.retry_at = Some(why.retry_at.map_or(t, |r| r.min(t)));
        }
    }
    why.reasons.sort();
}

fn mailbox_error(actor: &'static str) -> RouteError {
    metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => actor).increment(1);
    RouteError::Overloaded(actor)
}

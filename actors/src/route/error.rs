//! Why a job got no orchestrator answer to relay, and the attempts it made on the way. Each
//! error has one stable code; the HTTP layer maps each to one status.

use std::time::Duration;

use serde::Serialize;

use crate::capability::Capability;
use crate::outcome::Outcome;
use crate::scoreboard::Unavailable;

use super::deadline::Timeout;

/// One attempt, as reported back to the client on failure and logged.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    /// Orchestrator id.
    pub(crate) orchestrator: String,
    /// Where the job was sent.
    pub(crate) url: String,
    /// `http-5xx`, `http-4xx`, `connect`, `timeout`, `stuck`, ...
    pub(crate) result: &'static str,
    /// HTTP status, when there was an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<u16>,
    /// Detail (error text or body excerpt).
    pub(crate) detail: String,
    /// Duration of the attempt.
    pub(crate) elapsed_ms: u64,
    /// For an attempt that got no answer in time, the bound that cut it: `per-try` (the
    /// capability's `per_try_timeout`), `job` (the job's `timeout_seconds + 5 s`) or `stuck`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<Timeout>,
    /// What kind of failure it was, for the rules that pick the job's final error.
    #[serde(skip)]
    pub(crate) kind: AttemptKind,
}

/// The kinds of failed attempt the job's final error depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttemptKind {
    /// A failure of the orchestrator or the transport.
    #[default]
    Failure,
    /// A capacity refusal (503/429): the pool is full, not broken.
    CapacityRefused,
    /// One of go-livepeer's 400s that are not the client's fault (credentials, payment, price):
    /// relayed as a 400 when no attempt did better.
    OrchestratorRefused,
}

impl AttemptKind {
    /// The kind of an attempt that ended with `outcome`.
    pub(crate) fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::CapacityRefused(_) => AttemptKind::CapacityRefused,
            o if o.refused_400() => AttemptKind::OrchestratorRefused,
            _ => AttemptKind::Failure,
        }
    }
}

/// Why a job got no orchestrator answer to relay.
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
    /// Every pair was at its limit and the capability's queue was at its depth.
    #[error("every '{capability}' orchestrator is at its concurrency limit and {depth} jobs are already waiting")]
    QueueFull {
        /// The capability.
        capability: Capability,
        /// Jobs waiting.
        depth: usize,
        /// When to come back, from the queue's drain rate.
        retry_after: Duration,
        /// Attempts made before (a job failing over can find the queue full).
        attempts: Vec<AttemptReport>,
    },
    /// The job waited in the queue for its whole wait bound without a slot freeing.
    #[error("no '{capability}' orchestrator had a free slot within {}s of waiting", .waited.as_secs_f64().round())]
    QueueTimeout {
        /// The capability.
        capability: Capability,
        /// How long the job waited.
        waited: Duration,
        /// When to come back, from the queue's drain rate.
        retry_after: Duration,
        /// Attempts made before.
        attempts: Vec<AttemptReport>,
    },
    /// No orchestrator is known to offer the capability, and the probes the gateway spends on
    /// unknown names are used up for now.
    #[error("no orchestrator is known to offer '{capability}' and the probes for unknown capability names are spent for now (routing.discovery_probes_per_sec); retry later")]
    DiscoveryRateLimited {
        /// The capability.
        capability: Capability,
        /// When probes are available again.
        retry_after: Duration,
    },
    /// An orchestrator offers the capability, but it is neither declared nor has a policy, and
    /// lazy discovery holds as many capabilities as it may.
    #[error("'{0}' is not a declared capability and routing.max_discovered_capabilities capabilities are registered by discovery already; an operator can declare it (config [capabilities], an orchestrator's capabilities, or PUT /admin/capabilities/NAME) or forget another")]
    CapabilityLimit(Capability),
    /// Every attempt was refused by its orchestrator with a 400 that is not the client's fault
    /// (credentials, payment, price) and no other orchestrator could take the job.
    #[error("every orchestrator tried refused the job for a reason that is not the job's: {}", describe_refusals(.attempts))]
    OrchestratorRefused {
        /// The attempts.
        attempts: Vec<AttemptReport>,
    },
    /// At least one attempt was made, every attempt failed, and no other orchestrator can take
    /// the job (the attempt limit was reached, or the others are out of rotation).
    #[error("all {} attempts failed{}", .attempts.len(), describe_others(.others.as_ref()))]
    AttemptsExhausted {
        /// The attempts.
        attempts: Vec<AttemptReport>,
        /// Why the orchestrators not tried could not take the job, when some exist.
        others: Option<Unavailable>,
    },
    /// A retry was needed but the capability's retry budget is spent (the pool is failing
    /// too much for retries to be safe).
    #[error("the retry budget of this capability is spent; not retrying after {} failed attempt(s)", .attempts.len())]
    BudgetExhausted {
        /// The attempts.
        attempts: Vec<AttemptReport>,
    },
    /// The job's own time (`timeout_seconds + 5 s` from its arrival) passed before an answer.
    #[error("no answer within the job's own time: timeout_seconds {timeout_seconds} s + 5 s since it arrived")]
    JobTimeout {
        /// The job's `timeout_seconds`.
        timeout_seconds: u64,
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
    /// The orchestrator answered, but the answers the gateway holds for other jobs left no room
    /// for this one in the answer budget within the job's time.
    #[error("the gateway holds as many answers as its answer budget ({limit} bytes, limits.answer_budget_bytes) allows and had no room for this job's answer in time; retry shortly")]
    AnswerBudgetExhausted {
        /// The budget in bytes.
        limit: usize,
        /// The failed attempts before the one whose answer had no room.
        attempts: Vec<AttemptReport>,
    },
}

fn describe_others(others: Option<&Unavailable>) -> String {
    match others {
        Some(why) if !why.reasons.is_empty() || why.excluded_by_job > 0 => {
            let why = Unavailable { tried: 0, ..why.clone() };
            format!(" and no other orchestrator can take the job now ({})", describe(&why))
        }
        _ => String::new(),
    }
}

fn describe_refusals(attempts: &[AttemptReport]) -> String {
    let parts: Vec<String> =
        attempts.iter().map(|a| format!("{} answered 400 '{}' ({})", a.orchestrator, a.detail, a.result)).collect();
    parts.join("; ")
}

fn describe(why: &Unavailable) -> String {
    let mut parts: Vec<String> = why.reasons.iter().map(|&(r, n)| format!("{n} {r}")).collect();
    if why.excluded_by_job > 0 {
        parts.push(format!(
            "{} excluded-by-job: left out by the job's parameters.orchestrators include/exclude lists",
            why.excluded_by_job
        ));
    }
    if why.full > 0 {
        parts.push(format!("{} full", why.full));
    }
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
            | RouteError::QueueFull { attempts, .. }
            | RouteError::QueueTimeout { attempts, .. }
            | RouteError::AttemptsExhausted { attempts, .. }
            | RouteError::OrchestratorRefused { attempts }
            | RouteError::BudgetExhausted { attempts }
            | RouteError::RetryTimeout { attempts, .. }
            | RouteError::JobTimeout { attempts, .. }
            | RouteError::AnswerBudgetExhausted { attempts, .. } => attempts,
            RouteError::UnknownCapability(_)
            | RouteError::CapabilityLimit(_)
            | RouteError::DiscoveryRateLimited { .. }
            | RouteError::Overloaded(_) => &[],
        }
    }

    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::UnknownCapability(_) => "unknown-capability",
            RouteError::NoneRoutable { .. } => "no-routable-orchestrator",
            RouteError::QueueFull { .. } => "queue-full",
            RouteError::DiscoveryRateLimited { .. } => "discovery-rate-limited",
            RouteError::CapabilityLimit(_) => "capability-limit",
            RouteError::QueueTimeout { .. } => "queue-timeout",
            RouteError::AttemptsExhausted { .. } => "upstream-failed",
            RouteError::OrchestratorRefused { .. } => "orchestrator-refused",
            RouteError::BudgetExhausted { .. } => "retry-budget-exhausted",
            RouteError::RetryTimeout { .. } => "retry-timeout",
            RouteError::JobTimeout { .. } => "job-timeout",
            RouteError::Overloaded(_) => "overloaded",
            RouteError::AnswerBudgetExhausted { .. } => "answer-budget-exhausted",
        }
    }

    /// Seconds a client should wait before retrying, for the errors where waiting helps.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            RouteError::NoneRoutable { retry_after, .. } => Some(retry_after.unwrap_or(1)),
            RouteError::QueueFull { retry_after, .. }
            | RouteError::QueueTimeout { retry_after, .. }
            | RouteError::DiscoveryRateLimited { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            RouteError::Overloaded(_)
            | RouteError::BudgetExhausted { .. }
            | RouteError::AnswerBudgetExhausted { .. } => Some(1),
            _ => None,
        }
    }
}

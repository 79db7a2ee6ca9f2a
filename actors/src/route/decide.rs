//! The last step of an attempt: **decide** whether its answer goes to the client (a success or
//! the client's own 4xx) or the job fails over, and what the failed attempt's report says.

use std::sync::Arc;

use super::call::{attempt_url, Answer, Call};
use super::deadline::{self, AttemptTime, Timeout};
use super::state::JobState;
use super::{AttemptKind, AttemptReport, Reply, RouteError, Router};
use crate::orchestrator::Label;
use crate::outcome::Outcome;
use crate::protocol::client::{excerpt, UpstreamError};
use crate::scoreboard::Picked;

/// What the attempt loop does next.
pub(super) enum Decision {
    /// Relay this answer: the job is done.
    Relay(Reply),
    /// Fail over; the failed attempt's report.
    FailOver(AttemptReport),
    /// End the job with this error: trying elsewhere cannot help.
    End(RouteError),
}

impl Router {
    /// Relays the answer of `call` unless its `outcome` is retryable; reports the attempt
    /// otherwise.
    pub(super) fn decide(
        &self,
        s: &JobState<'_>,
        call: Call,
        outcome: &Outcome,
        picked: &Picked,
        service_addr: Arc<str>,
    ) -> Decision {
        let job = s.job;
        match call.answer {
            Answer::Done(Ok(reply)) if !outcome.retryable() => {
                if !s.attempts.is_empty() {
                    tracing::warn!(capability = %job.client.capability, attempts = s.attempts.len() + 1,
                        orchestrator = %picked.key.orchestrator, orchestrator_label = label(picked).as_deref(),
                        "job recovered by failover");
                }
                Decision::Relay(Reply::relay(reply, service_addr, s.attempts.len() + 1))
            }
            Answer::Done(Err(UpstreamError::AnswerBudget(limit))) => {
                // Another orchestrator's answer would need the same room: the job ends here.
                metrics::counter!(crate::metrics::ANSWER_BUDGET_REFUSED_TOTAL).increment(1);
                Decision::End(RouteError::AnswerBudgetExhausted { limit, attempts: s.attempts.clone() })
            }
            answer => {
                let timeout = match (&answer, outcome) {
                    (_, Outcome::Failed(UpstreamError::Timeout(_))) => Some(call.time.bound),
                    (Answer::Stuck(_), _) => Some(Timeout::Stuck),
                    _ => None,
                };
                let (status, detail) = failure_detail(answer, outcome, call.time, s);
                tracing::info!(capability = %job.client.capability, orchestrator = %picked.key.orchestrator,
                    orchestrator_label = label(picked).as_deref(), result = outcome.class(), ?status, "attempt failed; failing over");
                Decision::FailOver(AttemptReport {
                    orchestrator: picked.key.orchestrator.to_string(),
                    url: attempt_url(&service_addr, &job.path),
                    result: outcome.class(),
                    status,
                    detail,
                    elapsed_ms: call.elapsed.as_millis() as u64,
                    timeout,
                    kind: AttemptKind::of(outcome),
                })
            }
        }
    }
}

/// The operator's label of the picked pair's orchestrator, for log lines.
fn label(picked: &Picked) -> Option<Label> {
    picked.view.read().orchestrator.label.clone()
}

/// The status and detail of a failed attempt, for its report. A time-out names the bound that
/// cut it (`time`), with its setting.
fn failure_detail(answer: Answer, outcome: &Outcome, time: AttemptTime, s: &JobState<'_>) -> (Option<u16>, String) {
    match answer {
        Answer::Done(Ok(reply)) => {
            let detail = match outcome {
                Outcome::ServerError(_, body) | Outcome::OutOfMemory(body) => body.clone(),
                Outcome::ContractMismatch(ct) => format!("answered {ct}"),
                Outcome::BadStatus(status) => {
                    format!("answered status {status}, which no job can end with; not relayed")
                }
                _ => excerpt(&reply.body.head(200)),
            };
            (Some(reply.status), detail)
        }
        Answer::Done(Err(UpstreamError::Timeout(after))) => {
            let detail = match time.bound {
                Timeout::PerTry => format!(
                    "no answer within the capability's per_try_timeout ({:?}); cut short because another orchestrator could take the job",
                    round_ms(after)
                ),
                _ => format!(
                    "no answer within the job's own time (timeout_seconds {} s + {} s since it arrived; {:?} were left for this attempt)",
                    s.job.client.timeout_seconds,
                    deadline::TIMEOUT_SLACK.as_secs(),
                    round_ms(after)
                ),
            };
            (None, detail)
        }
        Answer::Done(Err(e)) => (None, e.to_string()),
        Answer::Stuck(after) => {
            (None, format!("no answer after {} ms; abandoned for a pair with room", after.as_millis()))
        }
    }
}

/// `d` to the millisecond, for messages.
fn round_ms(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis() as u64)
}

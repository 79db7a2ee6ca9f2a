//! Accounting for an attempt: classify how it ended ([`Outcome`]), count it, free its slot, and
//! tell the pair.
//!
//! A fast-path answer to relay (success or the client's 4xx) is deposited in the pair's
//! [`Tally`](crate::pair::Tally) and accounted in batches, without making the client wait.
//! Failures, capacity refusals and trials are recorded with an awaited [`Record`], so the
//! pair has seen them (its breaker, its limit) before the job's next selection.

use crate::metrics as m;
use crate::outcome::{Outcome, Refusal};
use crate::pair::{Deposit, DrainTally, Record, Sample};
use crate::protocol::client::{UpstreamError, UpstreamReply};
use crate::supervisor::NodeUnreachable;

use crate::pair::SlotGuard;
use crate::scoreboard::Picked;

use super::call::{Answer, Call};
use super::state::JobState;
use super::Router;

impl Router {
    /// Accounts for `call` made on `picked` (with the pair actor's `lease`, for a trial),
    /// releasing its slot `guard` (a streamed answer keeps it until the stream ends). Returns
    /// the attempt's outcome.
    pub(super) async fn account(
        &self,
        s: &JobState<'_>,
        picked: &Picked,
        lease: Option<u64>,
        guard: SlotGuard,
        call: &mut Call,
    ) -> Outcome {
        let outcome = match &mut call.answer {
            Answer::Done(Ok(reply)) => {
                // Whatever it said, the pair answered: its jobs are moving.
                guard.answered();
                // Classification reads at most the first 4 KiB of a body.
                let head = reply.body.head(4096);
                let outcome = Outcome::classify(reply.status, reply.content_type.as_deref(), &head, &s.policy);
                if let (UpstreamReply { stream: Some(stream), .. }, false) = (reply, outcome.retryable()) {
                    // The call is in flight until its stream ends: the slot goes with it.
                    stream.hold(guard);
                } else {
                    drop(guard);
                }
                outcome
            }
            // A master orchestrator that cannot process a payment crashes its handler, which
            // resets the connection: after a payment, a broken connection is its refusal.
            Answer::Done(Err(e)) if call.paid && e.after_sending() => {
                drop(guard);
                Outcome::Refused(Refusal::PaymentRejected, format!("the connection broke right after a payment: {e}"))
            }
            Answer::Done(Err(e)) => {
                drop(guard);
                Outcome::Failed(e.clone())
            }
            Answer::Stuck(after) => {
                drop(guard);
                metrics::counter!(m::STUCK_ATTEMPTS_TOTAL, "capability" => picked.label().value()).increment(1);
                Outcome::Stuck(*after)
            }
        };

        let h = self.metrics.get(picked.label());
        if outcome == Outcome::Success {
            h.attempts_success.increment(1);
        } else {
            metrics::counter!(m::ATTEMPTS_TOTAL, "capability" => picked.label().value(), "result" => outcome.class())
                .increment(1);
        }
        h.upstream_duration.record(call.elapsed.as_secs_f64());

        if matches!(outcome, Outcome::Failed(UpstreamError::Connect(_))) {
            // A container crash is a node-level event: the orchestrator's other pairs leave
            // rotation now rather than each paying a failed attempt. Best effort: dropped if
            // the supervisor's mailbox is full.
            metrics::counter!(m::NODE_UNREACHABLE_TOTAL).increment(1);
            if self.supervisor.try_send(NodeUnreachable { orchestrator: picked.key.orchestrator.clone() }).is_err() {
                metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "supervisor").increment(1);
            }
        }

        if let Outcome::Refused(Refusal::PaymentRequired | Refusal::PaymentRejected, _) = &outcome {
            // The orchestrator's word on the balance is proven: the ledger takes its next figure.
            self.payments.refused(&picked.key);
        }
        if matches!(outcome, Outcome::Failed(UpstreamError::AnswerBudget(_))) {
            // The gateway's own memory limit, not the pair's doing: nothing to learn about the
            // pair (a trial's lease expires on its own).
            return outcome;
        }
        if lease.is_none() && !outcome.retryable() {
            let sample = Sample { outcome: outcome.clone(), elapsed: call.elapsed, at: std::time::Instant::now() };
            if picked.tally.deposit(sample) == Deposit::RequestDrain && picked.addr.try_send(DrainTally).is_err() {
                picked.tally.unrequest();
                metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "pair").increment(1);
            }
        } else {
            let record = Record { lease, outcome: outcome.clone(), elapsed: call.elapsed, paid: call.paid };
            if picked.addr.send(record).timeout(self.mailbox_timeout).await.is_err() {
                // A lease expires on its own; the pair just misses one sample.
                metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "pair").increment(1);
            }
        }
        outcome
    }
}

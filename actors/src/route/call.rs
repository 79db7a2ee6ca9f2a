//! Calling the orchestrator: one attempt, bounded by the time [`deadline`] gives it, and
//! abandoned early when it is stuck while another pair has a free slot.

use std::time::{Duration, Instant};

use tracing::Instrument as _;

use crate::orchestrator::Label;
use crate::protocol::client::{forward_job, Forward, UpstreamError, UpstreamReply};

use super::deadline::{self, AttemptContext};
use super::place::Placed;
use super::state::JobState;
use super::Router;

/// How an attempt's call ended.
pub(super) enum Answer {
    /// The orchestrator answered, or the call failed on its own.
    Done(Result<UpstreamReply, UpstreamError>),
    /// The gateway abandoned it as stuck after this long.
    Stuck(Duration),
}

/// One attempt's call.
pub(super) struct Call {
    /// How it ended.
    pub(crate) answer: Answer,
    /// How long it took.
    pub(crate) elapsed: Duration,
    /// It carried a `Livepeer-Payment`.
    pub(crate) paid: bool,
    /// The time it was given, and which bound that was (what a time-out names).
    pub(crate) time: deadline::AttemptTime,
}

impl Router {
    /// Sends the job in `s` to the placed pair with the signed `header`.
    pub(super) async fn call(&self, s: &JobState<'_>, header: &str, placed: &Placed) -> Call {
        let job = s.job;
        let (cold, p99, label) = {
            let v = placed.picked.view.read();
            (
                v.warming || v.latency_percentiles.is_none(),
                v.latency_percentiles.map(|p| p.1),
                v.orchestrator.label.clone(),
            )
        };
        // Another attempt may follow, on another pair: only then may this one be cut short.
        // (A cold pair is never cut: the scan is skipped.)
        let alternative = !cold && s.may_retry() && placed.picked.has_alternative(&s.tried, false);
        let time = deadline::attempt_timeout(AttemptContext {
            remaining: s.remaining(),
            per_try: s.policy.per_try_timeout,
            cold,
            alternative,
        });
        // Pay, when the pair is priced and the gateway holds a key. A payment that cannot be
        // made is logged; the orchestrator's refusal then fails the job over.
        let payment = {
            let v = placed.picked.view.read();
            self.payments.prepare(&v, placed.picked.label(), job.client.timeout_seconds, &*self.signer).unwrap_or_else(
                |e| {
                    tracing::warn!(pair = %placed.picked.key, orchestrator_label = label.as_deref(), error = %e,
                        "no payment could be made for this attempt");
                    None
                },
            )
        };
        let forward = forward_job(
            &self.client,
            Forward {
                url: attempt_url(&placed.service_addr, &job.path),
                job_header: header,
                content_type: job.content_type.as_deref(),
                request_id: &job.request_id,
                via: &job.via,
                timeout: time.limit,
                max_response_bytes: self.max_response_bytes,
                answers: &self.answers,
                stream_timeout: deadline::stream_limit(job.client.timeout_seconds),
                payment: payment.as_deref(),
            },
            &job.body,
        )
        .instrument(tracing::info_span!(
            "attempt",
            n = s.attempts.len() + 1,
            orchestrator = %placed.picked.key.orchestrator,
            orchestrator_label = label.as_ref().map(Label::as_str),
            trial = placed.trial
        ));
        let t0 = Instant::now();
        let stuck_after = if alternative { deadline::stuck_after(p99) } else { None };
        let answer = match stuck_after {
            None => Answer::Done(forward.await),
            Some(after) => {
                tokio::pin!(forward);
                let mut check = t0 + after;
                loop {
                    tokio::select! {
                        res = &mut forward => break Answer::Done(res),
                        () = tokio::time::sleep_until(check.into()) => {
                            if placed.picked.has_alternative(&s.tried, true) {
                                break Answer::Stuck(t0.elapsed());
                            }
                            // No pair has room now: keep waiting, and look again later.
                            check += after;
                        }
                    }
                }
            }
        };
        let elapsed = t0.elapsed();
        if matches!(&answer, Answer::Done(Ok(r)) if r.status < 400) {
            self.payments.debit(&placed.picked.view.read(), elapsed.as_secs_f64());
        }
        Call { answer, elapsed, paid: payment.is_some(), time }
    }
}

/// The URL of one attempt: the pair's service address plus the client's path, in one
/// allocation of the right size (`format!` grows its string once per piece).
pub(super) fn attempt_url(service_addr: &str, path: &str) -> String {
    let mut url = String::with_capacity(service_addr.len() + path.len());
    url.push_str(service_addr);
    url.push_str(path);
    url
}

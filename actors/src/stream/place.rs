//! Choosing an orchestrator for a stream: the batch path's own selection and accounting.
//!
//! A stream start is placed as a job is (`route::JobState` and `Router::place`: the
//! capability's scoreboard, breaker, capacity, price ceiling, latency, the job's include and
//! exclude lists, the queue when every pair is full), then `/ai/stream/start` is called there.
//! Any answer but a 2xx carrying the channel URLs is a refusal that moves on to the next
//! candidate (go-livepeer stops at the first answer of any kind), each one accounted to its pair
//! and reported in the error when no candidate accepts. The slot the selection took is the
//! stream's for as long as it runs there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics as m;
use crate::orchestrator::OrchestratorId;
use crate::outcome::{Outcome, Refusal};
use crate::pair::{Record, SlotGuard};
use crate::policy::Effective;
use crate::protocol::client::excerpt;
use crate::route::state::JobState;
use crate::route::{AttemptKind, AttemptReport, Job, RouteError, Router};
use crate::scoreboard::Picked;

use super::request::{join_url, OrchestratorUrls};
use super::upstream::{self, Answer, Call};

/// A stream placed: the pair, its slot, and the channels the orchestrator opened.
pub(crate) struct Accepted {
    /// The pair.
    pub(crate) picked: Picked,
    /// Its slot, held while the stream runs there (freed when the session ends).
    pub(crate) _slot: SlotGuard,
    /// Where the orchestrator takes calls.
    pub(crate) service_addr: Arc<str>,
    /// Its channels.
    pub(crate) urls: OrchestratorUrls,
    /// Whether the start carried a payment.
    pub(crate) paid: bool,
}

/// What is sent to every candidate: the start job (its header already signed).
pub(crate) struct Spec {
    /// The job: the client's header with `id` = the stream id, `/ai/stream/start`, the start body.
    pub(crate) job: Job,
    /// The signed `Livepeer` header.
    pub(crate) header: String,
    /// The start body (`{"params": ...}`).
    pub(crate) body: bytes::Bytes,
    /// Attempts allowed per placement (`streams.start_attempts`, at least the policy's).
    pub(crate) max_attempts: u32,
}

/// go-livepeer's answer of a full orchestrator to a stream start (`stream_orchestrator.go`).
const NO_CAPACITY: &[u8] = b"No capacity available for capability";

/// How a candidate answered a start: the outcome its pair is accounted with, and the channels
/// when it accepted.
pub(crate) fn classify_start(
    answer: &Answer,
    service_addr: &str,
    policy: &Effective,
) -> (Outcome, Result<OrchestratorUrls, String>) {
    let body = &answer.body;
    match answer.status {
        200..=299 => match channels(answer, service_addr) {
            Ok(urls) => (Outcome::Success, Ok(urls)),
            Err(why) => (Outcome::ContractMismatch(why.clone()), Err(why)),
        },
        402 => (Outcome::Refused(Refusal::PaymentRequired, excerpt(body)), Err(format!("402 {}", excerpt(body)))),
        400 if body.trim_ascii_start().starts_with(NO_CAPACITY) => {
            (Outcome::CapacityRefused(400), Err(format!("400 {}", excerpt(body))))
        }
        status => {
            let outcome = Outcome::classify(status, None, body, policy);
            (outcome, Err(format!("{status} {}", excerpt(body))))
        }
    }
}

/// The channel URLs of an accepting answer: control and events are required.
fn channels(answer: &Answer, service_addr: &str) -> Result<OrchestratorUrls, String> {
    let join = |name: &str| -> Result<Option<String>, String> {
        answer.header(name).map(|u| join_url(u, service_addr).map_err(|e| format!("{name}: {e}"))).transpose()
    };
    let control = join("X-Control-Url")?.ok_or("the answer has no X-Control-Url")?;
    let events = join("X-Events-Url")?.ok_or("the answer has no X-Events-Url")?;
    Ok(OrchestratorUrls {
        control,
        events,
        publish: join("X-Publish-Url")?,
        subscribe: join("X-Subscribe-Url")?,
        data: join("X-Data-Url")?,
    })
}

/// Places the stream on the best candidate that accepts it, leaving out `exclude` (the
/// orchestrator it just left). `on_refusal` hears of each candidate that refused.
pub(crate) async fn place(
    router: &Router,
    spec: &Spec,
    exclude: &[OrchestratorId],
    mut on_refusal: impl FnMut(&AttemptReport),
) -> Result<Accepted, RouteError> {
    let cap = &spec.job.client.capability;
    let mut policy = (*router.policies.effective(cap)).clone();
    policy.max_attempts = policy.max_attempts.max(spec.max_attempts);
    // The whole start has the job's time; the capability's retry timeout is for batch jobs.
    policy.retry_timeout = policy.retry_timeout.max(Duration::from_secs(spec.job.client.timeout_seconds));
    let mut s = JobState::new(&spec.job, Arc::new(policy), Instant::now());
    s.tried.extend_from_slice(exclude);
    loop {
        s.may_attempt()?;
        let placed = router.place(&mut s).await?;
        let timeout = s.policy.per_try_timeout.min(s.remaining()).max(Duration::from_millis(1));
        let payment = {
            let v = placed.picked.view.read();
            let label = router.scoreboard.label(cap);
            router.payments.prepare(&v, &label, spec.job.client.timeout_seconds, &*router.signer).unwrap_or_else(|e| {
                tracing::warn!(pair = %placed.picked.key, error = %e, "no payment could be made for this stream start");
                None
            })
        };
        let t0 = Instant::now();
        let answer = upstream::post(
            &router.client,
            Call {
                service_addr: &placed.service_addr,
                path: upstream::START,
                header: &spec.header,
                body: spec.body.clone(),
                content_type: Some("application/json"),
                payment: payment.as_deref(),
                timeout,
            },
        )
        .await;
        let elapsed = t0.elapsed();
        let (outcome, accepted) = match &answer {
            Ok(a) => classify_start(a, &placed.service_addr, &s.policy),
            Err(e) if payment.is_some() && e.after_sending() => (
                Outcome::Refused(Refusal::PaymentRejected, format!("the connection broke right after a payment: {e}")),
                Err(e.to_string()),
            ),
            Err(e) => (Outcome::Failed(e.clone()), Err(e.to_string())),
        };
        account(router, &placed.picked, placed.lease, &outcome, elapsed, payment.is_some()).await;
        match accepted {
            Ok(urls) => {
                return Ok(Accepted {
                    picked: placed.picked,
                    _slot: placed.guard,
                    service_addr: placed.service_addr,
                    urls,
                    paid: payment.is_some(),
                })
            }
            Err(detail) => {
                let report = AttemptReport {
                    orchestrator: placed.picked.key.orchestrator.to_string(),
                    url: format!("{}{}", placed.service_addr, upstream::START),
                    result: outcome.class(),
                    status: answer.as_ref().ok().map(|a| a.status),
                    detail,
                    elapsed_ms: elapsed.as_millis() as u64,
                    kind: AttemptKind::of(&outcome),
                    timeout: matches!(outcome, Outcome::Failed(crate::protocol::client::UpstreamError::Timeout(_)))
                        .then_some(crate::route::deadline::Timeout::PerTry),
                };
                tracing::info!(capability = %cap, orchestrator = %placed.picked.key.orchestrator,
                    result = report.result, detail = %report.detail, "stream start refused; trying the next candidate");
                on_refusal(&report);
                let orchestrator = placed.picked.key.orchestrator.clone();
                drop(placed.guard);
                s.failed(orchestrator, report, &outcome)?;
            }
        }
    }
}

/// Tells the pair how a call about a stream ended (the pair accounting every job uses); `paid`
/// when the call carried a payment.
pub(crate) async fn account(
    router: &Router,
    picked: &Picked,
    lease: Option<u64>,
    outcome: &Outcome,
    elapsed: Duration,
    paid: bool,
) {
    metrics::counter!(m::ATTEMPTS_TOTAL, "capability" => picked.label().value(), "result" => outcome.class())
        .increment(1);
    let record = Record { lease, outcome: outcome.clone(), elapsed, paid };
    if picked.addr.send(record).timeout(router.mailbox_timeout).await.is_err() {
        metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "pair").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CapabilityPolicy;
    use awc::http::header::{HeaderMap, HeaderName, HeaderValue};

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &'static str) -> Answer {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(HeaderName::from_static(k), HeaderValue::from_str(v).expect("value"));
        }
        Answer { status, headers: h, body: bytes::Bytes::from_static(body.as_bytes()) }
    }

    #[test]
    fn an_answer_with_channels_accepts_and_anything_else_refuses() {
        let p = CapabilityPolicy::default().effective();
        let ok = answer(
            200,
            &[
                ("x-control-url", "/ai/trickle/s-control"),
                ("x-events-url", "/ai/trickle/s-events"),
                ("x-data-url", "https://other:1/ai/trickle/s-data"),
            ],
            "",
        );
        let (o, urls) = classify_start(&ok, "https://o:8935", &p);
        assert_eq!(o, Outcome::Success);
        let urls = urls.expect("accepted");
        assert_eq!(urls.control, "https://o:8935/ai/trickle/s-control");
        assert_eq!(urls.data.as_deref(), Some("https://other:1/ai/trickle/s-data"));
        assert_eq!(urls.publish, None);

        // go-livepeer takes a 200 without a control URL and ends the stream; here it is a refusal.
        let (o, r) = classify_start(&answer(200, &[], ""), "https://o", &p);
        assert!(matches!(o, Outcome::ContractMismatch(_)) && r.is_err(), "{o:?}");
        let (o, _) = classify_start(&answer(400, &[], "No capacity available for capability\n"), "https://o", &p);
        assert_eq!(o, Outcome::CapacityRefused(400));
        let (o, _) = classify_start(&answer(402, &[], "Insufficient balance for request\n"), "https://o", &p);
        assert!(matches!(o, Outcome::Refused(Refusal::PaymentRequired, _)));
        let (o, _) = classify_start(&answer(500, &[], "boom"), "https://o", &p);
        assert!(matches!(o, Outcome::ServerError(500, _)));
        let (o, r) = classify_start(&answer(400, &[], "Invalid JSON body"), "https://o", &p);
        assert_eq!(o, Outcome::ClientError(400), "not held against the pair, but the next one is tried");
        assert!(r.is_err());
    }
}

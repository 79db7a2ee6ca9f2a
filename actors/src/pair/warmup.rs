//! Cold starts and the optional warm-up job: a new or recovered pair takes limited (or no) client
//! traffic until it has answered once.

use super::*;

/// How far a new or recovered pair is from taking full client traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Warmth {
    /// It has answered since it started or came back: no limit from warming.
    Warm,
    /// No answer yet: at most `cold_start_concurrency` jobs at once until its first answer.
    Cold,
    /// Cold, and the capability's warm-up job must succeed before any client job; `in_flight`
    /// while one runs.
    AwaitingWarmup {
        /// A warm-up job is running.
        in_flight: bool,
    },
}

impl Warmth {
    /// The state of a pair that is `cold` (or not), for a capability with a warm-up job (or not).
    pub(super) fn new(cold: bool, warmup: bool) -> Self {
        match (cold, warmup) {
            (false, _) => Warmth::Warm,
            (true, false) => Warmth::Cold,
            (true, true) => Warmth::AwaitingWarmup { in_flight: false },
        }
    }

    /// It has not answered yet (its concurrency is the cold-start limit).
    pub(super) fn is_cold(self) -> bool {
        self != Warmth::Warm
    }

    /// It waits for the warm-up job (no client traffic).
    pub(super) fn awaiting_warmup(self) -> bool {
        matches!(self, Warmth::AwaitingWarmup { .. })
    }

    /// A warm-up job ended (or its actor restarted): another may be sent.
    pub(super) fn warmup_ended(&mut self) {
        if let Warmth::AwaitingWarmup { in_flight } = self {
            *in_flight = false;
        }
    }

    /// The capability no longer has a warm-up job: a waiting pair is merely cold.
    pub(super) fn warmup_dropped(&mut self) {
        if self.awaiting_warmup() {
            *self = Warmth::Cold;
        }
    }
}

impl PairActor {
    /// Sends the capability's warm-up job, if it has one and the pair is ready for it.
    pub(super) fn maybe_warm_up(&mut self, ctx: &mut Context<Self>) {
        let Some(warmup) = self.policy.warmup.clone() else { return };
        if self.warmth != (Warmth::AwaitingWarmup { in_flight: false }) || !self.token_ok || self.retired {
            return;
        }
        let Some(service_addr) = self.service_addr.clone() else { return };
        if self.token.as_ref().is_none_or(|t| t.available_capacity <= 0) {
            return;
        }
        self.warmth = Warmth::AwaitingWarmup { in_flight: true };
        let client = self.client.clone();
        let signer = self.settings.signer.clone();
        let capability = self.key.capability.to_string();
        let via = self.settings.marker.entry().clone();
        let max_response_bytes = 16 << 20;
        let answers = self.settings.answers.clone();
        let fut = async move {
            let request = "{}".to_string();
            let parameters = "{}".to_string();
            let sig = signer.sign(format!("{request}{parameters}").as_bytes());
            let header = JobRequest {
                id: "byoc-gateway-warmup".into(),
                request,
                parameters,
                capability,
                capability_url: String::new(),
                sender: signer.address().to_string(),
                sig,
                timeout_seconds: warmup.timeout_seconds,
            }
            .encode();
            let url = format!("{service_addr}/process/request/{}", warmup.path.trim_start_matches('/'));
            let started = Instant::now();
            let res = forward_job(
                &client,
                Forward {
                    url,
                    job_header: &header,
                    content_type: Some(&warmup.content_type),
                    request_id: "byoc-gateway-warmup",
                    via: &via,
                    timeout: Duration::from_secs(warmup.timeout_seconds),
                    max_response_bytes,
                    answers: &answers,
                    stream_timeout: Duration::from_secs(warmup.timeout_seconds),
                    payment: None,
                },
                &bytes::Bytes::from(warmup.body.into_bytes()).into(),
            )
            .await;
            (res, started.elapsed())
        };
        ctx.spawn(fut.into_actor(self).map(|(res, elapsed), act, _ctx| {
            act.warmth.warmup_ended();
            match res {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    // Its first answer: warm (also when the warm-up job was dropped meanwhile).
                    act.first_answer(elapsed, Instant::now());
                    tracing::info!(pair = %act.key, orchestrator_label = act.label().as_deref(), elapsed_ms = elapsed.as_millis() as u64, "warm-up job answered; pair takes traffic");
                }
                Ok(reply) => {
                    act.note_error("warmup", format!("warm-up job answered {}: {}", reply.status, excerpt(&reply.body.head(200))));
                }
                Err(e) => act.note_error("warmup", format!("warm-up job failed: {e}")),
            }
            act.publish();
        }));
    }

    /// The pair's first answer since it started or came back: it is warm now. A slow one
    /// deprioritises it for a while; returns whether it was one.
    pub(super) fn first_answer(&mut self, elapsed: Duration, now: Instant) -> bool {
        if !self.warmth.is_cold() {
            return false;
        }
        self.warmth = Warmth::Warm;
        self.cold_start_ms = Some(elapsed.as_millis() as u64);
        let slow = elapsed > self.policy.cold_start_threshold;
        metrics::counter!(m::COLD_STARTS_TOTAL, "slow" => if slow { "true" } else { "false" }).increment(1);
        if slow {
            self.deprioritized_until = now.checked_add(self.policy.cold_start_penalty);
            tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), cold_start_ms = elapsed.as_millis() as u64,
                penalty_s = self.policy.cold_start_penalty.as_secs(), "slow cold start; pair deprioritised");
        }
        slow
    }
}

#[cfg(test)]
mod tests {
    use super::Warmth;

    #[test]
    fn warmth_moves_from_cold_to_warm_through_the_warm_up_job() {
        assert_eq!(Warmth::new(false, true), Warmth::Warm);
        assert_eq!(Warmth::new(true, false), Warmth::Cold);
        let mut w = Warmth::new(true, true);
        assert!(w.is_cold() && w.awaiting_warmup());
        w = Warmth::AwaitingWarmup { in_flight: true };
        w.warmup_ended();
        assert_eq!(w, Warmth::AwaitingWarmup { in_flight: false });
        w.warmup_dropped();
        assert_eq!(w, Warmth::Cold, "removing the warm-up job releases the pair, still cold");
        let mut warm = Warmth::Warm;
        warm.warmup_dropped();
        warm.warmup_ended();
        assert_eq!(warm, Warmth::Warm);
    }
}

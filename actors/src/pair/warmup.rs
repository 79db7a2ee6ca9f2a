//! Cold starts and the optional warm-up job: a new or recovered pair takes limited (or no) client
//! traffic until it has answered once.

use super::*;

impl PairActor {
    /// Sends the capability's warm-up job, if it has one and the pair is ready for it.
    pub(super) fn maybe_warm_up(&mut self, ctx: &mut Context<Self>) {
        let Some(warmup) = self.policy.warmup.clone() else { return };
        if !self.warmup_pending || self.warmup_in_flight || !self.token_ok || self.retired {
            return;
        }
        let Some(service_addr) = self.service_addr.clone() else { return };
        if self.token.as_ref().is_none_or(|t| t.available_capacity <= 0) {
            return;
        }
        self.warmup_in_flight = true;
        let client = self.client.clone();
        let signer = self.settings.signer.clone();
        let capability = self.key.capability.to_string();
        let via = self.settings.marker.entry().clone();
        let max_response_bytes = 16 << 20;
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
                    stream_timeout: Duration::from_secs(warmup.timeout_seconds),
                    payment: None,
                },
                &bytes::Bytes::from(warmup.body.into_bytes()).into(),
            )
            .await;
            (res, started.elapsed())
        };
        ctx.spawn(fut.into_actor(self).map(|(res, elapsed), act, _ctx| {
            act.warmup_in_flight = false;
            match res {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    act.warmup_pending = false;
                    act.first_answer(elapsed, Instant::now());
                    tracing::info!(pair = %act.key, elapsed_ms = elapsed.as_millis() as u64, "warm-up job answered; pair takes traffic");
                }
                Ok(reply) => {
                    act.note_error("warmup", format!("warm-up job answered {}: {}", reply.status, excerpt(&reply.body)));
                }
                Err(e) => act.note_error("warmup", format!("warm-up job failed: {e}")),
            }
            act.publish();
        }));
    }

    /// The pair's first answer since it started or came back: it is warm now. A slow one
    /// deprioritises it for a while; returns whether it was one.
    pub(super) fn first_answer(&mut self, elapsed: Duration, now: Instant) -> bool {
        if !self.warming {
            return false;
        }
        self.warming = false;
        self.cold_start_ms = Some(elapsed.as_millis() as u64);
        let slow = elapsed > self.policy.cold_start_threshold;
        metrics::counter!(m::COLD_STARTS_TOTAL, "slow" => if slow { "true" } else { "false" }).increment(1);
        if slow {
            self.deprioritized_until = now.checked_add(self.policy.cold_start_penalty);
            tracing::warn!(pair = %self.key, cold_start_ms = elapsed.as_millis() as u64,
                penalty_s = self.policy.cold_start_penalty.as_secs(), "slow cold start; pair deprioritised");
        }
        slow
    }
}

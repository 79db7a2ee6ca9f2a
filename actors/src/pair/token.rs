//! Token probes: when the pair asks its orchestrator for a token (`GET /process/token`), and what
//! it makes of the answer (service address, capacity, price, balance, a refusal worth retrying).

use super::*;
use crate::payment::PayError;

/// What a priced token offers to pay against: its ticket params and the gateway's balance
/// there. Only tokens with a price keep one (offchain tokens carry neither).
#[derive(Debug, Clone)]
pub(crate) struct PaymentTerms {
    /// The token's ticket params, verbatim.
    pub(crate) params: crate::payment::TicketParams,
    /// The gateway's balance at the orchestrator as the token reported it (wei).
    pub(crate) balance: i64,
}

impl PairActor {
    /// Probes the token. The first probe after (re)start pauses the mailbox so that callers
    /// asking for a [`GetView`] see the probed state.
    pub(super) fn probe(&mut self, ctx: &mut Context<Self>, first: bool) {
        if self.probing {
            return;
        }
        self.probing = true;
        self.probed_at_ms = slots::millis_now();
        // The orchestrator counts the gateway's jobs already there in its load; this is the
        // gateway's count as the probe leaves (jobs started later are not in that load).
        let inflight = self.slots.inflight();
        let client = self.client.clone();
        let url = self.orchestrator_url();
        let cap = self.key.capability.clone();
        let signer = self.settings.signer.clone();
        let timeout = self.settings.token_timeout;
        let permits = self.settings.probe_permits.clone();
        let fut = async move {
            // Waiting for a permit is not part of the probe's own timeout. The semaphore is
            // never closed; if it were, probing unbounded is the safe fallback.
            let _permit = permits.acquire().await.ok();
            // The request's state (awc's request and response, ~1 KB) is allocated only once the
            // permit is held: at start every pair waits here at once, and a wait as large as the
            // request made a peak of that many bytes per pair that the allocator then kept.
            Box::pin(fetch_token(&client, &url, &cap, signer.as_ref(), timeout)).await
        }
        .into_actor(self)
        .map(move |res, act, ctx| {
            act.probing = false;
            if std::mem::take(&mut act.reprobe) {
                // Started before the connect failure: its answer proves nothing.
                act.probe(ctx, false);
                return;
            }
            act.apply_token(res, inflight);
            act.schedule_probe(ctx);
            act.maybe_warm_up(ctx);
        });
        if first {
            ctx.wait(fut);
        } else {
            ctx.spawn(fut);
        }
    }

    pub(super) fn schedule_probe(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        if let Some(h) = self.refresh.take() {
            ctx.cancel_future(h);
        }
        let last = if self.probe_failures > 0 || !self.token_ok {
            probe::LastProbe::Failed(self.probe_failures.max(1))
        } else if self.token.as_ref().is_some_and(|t| t.available_capacity > 0) || !self.offered {
            probe::LastProbe::Healthy
        } else {
            probe::LastProbe::Full
        };
        let cadence = probe::Cadence {
            refresh: self.settings.token_refresh,
            retry: self.settings.token_retry,
            retry_max: self.settings.token_retry_max,
        };
        let failing = self.settings.failing_probes.load(std::sync::atomic::Ordering::Relaxed);
        let delay = probe::jittered(probe::next_delay(cadence, last, failing), rand::random::<f64>());
        self.refresh = Some(ctx.run_later(delay, |act, ctx| {
            act.refresh = None;
            act.sweep_leases();
            // Safety net for a drain request that could not be delivered.
            act.drain_tally(ctx);
            act.probe(ctx, false);
        }));
    }

    pub(super) fn apply_token(&mut self, res: Result<JobToken, TokenError>, inflight: u32) {
        self.probed = true;
        self.last_probe = Some(Instant::now());
        self.node_unreachable = false;
        // Counted here, reset once a usable token arrives.
        self.probe_failures = self.probe_failures.saturating_add(1);
        match res {
            Ok(token) => {
                let service = if token.service_addr.trim().is_empty() {
                    Ok(self.orchestrator_url().to_string())
                } else {
                    normalize_url(&token.service_addr)
                };
                match service {
                    Ok(addr) => self.token_usable(&token, addr, inflight),
                    Err(e) => {
                        self.token_ok = false;
                        self.note_error("token", format!("token names an unusable service_addr: {e}"));
                        metrics::counter!(m::TOKEN_PROBES_TOTAL, "result" => "bad-token").increment(1);
                    }
                }
            }
            Err(e) => self.probe_failed(e),
        }
        self.count_failing();
        self.publish();
    }

    /// Keeps this pair counted in [`PairSettings::failing_probes`] exactly while its probes
    /// fail (and it is not retired).
    pub(super) fn count_failing(&mut self) {
        let failing = self.probe_failures > 0 && !self.retired;
        if failing != self.counted_failing {
            self.counted_failing = failing;
            let counter = &self.settings.failing_probes;
            if failing {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                counter.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// A usable token whose jobs go to `addr`: the payment terms, then the offer.
    fn token_usable(&mut self, token: &JobToken, addr: String, inflight: u32) {
        self.payment_terms(token);
        let offer = Offer { available_capacity: token.available_capacity, price: token.price };
        self.offer_usable(&addr, token.fingerprint(), offer, inflight);
        metrics::counter!(m::TOKEN_PROBES_TOTAL, "result" => "ok").increment(1);
    }

    /// A usable offer (a token's, or a discovery record's) whose work goes to `addr`, with
    /// `fingerprint` digesting all of it but its capacity: the offer, and whether a refusal or a
    /// crash it ends is over. `inflight` is the gateway's work there when the offer was read.
    pub(super) fn offer_usable(&mut self, addr: &str, fingerprint: u64, offer: Offer, inflight: u32) {
        if self.service_addr.as_deref() != Some(addr) {
            self.service_addr = Some(Arc::from(addr));
        }
        if std::mem::replace(&mut self.token_fingerprint, fingerprint) != fingerprint {
            // Another token (address, price, balance, ticket parameters): what the
            // orchestrator refused is worth another try. (Not a refusal after a payment: that
            // back-off ends with time, since a taker's every token is new.)
            if let Some(r) = self.refusal.take() {
                tracing::info!(pair = %self.key, orchestrator_label = self.label().as_deref(), reason = r.as_str(), "offer changed; pair back in rotation");
            }
        }
        if offer.available_capacity > 0 {
            self.offered = true;
        }
        if std::mem::take(&mut self.crashed) && self.cold_start_ms.is_some() {
            // The orchestrator is back after refusing connections: its container probably
            // restarted, so the pair is cold again. (A gateway restart or a slow probe is not
            // a reason: the model is still loaded.)
            if !matches!(self.warmth, Warmth::AwaitingWarmup { in_flight: true }) {
                self.warmth = Warmth::new(true, self.policy.warmup.is_some());
            }
        }
        let was_over = self.over_ceiling();
        self.token_ok = true;
        self.unreachable = false;
        self.probe_failures = 0;
        self.token = Some(offer);
        self.limit.on_token(offer.available_capacity, inflight);
        if self.over_ceiling() && !was_over {
            tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), "advertised price is over the capability's ceiling; pair leaves rotation");
        }
    }

    /// What paying there takes, from a token: the ticket params of a priced token (what the
    /// gateway pays against), whether they are within the operator's limits, and whether jobs
    /// would be refused for want of payment (a priced capability the gateway cannot pay for).
    fn payment_terms(&mut self, token: &JobToken) {
        let priced = token.price.is_some_and(|p| p.price_per_unit > 0);
        let params = token.ticket_params.as_ref().filter(|_| priced).and_then(|v| {
            serde_json::from_value::<crate::payment::TicketParams>(v.clone())
                .inspect_err(|e| tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), error = %e, "token's ticket_params do not decode; cannot pay there"))
                .ok()
        });
        let can_pay = params.is_some() && self.settings.signer.payer().is_some();
        // Params unfit to pay against, or that the operator's limits would never let the
        // gateway pay against.
        let refusal = params
            .as_ref()
            .filter(|_| can_pay)
            .and_then(|p| crate::payment::check_params(p, &self.settings.payment_limits).err());
        let invalid = matches!(refusal, Some(PayError::InvalidParams(_)));
        if let Some(e) = refusal.as_ref().filter(|_| invalid && !self.ticket_params_invalid) {
            tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), error = %e, "the token's ticket params cannot be paid against; pair leaves rotation");
            self.note_error("ticket-params", format!("{e}; out of rotation until a token brings sound params"));
        }
        let over_limit = refusal.is_some() && !invalid;
        if over_limit && !self.payment_over_limit {
            tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), error = ?refusal, "ticket params over the payment limits; pair leaves rotation");
        }
        self.ticket_params_invalid = invalid;
        self.payment_over_limit = over_limit;
        self.payment = params.map(|params| Arc::new(PaymentTerms { params, balance: token.balance }));
        // A gateway that pays is not held back by the balance: it tops it up.
        let payment_required = token.payment_required() && !can_pay;
        if payment_required && !self.payment_required {
            tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), balance = token.balance,
                "the capability is priced and the gateway's balance there is under 60 s of it (the gateway cannot pay there); pair leaves rotation");
        }
        self.payment_required = payment_required;
    }

    /// A probe that got no token: out of rotation, and unreachable when nothing answered.
    fn probe_failed(&mut self, e: TokenError) {
        let connect = matches!(e, TokenError::Upstream(UpstreamError::Connect(_)));
        let unreachable = matches!(e, TokenError::Upstream(UpstreamError::Connect(_) | UpstreamError::Timeout(_)));
        let class = match &e {
            TokenError::Upstream(u) => u.class(),
            TokenError::Status(..) => "status",
            TokenError::Body(_) => "bad-token",
        };
        self.offer_failed("token", unreachable, connect, e.to_string());
        metrics::counter!(m::TOKEN_PROBES_TOTAL, "result" => class).increment(1);
    }

    /// No usable offer (`what`: a token or a discovery record), saying `message`: out of
    /// rotation, and unreachable when nothing answered (a refused `connect` also marks the
    /// orchestrator as crashed: cold again once it is back).
    pub(super) fn offer_failed(&mut self, what: &str, unreachable: bool, connect: bool, message: String) {
        if connect {
            self.crashed = true;
        }
        self.unreachable = unreachable;
        if self.token_ok {
            tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), error = %message, "no usable {what}; pair leaves rotation");
        }
        self.token_ok = false;
        self.note_error(what, message);
    }
}

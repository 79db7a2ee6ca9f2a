//! Accounting for one call: how its [`Outcome`] changes the pair's breaker, latency, limit,
//! counters and rotation (a payment refusal after a payment backs the pair off); fast-path
//! answers drained in batches.

use super::*;

/// What the pair knows of a call besides its outcome.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Call {
    /// The breaker admitted it as a half-open trial.
    pub(super) trial: bool,
    /// It carried a payment.
    pub(super) paid: bool,
}

impl PairActor {
    /// Takes the pair out of rotation after a connect failure (its own or a sibling's) and
    /// re-probes; a probe already under way is not trusted to bring it back.
    pub(super) fn mark_unreachable(&mut self, ctx: &mut Context<Self>) {
        self.node_unreachable = true;
        self.crashed = true;
        if self.probing {
            self.reprobe = true;
        } else {
            self.ask_for_offer(ctx);
        }
    }

    /// A capacity refusal: other gateways hold the slots the token promised. The limit drops
    /// to what this gateway had there (at most half of it); with none of its jobs there the
    /// pair sits out about one of its jobs' time. Either way the token is probed again, since
    /// its figure is stale.
    pub(super) fn refused(&mut self, status: u16, now: Instant, ctx: &mut Context<Self>) {
        let inflight = self.slots.inflight();
        self.limit.on_refusal(inflight);
        let mut detail = format!(
            "{status}: refused for capacity with {inflight} of this gateway's jobs there; limit now {}",
            self.limit.current()
        );
        if inflight == 0 {
            let hold = Duration::from_secs_f64(self.latency.estimate_ms() / 1000.0)
                .clamp(Duration::from_millis(10), MAX_CAPACITY_HOLD);
            self.capacity_backoff_until = Some(now + hold);
            detail.push_str(&format!(", out of rotation for {} ms", hold.as_millis()));
        }
        self.note_error("capacity", detail);
        if slots::millis_now().wrapping_sub(self.probed_at_ms) >= REPROBE_AFTER_REFUSAL.as_millis() as u32 {
            self.probed_at_ms = slots::millis_now();
            self.ask_for_offer(ctx);
        }
    }

    /// Applies one call's outcome to the pair's health. The caller publishes.
    pub(super) fn account(
        &mut self,
        Call { trial, paid }: Call,
        outcome: &Outcome,
        elapsed: Duration,
        now: Instant,
        ctx: &mut Context<Self>,
    ) {
        // Only calls the breaker admitted in its current state speak for it: a non-trial call
        // that started while closed and ends while half-open is not a trial result.
        let counts = trial || self.breaker.state() == State::Closed;
        if let Outcome::Success | Outcome::ClientError(_) = outcome {
            // The answers relayed to clients: the share of 4xx among them is compared with the
            // siblings' (`client_errors`).
            self.client_errors.observe(matches!(outcome, Outcome::ClientError(_)));
        }
        let transition = match outcome {
            Outcome::Success => self.answered(elapsed, now, counts),
            Outcome::ClientError(_) => {
                // The orchestrator answered: it is alive, so a trial call counts as passed.
                self.counters.http_4xx += 1;
                self.limit.on_answer();
                counts.then(|| self.breaker.on_neutral()).flatten()
            }
            Outcome::Refused(refusal, body) => {
                if trial {
                    self.breaker.release_trial();
                }
                if !(refusal.is_payment() && self.back_off_after_payment(paid, body, now)) {
                    self.take_out(*refusal, body);
                }
                None
            }
            Outcome::CapacityRefused(status) => {
                self.counters.capacity += 1;
                if trial {
                    self.breaker.release_trial();
                }
                self.refused(*status, now, ctx);
                None
            }
            failure => {
                self.note_failure(failure, ctx);
                self.success.observe(false);
                counts.then(|| self.breaker.on_failure(now, rand::random::<f64>())).flatten()
            }
        };
        if trial && matches!(outcome, Outcome::Success | Outcome::ClientError(_)) {
            tracing::info!(pair = %self.key, orchestrator_label = self.label().as_deref(), "half-open trial passed");
        }
        if let Some(t) = transition {
            self.on_transition(t, outcome.class());
        }
    }

    /// A successful answer after `elapsed`: latency, success rate, limit, and the breaker
    /// when the call `counts` for it.
    fn answered(&mut self, elapsed: Duration, now: Instant, counts: bool) -> Option<Transition> {
        self.counters.success += 1;
        // Whatever it was paid served a job: a taker does not do that.
        self.payment_backoff.answered();
        // A slow cold start (loading a model) is not the pair's latency: it is recorded as
        // the cold start and deprioritises the pair instead.
        if !self.first_answer(elapsed, now) {
            let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
            self.latency.observe(elapsed_ms, now);
            self.window.observe(elapsed_ms);
        }
        self.success.observe(true);
        self.limit.on_answer();
        self.offered = true;
        let slow = elapsed > self.policy.slow_call_threshold;
        counts.then(|| self.breaker.on_success(now, rand::random::<f64>(), slow)).flatten()
    }

    /// A payment refusal (`body` is what the orchestrator answered) at `now`: when a payment
    /// went before it with no job answered since (`paid`: this call's), the pair is out for the
    /// doubling back-off, whatever its next tokens say ([`RefusalBackoff`]). False when no
    /// payment went before it (the refusal is then taken as any other).
    ///
    /// [`RefusalBackoff`]: crate::payment::backoff::RefusalBackoff
    fn back_off_after_payment(&mut self, paid: bool, body: &str, now: Instant) -> bool {
        let limits = &self.settings.payment_limits;
        let Some(hold) = self.payment_backoff.refused(paid, now, limits.refusal_backoff, limits.refusal_backoff_max)
        else {
            return false;
        };
        self.counters.refused += 1;
        let addr = self.service_addr.as_deref().unwrap_or("?").to_string();
        let level = self.payment_backoff.level();
        let message = format!(
            "{addr} refused a job after taking a payment ('{body}'): out of rotation for {} s (refusal {level} since it last \
             answered a job; the wait doubles with each, up to payments.refusal_backoff_max); new tokens do not end it, \
             an answered job or a reset does",
            hold.as_secs()
        );
        tracing::error!(pair = %self.key, orchestrator_label = self.label().as_deref(), level, hold_s = hold.as_secs(), "{message}");
        self.note_error("payment-backoff", message);
        true
    }

    /// A refusal that is neither the orchestrator's health nor the client's fault (`body` is
    /// what it answered): out of rotation until its token changes or an operator resets it.
    fn take_out(&mut self, refusal: Refusal, body: &str) {
        self.counters.refused += 1;
        self.refusal = Some(refusal);
        let addr = self.service_addr.as_deref().unwrap_or("?").to_string();
        let message = match refusal {
            Refusal::RoutingLoop => format!("508: a job sent to {addr} came back to a gateway it had passed (the token's service_addr leads back to a gateway)"),
            Refusal::CredentialsRejected => format!("{addr} answered 400 '{body}': it does not accept this gateway's job signature (an orchestrator expecting another signature scheme?)"),
            Refusal::PaymentRequired => format!("{addr} answered 400 '{body}': the capability is priced and the gateway has no credit there"),
            Refusal::PriceUnavailable => format!("{addr} answered 400 '{body}': the orchestrator cannot price the capability"),
            Refusal::PaymentRejected => format!("{addr} refused the gateway's payment tickets: {body}"),
        };
        tracing::error!(pair = %self.key, orchestrator_label = self.label().as_deref(), reason = refusal.as_str(), "{message}; pair leaves rotation");
        self.note_error(
            refusal.as_str(),
            format!("{message}; out of rotation until its token changes or the pair is reset"),
        );
    }

    /// Counts a failed call by its kind and keeps what it said as the last error; a connect
    /// failure also takes the pair out until a probe finds the orchestrator back.
    fn note_failure(&mut self, failure: &Outcome, ctx: &mut Context<Self>) {
        match failure {
            Outcome::OutOfMemory(body) => {
                self.counters.oom += 1;
                self.note_error("oom", body.clone());
            }
            Outcome::ServerError(status, body) => {
                self.counters.http_5xx += 1;
                self.note_error("http-5xx", format!("{status}: {body}"));
            }
            Outcome::BadStatus(status) => {
                self.counters.bad_status += 1;
                self.note_error(
                    "bad-status",
                    format!("answered status {status}, which no job can end with (only 2xx, 4xx and 5xx are answers)"),
                );
            }
            Outcome::ContractMismatch(ct) => {
                self.counters.contract += 1;
                let expected = self.policy.response_content_type.as_deref().unwrap_or("?");
                self.note_error("contract-mismatch", format!("answered {ct}, the capability's contract is {expected}"));
            }
            Outcome::Failed(e) => {
                match e {
                    UpstreamError::Connect(_) => {
                        self.counters.connect += 1;
                        // Nothing listens: out of rotation until a probe finds it back.
                        self.mark_unreachable(ctx);
                    }
                    UpstreamError::Timeout(_) => self.counters.timeout += 1,
                    _ => self.counters.transport += 1,
                }
                self.note_error(e.class(), e.to_string());
            }
            Outcome::Stuck(after) => {
                self.counters.timeout += 1;
                let p99 = self.window.percentiles().map_or(0.0, |p| p.1);
                self.note_error(
                    "stuck",
                    format!(
                        "no answer after {} ms, far past this pair's p99 of {p99:.0} ms; abandoned while another pair had room",
                        after.as_millis()
                    ),
                );
            }
            Outcome::Success | Outcome::ClientError(_) | Outcome::Refused(..) | Outcome::CapacityRefused(_) => {}
        }
    }

    /// Applies every sample waiting in the tally.
    pub(super) fn drain_tally(&mut self, ctx: &mut Context<Self>) {
        let (samples, dropped) = self.tally.take();
        if dropped > 0 {
            metrics::counter!(m::TALLY_DROPPED_TOTAL).increment(dropped);
        }
        if samples.is_empty() {
            return;
        }
        for s in &samples {
            self.account(Call::default(), &s.outcome, s.elapsed, s.at, ctx);
        }
        self.publish();
    }
}

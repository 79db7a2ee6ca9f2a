//! `PairActor`: one per (orchestrator, capability). It owns that pair's health (breaker,
//! latency and success statistics, cold start, capacity back-off), its in-flight leases and
//! its cached token, which it refreshes on a jittered timer so that no request ever waits for
//! a token probe.
//!
//! Work is admitted with [`Admit`] (which hands out a lease) and accounted for with
//! [`Record`]; the upstream call itself runs on the HTTP worker that holds the client's
//! connection, so bytes never cross threads. After every change the actor publishes a
//! [`PairView`] that the dispatcher selects from.

pub mod probe;
pub mod slots;
pub mod tally;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::RwLock;

use crate::breaker::{Admission, Breaker, State, Transition};
use crate::clock::{unix_ms_now, unix_ms_to_instant};
use crate::limit::ConcurrencyLimit;
use crate::metrics as m;
use crate::orchestrator::normalize_url;
use crate::outcome::{Outcome, Refusal};
use crate::policy::Effective;
use crate::protocol::client::{excerpt, fetch_token, forward_job, Forward, TokenError, UpstreamError};
use crate::protocol::header::JobRequest;
use crate::protocol::signer::SharedSigner;
use crate::protocol::token::{JobToken, Price};
use crate::score::{LatencyWindow, PeakEwma, SuccessRate};
pub use slots::{SlotGuard, Slots};
pub use tally::{Deposit, Sample, Tally};
use view::Counters;
pub use view::{LastError, PairKey, PairRecord, PairReport, PairView, SharedView, Unroutable};

/// Settings shared by every pair actor (per-capability knobs come from its policy).
#[derive(Clone)]
pub struct PairSettings {
    /// Token refresh period while healthy (jittered by +-20 %).
    pub token_refresh: Duration,
    /// Token refresh period while the orchestrator reports no free slot, and the first retry
    /// after a failed probe (failures in a row double it, up to `token_retry_max`).
    pub token_retry: Duration,
    /// Longest wait between failing probes.
    pub token_retry_max: Duration,
    /// Bound on one token probe (go-livepeer: 500 ms per request, 1 s overall).
    pub token_timeout: Duration,
    /// Identity used on token probes and warm-up jobs.
    pub signer: SharedSigner,
    /// The gateway's loop marker, sent on warm-up jobs too.
    pub marker: Arc<crate::protocol::via::LoopMarker>,
    /// Peak-EWMA decay.
    pub ewma_decay: Duration,
    /// Latency a pair starts with before it has answered (neutral).
    pub initial_latency_ms: f64,
    /// Extra time past a lease's own deadline before it is presumed lost.
    pub lease_slack: Duration,
    /// Mailbox capacity of each pair actor.
    pub mailbox_capacity: usize,
    /// Token probes in flight at once, over all pairs. At start every pair probes at once:
    /// unbounded, 10,000 pairs made 10,000 simultaneous requests (each with its own request
    /// and connection buffers, up to `max_connections` sockets), a ~190 MB heap peak that the
    /// allocator then kept as RSS. At steady state probes are spread by their jittered timers
    /// and this bound is never reached.
    pub probe_permits: Arc<tokio::sync::Semaphore>,
}

/// Default bound on token probes in flight at once (see [`PairSettings::probe_permits`]):
/// enough to probe 10,000 pairs on loopback in about a second, and to keep start-up probing
/// over a WAN (hundreds of ms per first probe) within seconds.
pub const PROBE_CONCURRENCY: usize = 256;

impl Default for PairSettings {
    fn default() -> Self {
        Self {
            token_refresh: Duration::from_secs(10),
            token_retry: Duration::from_secs(1),
            token_retry_max: Duration::from_secs(30),
            token_timeout: Duration::from_secs(1),
            signer: Arc::new(crate::protocol::signer::Offchain),
            marker: Arc::default(),
            ewma_decay: Duration::from_secs(10),
            initial_latency_ms: 100.0,
            lease_slack: Duration::from_secs(5),
            mailbox_capacity: 1024,
            probe_permits: Arc::new(tokio::sync::Semaphore::new(PROBE_CONCURRENCY)),
        }
    }
}

/// Longest a capacity refusal keeps a pair out of rotation (when none of the gateway's jobs
/// were there; otherwise its lowered limit does the work): about one of its jobs' time, never
/// more than this.
const MAX_CAPACITY_HOLD: Duration = Duration::from_secs(1);

/// A refusal re-probes the token (it says the token's capacity is stale) unless the last probe
/// is younger than this.
const REPROBE_AFTER_REFUSAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Lease {
    deadline: Instant,
    trial: bool,
}

/// The actor.
pub struct PairActor {
    settings: Arc<PairSettings>,
    policy: Arc<Effective>,
    client: awc::Client,
    key: PairKey,
    /// Published state; also where the orchestrator's URL is kept (one copy per pair).
    view: SharedView,
    breaker: Breaker,
    latency: PeakEwma,
    /// Recent successful call durations (percentiles).
    window: LatencyWindow,
    success: SuccessRate,
    /// Jobs allowed in flight (AIMD under the token's figure).
    limit: ConcurrencyLimit,
    /// Jobs in flight against the published limit, shared with the workers.
    slots: Arc<Slots>,
    /// What the last token offered (its service address is kept in `service_addr`).
    token: Option<Offer>,
    service_addr: Option<Arc<str>>,
    probed: bool,
    probing: bool,
    /// A connect failure was seen while a probe was already under way: that probe's answer
    /// may predate the failure, so it must not put the pair back; probe again instead.
    reprobe: bool,
    /// The orchestrator refused a connection (job or probe): its container probably
    /// restarted, so the pair is cold again once it answers probes.
    crashed: bool,
    token_ok: bool,
    offered: bool,
    node_unreachable: bool,
    /// The orchestrator refused a job for a reason that is not the client's (508 loop, or a 400
    /// about credentials, payment or price): out of rotation until the token changes
    /// ([`JobToken::fingerprint`]) or the operator resets the pair.
    refusal: Option<Refusal>,
    /// [`JobToken::fingerprint`] of the last usable token.
    token_fingerprint: u64,
    /// The last token prices the capability above what the gateway's balance there covers
    /// ([`JobToken::payment_required`]).
    payment_required: bool,
    /// Half-open trial calls admitted by [`Admit`] and not yet recorded.
    leases: HashMap<u64, Lease>,
    next_lease: u64,
    /// Token probes that failed in a row (their back-off, [`probe::next_delay`]).
    probe_failures: u32,
    /// When the last token probe started, in wrapping milliseconds ([`slots::millis_now`]): a
    /// `u32` fits in the actor's padding, and only intervals under a few seconds are compared.
    probed_at_ms: u32,
    /// Fast-path answers awaiting accounting.
    tally: Arc<Tally>,
    /// A [`DrainTally`] is scheduled.
    drain_scheduled: bool,
    warming: bool,
    warmup_pending: bool,
    warmup_in_flight: bool,
    cold_start_ms: Option<u64>,
    deprioritized_until: Option<Instant>,
    capacity_backoff_until: Option<Instant>,
    last_error: Option<Arc<LastError>>,
    restarts: u32,
    counters: Counters,
    retired: bool,
    disabled: bool,
    refresh: Option<SpawnHandle>,
}

/// The part of a token the pair routes on. A whole [`JobToken`]
/// per pair also held ticket parameters nothing reads (no payments here) and a copy of the
/// service address; at 10,000 pairs every byte of a pair actor counts 10,000 times.
#[derive(Debug, Clone, Copy)]
struct Offer {
    available_capacity: i64,
    price: Option<Price>,
}

impl PairActor {
    /// A pair actor, warm-started from `record` when the store had one. `offered` marks a
    /// capability the operator declared for this orchestrator.
    pub fn new(
        settings: Arc<PairSettings>,
        policy: Arc<Effective>,
        client: awc::Client,
        key: PairKey,
        orchestrator_url: Arc<str>,
        record: Option<&PairRecord>,
        offered: bool,
    ) -> Self {
        let now = Instant::now();
        let view = Arc::new(RwLock::new(PairView::new(key.clone(), orchestrator_url.clone())));
        let mut latency = PeakEwma::new(settings.initial_latency_ms, settings.ewma_decay);
        let mut success = SuccessRate::new(1.0, 0.1);
        let mut breaker = Breaker::new(policy.breaker.clone());
        let mut actor_offered = offered;
        let (mut cold_start_ms, mut counters, mut restarts) = (None, Counters::default(), 0);
        if let Some(r) = record {
            let updated = r.latency_updated_unix_ms.map(|ms| unix_ms_to_instant(ms, now));
            latency = PeakEwma::restore(r.latency_ewma_ms, updated, settings.ewma_decay);
            success = SuccessRate::new(r.success_rate, 0.1);
            let open_until = r.open_until_unix_ms.map(|ms| unix_ms_to_instant(ms, now));
            breaker = Breaker::restore(policy.breaker.clone(), r.breaker, r.breaker_level, open_until);
            actor_offered |= r.offered;
            cold_start_ms = r.cold_start_ms;
            counters = r.counters;
            restarts = r.restarts;
        }
        // A pair that has never answered is cold: limited concurrency until it has.
        let warming = cold_start_ms.is_none();
        let warmup_pending = warming && policy.warmup.is_some();
        let mut actor = Self {
            settings,
            policy,
            client,
            key,
            view,
            breaker,
            latency,
            window: LatencyWindow::default(),
            success,
            limit: ConcurrencyLimit::new(),
            slots: Arc::default(),
            token: None,
            service_addr: None,
            probed: false,
            probing: false,
            reprobe: false,
            crashed: false,
            token_ok: false,
            offered: actor_offered,
            node_unreachable: false,
            refusal: None,
            token_fingerprint: 0,
            payment_required: false,
            leases: HashMap::new(),
            next_lease: 1,
            probed_at_ms: 0,
            probe_failures: 0,
            tally: Arc::default(),
            drain_scheduled: false,
            warming,
            warmup_pending,
            warmup_in_flight: false,
            cold_start_ms,
            deprioritized_until: None,
            capacity_backoff_until: None,
            last_error: None,
            restarts,
            counters,
            retired: false,
            disabled: false,
            refresh: None,
        };
        actor.publish();
        actor
    }

    /// Starts the pair disabled (draining) when its orchestrator is disabled.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.disabled = !enabled;
        self.publish();
        self
    }

    /// The cell this actor publishes into.
    pub fn view(&self) -> SharedView {
        self.view.clone()
    }

    /// The inbox fast-path answers are deposited into.
    pub fn tally(&self) -> Arc<Tally> {
        self.tally.clone()
    }

    fn over_ceiling(&self) -> bool {
        self.token
            .as_ref()
            .and_then(|t| t.price)
            .is_some_and(|p| self.policy.over_ceiling(p.price_per_unit, p.pixels_per_unit))
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let price = self.token.as_ref().and_then(|t| t.price);
        let (price_per_unit, pixels_per_unit) = price.map_or((0, 1), |p| (p.price_per_unit, p.pixels_per_unit));
        let mut v = self.view.write();
        // Only a change to what is persisted makes the pair dirty: a token refresh changes
        // nothing stored, and bumping on it rewrote every probed pair each flush (at 10,000
        // pairs, ~1,000 records/s of sled writes with nothing new in them).
        let persisted_changed = v.latency.estimate_ms() != self.latency.estimate_ms()
            || v.latency.updated() != self.latency.updated()
            || v.success_rate != self.success.value()
            || v.breaker != self.breaker.state()
            || v.breaker_level != self.breaker.level()
            || v.open_until != self.breaker.open_until()
            || v.offered != self.offered
            || v.cold_start_ms != self.cold_start_ms
            || v.counters != self.counters
            || v.restarts != self.restarts;
        let generation = v.generation + u64::from(persisted_changed);
        // The limit workers take slots against: the capability's cold-start concurrency until
        // the pair has answered once.
        let mut limit = self.limit.current();
        if self.warming {
            limit = limit.min(self.policy.cold_start_concurrency);
        }
        self.slots.set_limit(limit);
        let orchestrator_url = v.orchestrator_url.clone();
        *v = PairView {
            key: self.key.clone(),
            orchestrator_url,
            service_addr: self.service_addr.clone(),
            breaker: self.breaker.state(),
            breaker_level: self.breaker.level(),
            open_until: self.breaker.open_until(),
            trial_available: self.breaker.state() == State::HalfOpen && self.breaker.would_admit(now),
            consecutive_failures: self.breaker.consecutive_failures(),
            probed: self.probed,
            token_ok: self.token_ok,
            token_failures: self.probe_failures,
            available_capacity: self.token.as_ref().map_or(0, |t| t.available_capacity),
            capacity_ceiling: self.limit.ceiling(),
            price_per_unit,
            pixels_per_unit,
            offered: self.offered,
            latency: self.latency,
            latency_percentiles: self.window.percentiles(),
            success_rate: self.success.value(),
            slots: self.slots.clone(),
            cold_start_ms: self.cold_start_ms,
            last_error: self.last_error.clone(),
            restarts: self.restarts,
            counters: self.counters,
            retired: self.retired,
            disabled: self.disabled,
            node_unreachable: self.node_unreachable,
            refusal: self.refusal,
            payment_required: self.payment_required,
            over_ceiling: self.over_ceiling(),
            price_share: self.policy.price_share(price_per_unit, pixels_per_unit),
            warming: self.warming,
            warmup_pending: self.warmup_pending,
            deprioritized_until: self.deprioritized_until,
            capacity_backoff_until: self.capacity_backoff_until,
            generation,
        };
        let routable = v.routable_at(now).is_ok();
        drop(v);
        if routable {
            // A pair back in rotation, or with room again, takes a waiting job at once.
            self.slots.wake_waiter();
        }
    }

    /// Where the orchestrator's tokens are probed.
    fn orchestrator_url(&self) -> Arc<str> {
        self.view.read().orchestrator_url.clone()
    }

    /// The slots this actor publishes its limit into.
    pub fn slots(&self) -> Arc<Slots> {
        self.slots.clone()
    }

    fn note_error(&mut self, class: &str, message: String) {
        self.last_error = Some(Arc::new(LastError { class: class.to_string(), message, at_unix_ms: unix_ms_now() }));
    }

    fn on_transition(&self, t: Transition, cause: &str) {
        metrics::counter!(m::BREAKER_TRANSITIONS_TOTAL,
            "from" => t.from.as_str(), "to" => t.to.as_str(), "reason" => t.reason)
        .increment(1);
        match t.to {
            State::Open => tracing::warn!(pair = %self.key, from = t.from.as_str(), reason = t.reason, cause,
                level = self.breaker.level(),
                open_for_ms = self.breaker.open_until().map(|u| u.saturating_duration_since(Instant::now()).as_millis() as u64),
                "breaker opened"),
            _ => {
                tracing::info!(pair = %self.key, from = t.from.as_str(), to = t.to.as_str(), reason = t.reason, "breaker transition")
            }
        }
    }

    /// Probes the token. The first probe after (re)start pauses the mailbox so that callers
    /// asking for a [`Snapshot`] see the probed state.
    fn probe(&mut self, ctx: &mut Context<Self>, first: bool) {
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

    fn schedule_probe(&mut self, ctx: &mut Context<Self>) {
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
        let delay = probe::jittered(probe::next_delay(cadence, last), rand::random::<f64>());
        self.refresh = Some(ctx.run_later(delay, |act, ctx| {
            act.refresh = None;
            act.sweep_leases();
            // Safety net for a drain request that could not be delivered.
            act.drain_tally(ctx);
            act.probe(ctx, false);
        }));
    }

    fn apply_token(&mut self, res: Result<JobToken, TokenError>, inflight: u32) {
        self.probed = true;
        self.node_unreachable = false;
        // Counted here, reset below once a usable token arrives.
        self.probe_failures = self.probe_failures.saturating_add(1);
        match res {
            Ok(token) => {
                let service = if token.service_addr.trim().is_empty() {
                    Ok(self.orchestrator_url().to_string())
                } else {
                    normalize_url(&token.service_addr)
                };
                match service {
                    Ok(addr) => {
                        if self.service_addr.as_deref() != Some(addr.as_str()) {
                            self.service_addr = Some(Arc::from(addr));
                        }
                        let fingerprint = token.fingerprint();
                        if std::mem::replace(&mut self.token_fingerprint, fingerprint) != fingerprint {
                            // Another token (address, price, balance, ticket parameters): what
                            // the orchestrator refused is worth another try.
                            if let Some(r) = self.refusal.take() {
                                tracing::info!(pair = %self.key, reason = r.as_str(), "token changed; pair back in rotation");
                            }
                        }
                        let payment_required = token.payment_required();
                        if payment_required && !self.payment_required {
                            tracing::warn!(pair = %self.key, balance = token.balance,
                                "the capability is priced and the gateway's balance there is under 60 s of it (the gateway does not pay yet); pair leaves rotation");
                        }
                        self.payment_required = payment_required;
                        if token.available_capacity > 0 {
                            self.offered = true;
                        }
                        if std::mem::take(&mut self.crashed) && self.cold_start_ms.is_some() {
                            // The orchestrator is back after refusing connections: its
                            // container probably restarted, so the pair is cold again. (A
                            // gateway restart or a slow probe is not a reason: the model is
                            // still loaded.)
                            self.warming = true;
                            self.warmup_pending = self.policy.warmup.is_some();
                        }
                        let was_over = self.over_ceiling();
                        self.token_ok = true;
                        self.probe_failures = 0;
                        self.token = Some(Offer { available_capacity: token.available_capacity, price: token.price });
                        self.limit.on_token(token.available_capacity, inflight);
                        if self.over_ceiling() && !was_over {
                            tracing::warn!(pair = %self.key, "advertised price is over the capability's ceiling; pair leaves rotation");
                        }
                        metrics::counter!(m::TOKEN_PROBES_TOTAL, "result" => "ok").increment(1);
                    }
                    Err(e) => {
                        self.token_ok = false;
                        self.note_error("token", format!("token names an unusable service_addr: {e}"));
                        metrics::counter!(m::TOKEN_PROBES_TOTAL, "result" => "bad-token").increment(1);
                    }
                }
            }
            Err(e) => {
                if matches!(e, TokenError::Upstream(UpstreamError::Connect(_))) {
                    self.crashed = true;
                }
                let class = match &e {
                    TokenError::Upstream(u) => u.class(),
                    TokenError::Status(..) => "status",
                    TokenError::Body(_) => "bad-token",
                };
                if self.token_ok {
                    tracing::warn!(pair = %self.key, error = %e, "token probe failed; pair leaves rotation");
                }
                self.token_ok = false;
                self.note_error("token", e.to_string());
                metrics::counter!(m::TOKEN_PROBES_TOTAL, "result" => class).increment(1);
            }
        }
        self.publish();
    }

    /// Sends the capability's warm-up job, if it has one and the pair is ready for it.
    fn maybe_warm_up(&mut self, ctx: &mut Context<Self>) {
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
    fn first_answer(&mut self, elapsed: Duration, now: Instant) -> bool {
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

    /// Takes the pair out of rotation after a connect failure (its own or a sibling's) and
    /// re-probes; a probe already under way is not trusted to bring it back.
    fn mark_unreachable(&mut self, ctx: &mut Context<Self>) {
        self.node_unreachable = true;
        self.crashed = true;
        if self.probing {
            self.reprobe = true;
        } else {
            self.probe(ctx, false);
        }
    }

    /// A capacity refusal: other gateways hold the slots the token promised. The limit drops
    /// to what this gateway had there (at most half of it); with none of its jobs there the
    /// pair sits out about one of its jobs' time. Either way the token is probed again, since
    /// its figure is stale.
    fn refused(&mut self, status: u16, now: Instant, ctx: &mut Context<Self>) {
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
            self.probe(ctx, false);
        }
    }

    /// Applies one call's outcome to the pair's health. `trial` when the breaker admitted it
    /// as a half-open trial. The caller publishes.
    fn account(&mut self, trial: bool, outcome: &Outcome, elapsed: Duration, now: Instant, ctx: &mut Context<Self>) {
        // Only calls the breaker admitted in its current state speak for it: a non-trial call
        // that started while closed and ends while half-open is not a trial result.
        let counts = trial || self.breaker.state() == State::Closed;
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let transition = match outcome {
            Outcome::Success => {
                self.counters.success += 1;
                // A slow cold start (loading a model) is not the pair's latency: it is recorded
                // as the cold start and deprioritises the pair instead.
                if !self.first_answer(elapsed, now) {
                    self.latency.observe(elapsed_ms, now);
                    self.window.observe(elapsed_ms);
                }
                self.success.observe(true);
                self.limit.on_answer();
                self.offered = true;
                let slow = elapsed > self.policy.slow_call_threshold;
                if counts {
                    self.breaker.on_success(now, rand::random::<f64>(), slow)
                } else {
                    None
                }
            }
            Outcome::ClientError(_) => {
                // The orchestrator answered: it is alive, so a trial call counts as passed.
                self.counters.http_4xx += 1;
                self.limit.on_answer();
                if counts {
                    self.breaker.on_neutral()
                } else {
                    None
                }
            }
            Outcome::Refused(refusal, body) => {
                // Not the orchestrator's health and not the client's fault: out of rotation.
                self.counters.refused += 1;
                if trial {
                    self.breaker.release_trial();
                }
                self.refusal = Some(*refusal);
                let addr = self.service_addr.as_deref().unwrap_or("?").to_string();
                let message = match refusal {
                    Refusal::RoutingLoop => format!("508: a job sent to {addr} came back to a gateway it had passed (the token's service_addr leads back to a gateway)"),
                    Refusal::CredentialsRejected => format!("{addr} answered 400 '{body}': it does not accept this gateway's job signature (an orchestrator expecting another signature scheme?)"),
                    Refusal::PaymentRequired => format!("{addr} answered 400 '{body}': the capability is priced and the gateway has no credit there (it does not pay yet)"),
                    Refusal::PriceUnavailable => format!("{addr} answered 400 '{body}': the orchestrator cannot price the capability"),
                };
                tracing::error!(pair = %self.key, reason = refusal.as_str(), "{message}; pair leaves rotation");
                self.note_error(
                    refusal.as_str(),
                    format!("{message}; out of rotation until its token changes or the pair is reset"),
                );
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
                match failure {
                    Outcome::OutOfMemory(body) => {
                        self.counters.oom += 1;
                        self.note_error("oom", body.clone());
                    }
                    Outcome::ServerError(status, body) => {
                        self.counters.http_5xx += 1;
                        self.note_error("http-5xx", format!("{status}: {body}"));
                    }
                    Outcome::ContractMismatch(ct) => {
                        self.counters.contract += 1;
                        let expected = self.policy.response_content_type.as_deref().unwrap_or("?");
                        self.note_error(
                            "contract-mismatch",
                            format!("answered {ct}, the capability's contract is {expected}"),
                        );
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
                    _ => {}
                }
                self.success.observe(false);
                if counts {
                    self.breaker.on_failure(now, rand::random::<f64>())
                } else {
                    None
                }
            }
        };
        if trial && matches!(outcome, Outcome::Success | Outcome::ClientError(_)) {
            tracing::info!(pair = %self.key, "half-open trial passed");
        }
        if let Some(t) = transition {
            self.on_transition(t, outcome.class());
        }
    }

    /// Applies every sample waiting in the tally.
    fn drain_tally(&mut self, ctx: &mut Context<Self>) {
        let (samples, dropped) = self.tally.take();
        if dropped > 0 {
            metrics::counter!(m::TALLY_DROPPED_TOTAL).increment(dropped);
        }
        if samples.is_empty() {
            return;
        }
        for s in &samples {
            self.account(false, &s.outcome, s.elapsed, s.at, ctx);
        }
        self.publish();
    }

    /// Forgets leases whose holder never reported back (a lost [`Record`]).
    fn sweep_leases(&mut self) {
        let now = Instant::now();
        let before = self.leases.len();
        let breaker = &mut self.breaker;
        self.leases.retain(|_, l| {
            let keep = l.deadline > now;
            if !keep && l.trial {
                breaker.release_trial();
            }
            keep
        });
        if self.leases.len() != before {
            tracing::debug!(pair = %self.key, dropped = before - self.leases.len(), "expired leases dropped");
            self.publish();
        }
    }
}

impl Actor for PairActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
        if !self.retired {
            self.probe(ctx, true);
        }
    }
}

impl actix::Supervised for PairActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The same struct is reused: leases of the old incarnation are gone (their holders
        // get a mailbox error or their Record lands on the new one and is ignored).
        for lease in self.leases.values() {
            if lease.trial {
                self.breaker.release_trial();
            }
        }
        self.leases.clear();
        self.refresh = None;
        self.probed = false;
        self.probing = false;
        self.reprobe = false;
        self.warmup_in_flight = false;
        // The scheduled drain died with the old incarnation's timers: the next deposit asks for
        // a drain again and it is scheduled anew (the samples survive in the shared tally).
        self.drain_scheduled = false;
        self.tally.unrequest();
        self.restarts += 1;
        metrics::counter!(m::ACTOR_RESTARTS_TOTAL, "actor" => "pair").increment(1);
        tracing::warn!(pair = %self.key, restarts = self.restarts, "pair actor restarted by the supervisor");
        self.publish();
    }
}

/// A permission to send one job to this pair.
#[derive(Debug, Clone)]
pub struct Permit {
    /// Lease id to quote in [`Record`].
    pub lease: u64,
    /// Where to send the job.
    pub service_addr: Arc<str>,
    /// Whether this is a half-open trial call.
    pub trial: bool,
}

/// Asks the pair to admit one job that may run for up to `timeout`.
#[derive(Message)]
#[rtype(result = "Result<Permit, Unroutable>")]
pub struct Admit {
    /// The attempt's own deadline (the lease expires after it plus slack).
    pub timeout: Duration,
}

impl Handler<Admit> for PairActor {
    type Result = Result<Permit, Unroutable>;

    fn handle(&mut self, msg: Admit, _ctx: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        // Everything but the breaker is decided by the published view (one source of truth).
        let refusal = {
            let v = self.view.read();
            match v.routable_at(now) {
                Err(Unroutable::BreakerOpen(_)) | Ok(()) => None,
                Err(other) => Some(other),
            }
        };
        if let Some(reason) = refusal {
            return Err(reason);
        }
        let Some(service_addr) = self.service_addr.clone() else {
            return Err(Unroutable::TokenUnavailable);
        };
        let (admission, transition) = self.breaker.admit(now);
        if let Some(t) = transition {
            self.on_transition(t, "admit");
        }
        let trial = match admission {
            Admission::Allowed => false,
            Admission::Trial => true,
            Admission::Refused(until) => {
                self.publish();
                return Err(Unroutable::BreakerOpen(until));
            }
        };
        let lease = self.next_lease;
        self.next_lease += 1;
        self.leases.insert(lease, Lease { deadline: now + msg.timeout + self.settings.lease_slack, trial });
        self.publish();
        Ok(Permit { lease, service_addr, trial })
    }
}

/// Reports how an admitted job ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record {
    /// The lease from [`Permit`], or `None` for a call admitted on the fast path
    /// ([`PairView::fast_admission`]).
    pub lease: Option<u64>,
    /// The outcome.
    pub outcome: Outcome,
    /// How long the call took.
    pub elapsed: Duration,
}

impl Handler<Record> for PairActor {
    type Result = ();

    fn handle(&mut self, msg: Record, ctx: &mut Self::Context) {
        let now = Instant::now();
        let trial = match msg.lease {
            None => false,
            Some(id) => match self.leases.remove(&id) {
                Some(lease) => lease.trial,
                None => {
                    // Expired or from before a restart: the breaker already moved on without it.
                    tracing::debug!(pair = %self.key, lease = id, "record for an unknown lease ignored");
                    return;
                }
            },
        };
        self.account(trial, &msg.outcome, msg.elapsed, now, ctx);
        self.publish();
    }
}

/// Samples wait in the pair's [`Tally`] (the router deposited the first of a batch): drain
/// them shortly, so that a busy pair is accounted in batches rather than per job.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DrainTally;

/// How long a drain waits for more samples.
const TALLY_BATCH: Duration = Duration::from_millis(10);

impl Handler<DrainTally> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: DrainTally, ctx: &mut Self::Context) {
        if self.drain_scheduled {
            return;
        }
        self.drain_scheduled = true;
        ctx.run_later(TALLY_BATCH, |act, ctx| {
            act.drain_scheduled = false;
            act.drain_tally(ctx);
        });
    }
}

/// Drains the pair's [`Tally`] now, so that what is read next (admin views, an export, the
/// final flush) includes every answered job.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Settle;

impl Handler<Settle> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: Settle, ctx: &mut Self::Context) {
        self.drain_tally(ctx);
    }
}

/// A sibling pair on the same orchestrator could not connect: this pair leaves rotation at
/// once and re-probes (a container crash is a node-level event).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerUnreachable;

impl Handler<PeerUnreachable> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: PeerUnreachable, ctx: &mut Self::Context) {
        if self.retired || self.node_unreachable {
            return;
        }
        self.mark_unreachable(ctx);
        self.publish();
    }
}

/// Replaces the capability policy this pair follows (operator changed it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPolicy(pub Arc<Effective>);

impl Handler<SetPolicy> for PairActor {
    type Result = ();

    fn handle(&mut self, SetPolicy(policy): SetPolicy, ctx: &mut Self::Context) {
        self.breaker.set_config(policy.breaker.clone());
        if policy.warmup.is_none() {
            self.warmup_pending = false;
        }
        self.policy = policy;
        self.publish();
        self.maybe_warm_up(ctx);
    }
}

/// Returns the pair's current view. Answered only after the first token probe of the
/// current incarnation, which is what lazy capability discovery waits for.
#[derive(Message)]
#[rtype(result = "PairView")]
pub struct Snapshot;

impl Handler<Snapshot> for PairActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _msg: Snapshot, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.view.read().clone())
    }
}

/// Enables or disables (drains) the pair because its orchestrator was toggled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetEnabled(pub bool);

impl Handler<SetEnabled> for PairActor {
    type Result = ();

    fn handle(&mut self, SetEnabled(enabled): SetEnabled, _ctx: &mut Self::Context) {
        self.disabled = !enabled;
        self.publish();
    }
}

/// Takes the pair out of service for good (its orchestrator was removed): no new leases,
/// no more probes. In-flight jobs finish; the actor stops once nobody holds its address.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Self::Context) {
        self.retired = true;
        if let Some(h) = self.refresh.take() {
            ctx.cancel_future(h);
        }
        self.publish();
    }
}

/// Fault injection: stops the actor's context as an internal failure would, so that the
/// supervisor restarts it. Used by the supervision tests and chaos runs; only with the
/// `fault-injection` feature.
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

#[cfg(any(test, feature = "fault-injection"))]
impl Handler<Crash> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: Crash, ctx: &mut Self::Context) {
        tracing::warn!(pair = %self.key, "fault injected: pair actor stops");
        ctx.stop();
    }
}

/// Forces the breaker open (`trip: true`) or closed (`trip: false`); operator action.
#[derive(Message)]
#[rtype(result = "PairView")]
pub struct ForceBreaker {
    /// Open it (true) or close and reset it (false).
    pub trip: bool,
}

impl Handler<ForceBreaker> for PairActor {
    type Result = MessageResult<ForceBreaker>;

    fn handle(&mut self, msg: ForceBreaker, _ctx: &mut Self::Context) -> Self::Result {
        let transition = if msg.trip {
            self.breaker.trip(Instant::now(), rand::random::<f64>())
        } else {
            self.capacity_backoff_until = None;
            self.refusal = None;
            self.breaker.reset()
        };
        if let Some(t) = transition {
            self.on_transition(t, "operator");
        }
        self.publish();
        MessageResult(self.view.read().clone())
    }
}

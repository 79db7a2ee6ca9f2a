//! `PairActor`: one per (orchestrator, capability). It owns that pair's health (breaker,
//! latency and success statistics, cold start, capacity back-off), its in-flight leases and
//! its cached token, which it refreshes on a jittered timer so that no request ever waits for
//! a token probe.
//!
//! Work is admitted with [`Admit`] (which hands out a lease) and accounted for with
//! [`Record`]; the upstream call itself runs on the HTTP worker that holds the client's
//! connection, so bytes never cross threads. After every change the actor publishes a
//! [`PairView`] that the dispatcher selects from.

pub(crate) mod probe;
pub(crate) mod slots;
pub(crate) mod tally;
pub(crate) mod view;

mod account;
mod messages;
mod offer;
mod settings;
mod token;
mod warmup;

use account::Call;
use warmup::Warmth;

pub(crate) use offer::{Discovered, DiscoveredOffer, DiscoveryMiss, OfferSource, Rediscover};
pub use settings::{PairSettings, PROBE_CONCURRENCY};
pub(crate) use token::PaymentTerms;

#[cfg(any(test, feature = "fault-injection"))]
pub(crate) use messages::Crash;
pub(crate) use messages::{
    Admit, ClientErrorVerdict, DrainTally, ForceBreaker, GetView, PeerUnreachable, Permit, Record, Retire, SetEnabled,
    SetLabel, SetPolicy, Settle,
};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::RwLock;

use crate::breaker::{Admission, Breaker, Pool, State, Transition};
use crate::client_errors::ClientErrors;
use crate::clock::{unix_ms_now, unix_ms_to_instant};
use crate::limit::ConcurrencyLimit;
use crate::metrics as m;
use crate::orchestrator::{normalize_url, Label};
use crate::outcome::{Outcome, Refusal};
use crate::payment::backoff::RefusalBackoff;
use crate::policy::Effective;
use crate::protocol::client::{excerpt, fetch_token, forward_job, Forward, TokenError, UpstreamError};
use crate::protocol::header::JobRequest;
use crate::protocol::signer::SharedSigner;
use crate::protocol::token::{JobToken, Price};
use crate::score::{LatencyWindow, PeakEwma, SuccessRate};
pub use slots::{SlotGuard, Slots};
pub use tally::{Deposit, Sample, Tally};
use view::Counters;
pub use view::{LastError, PairKey, PairRecord, PairReport, PairView, Reason, SharedView, Unroutable};

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
pub(crate) struct PairActor {
    settings: Arc<PairSettings>,
    policy: Arc<Effective>,
    client: awc::Client,
    key: PairKey,
    /// Published state; also where the orchestrator's URL and label are kept (one copy per
    /// pair), and its breaker openings counted.
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
    /// Counted in [`PairSettings::failing_probes`].
    counted_failing: bool,
    /// When the last token probe started, in wrapping milliseconds ([`slots::millis_now`]): a
    /// `u32` fits in the actor's padding, and only intervals under a few seconds are compared.
    probed_at_ms: u32,
    /// Fast-path answers awaiting accounting.
    tally: Arc<Tally>,
    /// A [`DrainTally`] is scheduled.
    drain_scheduled: bool,
    /// How far it is from taking full client traffic (cold start, warm-up job).
    warmth: Warmth,
    cold_start_ms: Option<u64>,
    deprioritized_until: Option<Instant>,
    capacity_backoff_until: Option<Instant>,
    /// Its share of 4xx answers, and whether it stands far above its siblings'.
    client_errors: ClientErrors,
    last_error: Option<Arc<LastError>>,
    restarts: u32,
    counters: Counters,
    retired: bool,
    disabled: bool,
    /// An operator's trip: held open until a reset, or until the instant if one was given.
    forced: Option<Option<Instant>>,
    /// When the breaker entered its current state.
    state_since: Instant,
    /// When the last token probe ended.
    last_probe: Option<Instant>,
    /// The last token probe could not reach the orchestrator (connect refused, timeout).
    unreachable: bool,
    /// What the last priced token offers to pay against.
    payment: Option<Arc<PaymentTerms>>,
    /// Its ticket params are over the operator's payment limits.
    payment_over_limit: bool,
    /// Its ticket params are unfit to pay against ([`crate::payment::ParamsFault`]).
    ticket_params_invalid: bool,
    /// Out of rotation after refusing a job it took a payment for.
    payment_backoff: RefusalBackoff,
    refresh: Option<SpawnHandle>,
    /// Where its offer comes from: its own token probes, or discovery records.
    source: OfferSource,
    /// What its source shows of it besides the offer (a Live Runner record), for the report.
    details: Option<Arc<serde_json::Value>>,
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
    pub(crate) fn new(
        settings: Arc<PairSettings>,
        policy: Arc<Effective>,
        client: awc::Client,
        key: PairKey,
        orchestrator: Arc<view::OrchestratorRef>,
        record: Option<&PairRecord>,
        offered: bool,
    ) -> Self {
        let now = Instant::now();
        let view = Arc::new(RwLock::new(PairView::of(key.clone(), orchestrator)));
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
        let warmth = Warmth::new(cold_start_ms.is_none(), policy.warmup.is_some());
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
            counted_failing: false,
            tally: Arc::default(),
            drain_scheduled: false,
            warmth,
            cold_start_ms,
            deprioritized_until: None,
            capacity_backoff_until: None,
            client_errors: ClientErrors::default(),
            last_error: None,
            restarts,
            counters,
            retired: false,
            disabled: false,
            forced: None,
            state_since: now,
            last_probe: None,
            unreachable: false,
            payment: None,
            payment_over_limit: false,
            ticket_params_invalid: false,
            payment_backoff: RefusalBackoff::default(),
            refresh: None,
            source: OfferSource::Token,
            details: None,
        };
        actor.publish();
        actor
    }

    /// Starts the pair disabled (draining) when its orchestrator is disabled.
    pub(crate) fn with_enabled(mut self, enabled: bool) -> Self {
        self.disabled = !enabled;
        self.publish();
        self
    }

    /// The orchestrator's label, for log lines (`orchestrator_label`, absent when unset).
    fn label(&self) -> Option<Label> {
        self.view.read().orchestrator.label.clone()
    }

    /// Feeds the pair from `source` instead of its own token probes.
    pub(crate) fn fed_by(mut self, source: OfferSource) -> Self {
        self.source = source;
        self
    }

    /// The cell this actor publishes into.
    pub(crate) fn view(&self) -> SharedView {
        self.view.clone()
    }

    /// The inbox fast-path answers are deposited into.
    pub(crate) fn tally(&self) -> Arc<Tally> {
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
        if self.warmth.is_cold() {
            limit = limit.min(self.policy.cold_start_concurrency);
        }
        self.slots.set_limit(limit);
        // Kept in the view only (the actor's size counts 10,000 times): the orchestrator's URL
        // and label, and the breaker's openings.
        let (orchestrator, breaker_opens) = (v.orchestrator.clone(), v.breaker_opens);
        *v = PairView {
            key: self.key.clone(),
            orchestrator,
            service_addr: self.service_addr.clone(),
            breaker: self.breaker.state(),
            breaker_level: self.breaker.level(),
            open_until: self.breaker.open_until(),
            open_until_short: self.breaker.open_until_for(Pool::Short),
            trials_used: self.breaker.trials_used(),
            permits: (self.breaker.permits(Pool::Ample), self.breaker.permits(Pool::Short)),
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
            breaker_opens,
            retired: self.retired,
            disabled: self.disabled,
            forced: self.forced.is_some(),
            forced_until: self.forced.flatten(),
            state_since: self.state_since,
            last_probe: self.last_probe,
            payment: self.payment.clone(),
            payment_over_limit: self.payment_over_limit,
            ticket_params_invalid: self.ticket_params_invalid,
            payment_backoff_until: self.payment_backoff.until_at(now),
            payment_backoff_level: self.payment_backoff.level(),
            unreachable: self.unreachable && !self.token_ok,
            node_unreachable: self.node_unreachable,
            refusal: self.refusal,
            payment_required: self.payment_required,
            over_ceiling: self.over_ceiling(),
            price_share: self.policy.price_share(price_per_unit, pixels_per_unit),
            warming: self.warmth.is_cold(),
            warmup_pending: self.warmth.awaiting_warmup(),
            deprioritized_until: self.deprioritized_until,
            capacity_backoff_until: self.capacity_backoff_until,
            client_errors: self.client_errors,
            details: self.details.clone(),
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
        self.view.read().orchestrator.url.clone()
    }

    fn note_error(&mut self, class: &str, message: String) {
        self.last_error = Some(Arc::new(LastError { class: class.to_string(), message, at_unix_ms: unix_ms_now() }));
    }

    fn on_transition(&mut self, t: Transition, cause: &str) {
        self.state_since = Instant::now();
        metrics::counter!(m::BREAKER_TRANSITIONS_TOTAL,
            "from" => t.from.as_str(), "to" => t.to.as_str(), "reason" => t.reason)
        .increment(1);
        match t.to {
            State::Open => {
                tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), from = t.from.as_str(), reason = t.reason, cause,
                level = self.breaker.level(),
                open_for_ms = self.breaker.open_until().map(|u| u.saturating_duration_since(Instant::now()).as_millis() as u64),
                "breaker opened")
            }
            _ => {
                tracing::info!(pair = %self.key, orchestrator_label = self.label().as_deref(), from = t.from.as_str(), to = t.to.as_str(), reason = t.reason, "breaker transition")
            }
        }
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
            tracing::debug!(pair = %self.key, orchestrator_label = self.label().as_deref(), dropped = before - self.leases.len(), "expired leases dropped");
            self.publish();
        }
    }
}

impl Actor for PairActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
        match self.source {
            _ if self.retired => {}
            OfferSource::Token => self.probe(ctx, true),
            // Started with its record applied; after a restart it asks for a fresh one.
            OfferSource::Discovery(_) if !self.probed => self.ask_for_offer(ctx),
            OfferSource::Discovery(_) => {}
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Retired, or restarting (counted again at its next probe).
        if std::mem::take(&mut self.counted_failing) {
            self.settings.failing_probes.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
        self.warmth.warmup_ended();
        // The scheduled drain died with the old incarnation's timers: the next deposit asks for
        // a drain again and it is scheduled anew (the samples survive in the shared tally).
        self.drain_scheduled = false;
        self.tally.unrequest();
        self.restarts += 1;
        metrics::counter!(m::ACTOR_RESTARTS_TOTAL, "actor" => "pair").increment(1);
        tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), restarts = self.restarts, "pair actor restarted by the supervisor");
        self.publish();
    }
}

//! Where a pair's offer comes from: the seam between the pair's health model and its
//! orchestrator's protocol.
//!
//! A BYOC pair probes `GET /process/token` on its own jittered timer ([`OfferSource::Token`],
//! `pair/token.rs`). A Live Runner pair, one per runner of an orchestrator, is fed by its
//! orchestrator's `GET /discovery`, fetched once for all of that orchestrator's runners by
//! the Live Runner discovery actor, which pushes each runner's record here ([`Discovered`]);
//! where a BYOC pair would probe again (a connect failure, a capacity refusal, a restart), a
//! Live Runner pair asks that actor to fetch its orchestrator again ([`Rediscover`]). Either
//! way the same fields move (service address, capacity, price, reachability) and the breaker,
//! latency, slots and price ceiling work the same.

use super::*;

/// Where a pair's offer comes from.
#[derive(Clone)]
pub(crate) enum OfferSource {
    /// Its own token probes.
    Token,
    /// Records pushed by discovery; re-probes are asked of this recipient.
    Discovery(Recipient<Rediscover>),
}

/// A discovery-fed pair asks for its orchestrator's discovery to be fetched again (its offer
/// is stale: a connect failure, a capacity refusal, a restart).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Rediscover {
    /// The pair asking.
    pub(crate) key: PairKey,
}

/// What a discovery record offers.
#[derive(Debug, Clone)]
pub(crate) struct DiscoveredOffer {
    /// Where work goes (the runner's URL at its orchestrator).
    pub(crate) url: Arc<str>,
    /// Free slots the record reports.
    pub(crate) available_capacity: i64,
    /// Its price as the pair publishes it, when priced.
    pub(crate) price: Option<Price>,
    /// Priced, and the gateway cannot pay there (no key and no remote signer).
    pub(crate) payment_required: bool,
    /// Its price cannot be used (unknown unit or currency): out with `price-unavailable`
    /// until the record changes.
    pub(crate) price_unusable: bool,
    /// A digest of everything but its capacity: a change ends a refusal.
    pub(crate) fingerprint: u64,
    /// What the admin API shows of the record (`runner` in the pair's report).
    pub(crate) details: Arc<serde_json::Value>,
}

/// Discovery could not give this pair a usable record.
#[derive(Debug, Clone)]
pub(crate) struct DiscoveryMiss {
    /// The orchestrator could not be reached (connect refused, time-out).
    pub(crate) unreachable: bool,
    /// ... by a refused connection (its container probably restarted).
    pub(crate) connect: bool,
    /// Why, for the pair's last error.
    pub(crate) message: String,
    /// The record last seen, if any (still shown).
    pub(crate) details: Option<Arc<serde_json::Value>>,
}

/// Discovery's word on this pair, with the pair's jobs in flight when the fetch started (the
/// orchestrator counted those in its figure).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Discovered {
    /// The record, or why there is none to use.
    pub(crate) offer: Result<DiscoveredOffer, DiscoveryMiss>,
    /// The pair's jobs in flight when the fetch left.
    pub(crate) inflight: u32,
}

impl Handler<Discovered> for PairActor {
    type Result = ();

    fn handle(&mut self, msg: Discovered, ctx: &mut Self::Context) {
        self.apply_discovered(msg);
        // What a token probe's timer does besides probing: lost leases, undelivered drains.
        self.sweep_leases();
        self.drain_tally(ctx);
        self.publish();
    }
}

impl PairActor {
    /// Starts the pair with a discovery record applied (so it is routable from its first
    /// publication).
    pub(crate) fn with_discovered(mut self, msg: Discovered) -> Self {
        self.apply_discovered(msg);
        self.publish();
        self
    }

    /// Applies a discovery record (or its absence); the caller publishes.
    pub(crate) fn apply_discovered(&mut self, msg: Discovered) {
        self.probed = true;
        self.last_probe = Some(Instant::now());
        self.node_unreachable = false;
        match msg.offer {
            Ok(o) => {
                self.details = Some(o.details.clone());
                self.payment = None;
                self.payment_over_limit = false;
                self.ticket_params_invalid = false;
                if o.payment_required && !self.payment_required {
                    tracing::warn!(pair = %self.key, "the runner is priced and the gateway cannot pay (no key, no remote signer); pair leaves rotation");
                }
                self.payment_required = o.payment_required;
                let price = o.price;
                self.offer_usable(
                    &o.url,
                    o.fingerprint,
                    Offer { available_capacity: o.available_capacity, price },
                    msg.inflight,
                );
                if o.price_unusable && self.refusal != Some(Refusal::PriceUnavailable) {
                    self.refusal = Some(Refusal::PriceUnavailable);
                    self.note_error("price-unavailable", "the runner's price_info cannot be paid (unknown unit or currency); out of rotation until its record changes".into());
                }
            }
            Err(miss) => {
                if miss.details.is_some() {
                    self.details = miss.details.clone();
                }
                self.offer_failed("discovery", miss.unreachable, miss.connect, miss.message);
            }
        }
    }

    /// Asks the offer's source for a fresh one: a token probe, or a discovery fetch.
    pub(super) fn ask_for_offer(&mut self, ctx: &mut Context<Self>) {
        match &self.source {
            OfferSource::Token => self.probe(ctx, false),
            OfferSource::Discovery(rediscover) => {
                if rediscover.try_send(Rediscover { key: self.key.clone() }).is_err() {
                    metrics::counter!(m::MAILBOX_ERRORS_TOTAL, "actor" => "runners").increment(1);
                }
            }
        }
    }
}

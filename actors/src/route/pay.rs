//! **Pay** (a step of the attempt, before the call): the `Livepeer-Payment` for a priced pair,
//! shared by every worker: the balance the gateway believes it holds per pair (credited with
//! the EV sent, debited `ceil(elapsed) x price` after each call, and re-synced to a new token's
//! `balance`, except to a lower one right after paying: see [`Ledger::sync`]), and the nonces
//! per ticket-params set.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::pair::{PairKey, PairView};
use crate::payment::nonces::SetId;
use crate::payment::{plan, wire, Limits, Nonces, PayError};
use crate::protocol::signer::Signer;

/// One pair's balance as the gateway sees it.
#[derive(Debug, Clone, Default)]
struct Ledger {
    /// The token balance it was last synced to.
    synced: i64,
    /// The balance now: synced, plus EV sent, minus debits (wei).
    balance: f64,
    /// Tickets sent there since start.
    tickets: u64,
    /// Their expected value (wei).
    ev_sent: f64,
    /// The ticket-params sets it paid against lately, newest last, at most [`RECENT_SETS`]:
    /// their nonces are remembered, every other set's are forgotten.
    sets: VecDeque<SetId>,
    /// When it last paid there.
    paid_at: Option<Instant>,
    /// The orchestrator refused a job for payment since: its next token's balance is the one
    /// to believe, whatever it says.
    refused: bool,
}

/// How long after a payment a token reporting less than the ledger holds is not believed.
/// Within it the gateway's own figure (what it paid, less what the jobs used) stands, unless
/// the orchestrator refuses a job for want of balance; after it, the token's word wins again
/// (go-livepeer's orchestrator forgets an idle sender's balance after 10 to 20 minutes, which is
/// the honest reason a balance drops under the gateway's figure).
const RESYNC_HOLD: Duration = Duration::from_secs(600);

/// Sets remembered per pair. go-livepeer's orchestrator hands out a new set with every token,
/// so only the current one is ever paid against again; a few more keep an orchestrator that
/// hands a set out again from reusing its nonces.
const RECENT_SETS: usize = 8;

impl Ledger {
    /// A fresh ledger, at the balance a token reported.
    fn new(balance: i64) -> Self {
        Self { synced: balance, balance: balance as f64, ..Self::default() }
    }

    /// Takes a token's `balance` into account at `now`. A new figure replaces the ledger's,
    /// unless it is lower and the gateway paid there within [`RESYNC_HOLD`] with no refusal
    /// since: an orchestrator that reports a fresh low balance with every token (a taker's
    /// lie, or a figure taken before the payment landed) would otherwise be paid again after
    /// each refresh.
    fn sync(&mut self, balance: i64, now: Instant) {
        if balance == self.synced && !self.refused {
            return;
        }
        self.synced = balance;
        let lower = (balance as f64) < self.balance;
        let just_paid = self.paid_at.is_some_and(|t| now.saturating_duration_since(t) < RESYNC_HOLD);
        if lower && just_paid && !self.refused {
            return;
        }
        self.balance = balance as f64;
        self.refused = false;
    }

    /// Notes that it paid against `set`, which becomes the newest (least recently used first
    /// out, so a set paid against again is never the one forgotten).
    fn paid_against(&mut self, set: &SetId) {
        match self.sets.iter().position(|s| s == set) {
            Some(i) => {
                if let Some(known) = self.sets.remove(i) {
                    self.sets.push_back(known);
                }
                return;
            }
            None => self.sets.push_back(set.clone()),
        }
        if self.sets.len() > RECENT_SETS {
            self.sets.pop_front();
        }
    }
}

/// Forgets the nonces of sets no pair paid against lately, once the sets remembered are twice
/// what the pairs can hold (amortised: the nonces would otherwise grow by one set per token
/// refresh of every paid pair, for as long as the gateway runs).
fn forget_stale_sets(nonces: &mut Nonces, ledgers: &HashMap<PairKey, Ledger>) {
    if nonces.sets() <= 2 * RECENT_SETS * ledgers.len() + 64 {
        return;
    }
    let live: HashSet<&SetId> = ledgers.values().flat_map(|l| l.sets.iter()).collect();
    nonces.retain(|set| live.contains(set));
}

/// A pair's payments as `GET /admin/pairs` shows them (`payment`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct PaymentReport {
    /// The balance the gateway believes it holds there (wei): the last token's, plus the EV
    /// sent since, minus `ceil(elapsed) x price` per job.
    pub(crate) balance_wei: f64,
    /// Tickets sent there since start.
    pub(crate) tickets_sent: u64,
    /// Their expected value (wei).
    pub(crate) ev_sent_wei: f64,
}

/// The payment state of the gateway.
#[derive(Debug, Default)]
pub struct Payments {
    /// The operator's spend limits.
    pub(crate) limits: Limits,
    state: Mutex<(Nonces, HashMap<PairKey, Ledger>)>,
    /// EV paid per capability over the last hour, for the spend cap (oldest first).
    spent: Mutex<HashMap<crate::capability::Capability, VecDeque<(Instant, f64)>>>,
}

/// The window of the spend cap.
const HOUR: Duration = Duration::from_secs(3600);

/// A pair's price per second, from its view.
fn per_second(v: &PairView) -> f64 {
    v.price_per_unit.max(0) as f64 / v.pixels_per_unit.max(1) as f64
}

impl Payments {
    /// Payments under `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits, state: Mutex::default(), spent: Mutex::default() }
    }

    /// The `Livepeer-Payment` value for one attempt at the pair `v` of a job of
    /// `timeout_seconds`, or `None` when none is needed (free, the balance covers it, or the
    /// signer cannot pay).
    pub(crate) fn prepare(
        &self,
        v: &PairView,
        label: &crate::metrics::CapabilityLabel,
        timeout_seconds: u64,
        signer: &dyn Signer,
    ) -> Result<Option<String>, PayError> {
        let Some(sender) = signer.payer().filter(|_| v.price_per_unit > 0) else {
            return Ok(None);
        };
        let terms = v.payment.as_deref().ok_or(PayError::NoTicketParams)?;
        let now = Instant::now();
        let mut state = self.state.lock();
        let (nonces, ledgers) = &mut *state;
        let ledger = ledgers.entry(v.key.clone()).or_insert_with(|| Ledger::new(terms.balance));
        ledger.sync(terms.balance, now);
        let price = (v.price_per_unit, v.pixels_per_unit.max(1));
        let p = plan(price, ledger.balance as i64, timeout_seconds, Some(&terms.params), &self.limits)?;
        if p.tickets == 0 {
            return Ok(None);
        }
        let set = SetId::of(&terms.params);
        let Some(header) = self.issue_locked(
            nonces,
            &v.key.capability,
            label.value(),
            &terms.params,
            (p.tickets, p.ev),
            price,
            (sender, self.limits.max_ev_per_capability_hour),
            signer,
            now,
        )?
        else {
            return Ok(None);
        };
        ledger.balance += p.ev;
        ledger.tickets += u64::from(p.tickets);
        ledger.ev_sent += p.ev;
        ledger.paid_against(&set);
        ledger.paid_at = Some(now);
        forget_stale_sets(nonces, ledgers);
        Ok(Some(header))
    }

    /// Signs `count` tickets worth `ev` wei in all against `params` for `capability` (counted
    /// against its hourly spend cap, metrics labelled `label`): the `Livepeer-Payment` value
    /// naming `price` as the expected price. `None` when the signer cannot sign. The step every
    /// payment shares (BYOC jobs here, Live Runner sessions and calls through [`Self::issue`]).
    #[allow(clippy::too_many_arguments)]
    fn issue_locked(
        &self,
        nonces: &mut Nonces,
        capability: &crate::capability::Capability,
        label: metrics::SharedString,
        params: &crate::payment::TicketParams,
        (count, ev): (u32, f64),
        price: (i64, i64),
        (sender, spend_cap): ([u8; 20], Option<f64>),
        signer: &dyn Signer,
        now: Instant,
    ) -> Result<Option<String>, PayError> {
        if let Some(cap) = spend_cap {
            let mut spent = self.spent.lock();
            let window = spent.entry(capability.clone()).or_default();
            while window.front().is_some_and(|(t, _)| now.duration_since(*t) > HOUR) {
                window.pop_front();
            }
            let total: f64 = window.iter().map(|(_, ev)| ev).sum();
            if total + ev > cap {
                return Err(PayError::SpendCapReached { needed: ev, cap });
            }
            window.push_back((now, ev));
        }
        let set = SetId::of(params);
        let range = nonces.take(&set, count)?;
        let mut tickets = Vec::with_capacity(count as usize);
        for nonce in range {
            let flat = params.ticket(sender, nonce).flatten();
            let Some(sig) = signer.sign_ticket(&flat) else { return Ok(None) };
            tickets.push((nonce, sig));
        }
        metrics::counter!(crate::metrics::TICKETS_SENT_TOTAL, "capability" => label.clone())
            .increment(u64::from(count));
        metrics::counter!(crate::metrics::TICKET_EV_SENT_WEI_TOTAL, "capability" => label).increment(ev as u64);
        Ok(Some(wire::payment_header(params, sender, &tickets, price)))
    }

    /// Tickets worth at least `cost` wei against `params` (checked against the operator's
    /// limits), counted against `capability`'s hourly spend cap (`spend_cap`, else the global
    /// one): the `Livepeer-Payment` value and the EV sent, or `None` when nothing is owed or the
    /// signer cannot pay. Live Runner pays this way: its balance is per session, kept by the
    /// session, not by a pair's ledger; so does the simulator's remote signer.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &self,
        capability: &crate::capability::Capability,
        spend_cap: Option<f64>,
        label: &str,
        params: &crate::payment::TicketParams,
        cost: f64,
        price: (i64, i64),
        signer: &dyn Signer,
    ) -> Result<Option<(String, f64)>, PayError> {
        let Some(sender) = signer.payer() else { return Ok(None) };
        if cost <= 0.0 {
            return Ok(None);
        }
        crate::payment::check_params(params, &self.limits)?;
        let ev = params.ev();
        // go-livepeer's signer refuses more than 100 tickets at once.
        let count = crate::payment::ticket_count_for_cost(cost, ev, 100).clamp(1, 100);
        let total = f64::from(count) * ev;
        if total > self.limits.max_total_ev {
            return Err(PayError::TotalEvOverLimit { needed: total, limit: self.limits.max_total_ev });
        }
        let mut state = self.state.lock();
        let header = self.issue_locked(
            &mut state.0,
            capability,
            metrics::SharedString::from(label.to_string()),
            params,
            (count, total),
            price,
            (sender, spend_cap.or(self.limits.max_ev_per_capability_hour)),
            signer,
            Instant::now(),
        )?;
        Ok(header.map(|h| (h, total)))
    }

    /// Debits a call that took `seconds` at the pair `v` (`ceil(seconds) x price`).
    pub(crate) fn debit(&self, v: &PairView, seconds: f64) {
        if v.price_per_unit <= 0 {
            return;
        }
        if let Some(l) = self.state.lock().1.get_mut(&v.key) {
            l.balance -= seconds.ceil().max(1.0) * per_second(v);
        }
    }

    /// The orchestrator of `key` refused a job for payment (`Insufficient balance`, or the
    /// tickets): its next token's balance is believed, even right after a payment.
    pub(crate) fn refused(&self, key: &PairKey) {
        if let Some(l) = self.state.lock().1.get_mut(key) {
            l.refused = true;
        }
    }

    /// What the gateway paid at `key`, once it has paid there.
    pub fn report(&self, key: &PairKey) -> Option<PaymentReport> {
        self.state.lock().1.get(key).map(|l| PaymentReport {
            balance_wei: l.balance.round(),
            tickets_sent: l.tickets,
            ev_sent_wei: l.ev_sent.round(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;
    use crate::orchestrator::OrchestratorId;
    use crate::payment::nonces::tests::set;
    use crate::payment::TicketParams;

    /// Pair `pair`'s set of token refresh `round`.
    fn round_set(round: u32, pair: u8) -> SetId {
        let params = TicketParams {
            recipient: vec![pair; 20],
            recipient_rand_hash: [&round.to_be_bytes()[..], &[pair; 28][..]].concat(),
            ..TicketParams::default()
        };
        SetId::of(&params)
    }

    fn key(i: usize) -> PairKey {
        PairKey {
            orchestrator: OrchestratorId(format!("orch-{i}").into()),
            capability: Capability::new("depth").expect("name"),
        }
    }

    #[test]
    fn a_pair_remembers_its_recent_sets_only() {
        let mut l = Ledger::default();
        for i in 0..20u8 {
            l.paid_against(&set(1, i));
            l.paid_against(&set(1, i));
        }
        assert_eq!(l.sets.len(), RECENT_SETS);
        assert_eq!(l.sets.back(), Some(&set(1, 19)));
        // A set paid against again becomes the newest: the oldest other one goes first.
        l.paid_against(&set(1, 12));
        l.paid_against(&set(1, 20));
        assert!(l.sets.contains(&set(1, 12)), "reused, kept: {:?}", l.sets.len());
        assert!(!l.sets.contains(&set(1, 13)), "the least recently used went");
    }

    #[test]
    fn a_lower_balance_right_after_paying_is_believed_only_after_a_refusal_or_the_hold() {
        let t = Instant::now();
        let mut l = Ledger::new(0);
        l.balance = 180e9;
        l.paid_at = Some(t);
        // A token right after the payment says 5e9: the ledger keeps what it paid.
        l.sync(5_000_000_000, t + Duration::from_secs(1));
        assert_eq!(l.balance, 180e9);
        // A higher figure is the orchestrator's word at any time.
        l.sync(200_000_000_000, t + Duration::from_secs(2));
        assert_eq!(l.balance, 200e9);
        l.sync(7_000_000_000, t + Duration::from_secs(3));
        assert_eq!(l.balance, 200e9);
        // A refusal for payment proves the orchestrator's figure: the next token's is believed,
        // even unchanged.
        l.refused = true;
        l.sync(7_000_000_000, t + Duration::from_secs(4));
        assert_eq!(l.balance, 7e9);
        assert!(!l.refused);
        // Past the hold, a lower figure is believed again (an idle balance the orchestrator
        // forgot).
        l.balance = 100e9;
        l.sync(1_000_000_000, t + RESYNC_HOLD);
        assert_eq!(l.balance, 1e9);
        // Never paid: a new figure is always believed.
        let mut fresh = Ledger::new(50);
        fresh.sync(10, t);
        assert_eq!(fresh.balance, 10.0);
    }

    #[test]
    fn nonces_of_sets_no_pair_holds_are_forgotten_and_live_ones_continue() {
        let mut nonces = Nonces::default();
        let mut ledgers: HashMap<PairKey, Ledger> = HashMap::new();
        // Two pairs, each paying against a new set per token refresh, for a long time.
        for round in 0..10_000u32 {
            for i in 0..2 {
                let set = round_set(round, i as u8);
                assert_eq!(nonces.take(&set, 1), Ok(1..=1), "a new set starts at 1");
                ledgers.entry(key(i)).or_default().paid_against(&set);
                forget_stale_sets(&mut nonces, &ledgers);
                assert!(nonces.sets() <= 2 * RECENT_SETS * 2 + 64 + 1, "bounded: {}", nonces.sets());
            }
        }
        // The sets still held continue where they were.
        assert_eq!(nonces.take(&round_set(9_999, 0), 1), Ok(2..=2));
    }
}

//! **Pay** (a step of the attempt, before the call): the `Livepeer-Payment` for a priced pair,
//! shared by every worker: the balance the gateway believes it holds per pair (re-synced to
//! each new token's `balance`, credited with the EV sent, debited `ceil(elapsed) x price` after
//! each call), and the nonces per ticket-params set.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::pair::{PairKey, PairView};
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
    /// The ticket-params sets (`recipient_rand_hash`) it paid against lately, newest last, at
    /// most [`RECENT_SETS`]: their nonces are remembered, every other set's are forgotten.
    sets: VecDeque<Vec<u8>>,
}

/// Sets remembered per pair. go-livepeer's orchestrator hands out a new set with every token,
/// so only the current one is ever paid against again; a few more keep an orchestrator that
/// hands a set out again from reusing its nonces.
const RECENT_SETS: usize = 8;

impl Ledger {
    /// Notes that it paid against `set`, which becomes the newest (least recently used first
    /// out, so a set paid against again is never the one forgotten).
    fn paid_against(&mut self, set: &[u8]) {
        match self.sets.iter().position(|s| s == set) {
            Some(i) => {
                if let Some(known) = self.sets.remove(i) {
                    self.sets.push_back(known);
                }
                return;
            }
            None => self.sets.push_back(set.to_vec()),
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
    let live: HashSet<&[u8]> = ledgers.values().flat_map(|l| l.sets.iter().map(Vec::as_slice)).collect();
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
        timeout_seconds: u64,
        signer: &dyn Signer,
    ) -> Result<Option<String>, PayError> {
        let Some(sender) = signer.payer().filter(|_| v.price_per_unit > 0) else {
            return Ok(None);
        };
        let terms = v.payment.as_deref().ok_or(PayError::NoTicketParams)?;
        let mut state = self.state.lock();
        let (nonces, ledgers) = &mut *state;
        let ledger = ledgers.entry(v.key.clone()).or_insert(Ledger {
            synced: terms.balance,
            balance: terms.balance as f64,
            ..Ledger::default()
        });
        if ledger.synced != terms.balance {
            // A new token: the orchestrator's word is the balance.
            ledger.synced = terms.balance;
            ledger.balance = terms.balance as f64;
        }
        let price = (v.price_per_unit, v.pixels_per_unit.max(1));
        let p = plan(price, ledger.balance as i64, timeout_seconds, Some(&terms.params), &self.limits)?;
        if p.tickets == 0 {
            return Ok(None);
        }
        if let Some(cap) = self.limits.max_ev_per_capability_hour {
            let now = Instant::now();
            let mut spent = self.spent.lock();
            let window = spent.entry(v.key.capability.clone()).or_default();
            while window.front().is_some_and(|(t, _)| now.duration_since(*t) > HOUR) {
                window.pop_front();
            }
            let total: f64 = window.iter().map(|(_, ev)| ev).sum();
            if total + p.ev > cap {
                return Err(PayError::SpendCapReached { needed: p.ev, cap });
            }
            window.push_back((now, p.ev));
        }
        let range = nonces.take(&terms.params.recipient_rand_hash, p.tickets)?;
        let mut tickets = Vec::with_capacity(p.tickets as usize);
        for nonce in range {
            let flat = terms.params.ticket(sender, nonce).flatten();
            let Some(sig) = signer.sign_ticket(&flat) else { return Ok(None) };
            tickets.push((nonce, sig));
        }
        ledger.balance += p.ev;
        ledger.tickets += u64::from(p.tickets);
        ledger.ev_sent += p.ev;
        ledger.paid_against(&terms.params.recipient_rand_hash);
        forget_stale_sets(nonces, ledgers);
        let cap = v.key.capability.to_string();
        metrics::counter!(crate::metrics::TICKETS_SENT_TOTAL, "capability" => cap.clone())
            .increment(u64::from(p.tickets));
        metrics::counter!(crate::metrics::TICKET_EV_SENT_WEI_TOTAL, "capability" => cap).increment(p.ev as u64);
        Ok(Some(wire::payment_header(&terms.params, sender, &tickets, price)))
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
            l.paid_against(&[i; 32]);
            l.paid_against(&[i; 32]);
        }
        assert_eq!(l.sets.len(), RECENT_SETS);
        assert_eq!(l.sets.back().map(Vec::as_slice), Some(&[19u8; 32][..]));
        // A set paid against again becomes the newest: the oldest other one goes first.
        l.paid_against(&[12; 32]);
        l.paid_against(&[20; 32]);
        assert!(l.sets.contains(&vec![12u8; 32]), "reused, kept: {:?}", l.sets.len());
        assert!(!l.sets.contains(&vec![13u8; 32]), "the least recently used went");
    }

    #[test]
    fn nonces_of_sets_no_pair_holds_are_forgotten_and_live_ones_continue() {
        let mut nonces = Nonces::default();
        let mut ledgers: HashMap<PairKey, Ledger> = HashMap::new();
        // Two pairs, each paying against a new set per token refresh, for a long time.
        for round in 0..10_000u32 {
            for i in 0..2 {
                let set = [&round.to_be_bytes()[..], &[i as u8; 28][..]].concat();
                assert_eq!(nonces.take(&set, 1), Ok(1..=1), "a new set starts at 1");
                ledgers.entry(key(i)).or_default().paid_against(&set);
                forget_stale_sets(&mut nonces, &ledgers);
                assert!(nonces.sets() <= 2 * RECENT_SETS * 2 + 64 + 1, "bounded: {}", nonces.sets());
            }
        }
        // The sets still held continue where they were.
        let last = [&9_999u32.to_be_bytes()[..], &[0u8; 28][..]].concat();
        assert_eq!(nonces.take(&last, 1), Ok(2..=2));
    }
}

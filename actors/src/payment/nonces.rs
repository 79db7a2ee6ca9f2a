//! Nonces per ticket-params set: never reused, at most 600 per set (an orchestrator refuses
//! more). A set is named by its recipient *and* its `recipient_rand_hash`: two orchestrators
//! handing out the same hash (by accident, or one copying the other's) must not share, and
//! so exhaust, one counter.

use std::collections::HashMap;

use super::count::MAX_TICKETS;
use super::plan::PayError;
use super::ticket::TicketParams;

/// One ticket-params set: the orchestrator's address and the hash its nonces are counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SetId {
    recipient: Vec<u8>,
    rand_hash: Vec<u8>,
}

impl SetId {
    /// The set `params` belong to.
    pub(crate) fn of(params: &TicketParams) -> Self {
        Self { recipient: params.recipient.clone(), rand_hash: params.recipient_rand_hash.clone() }
    }
}

/// The counters. The gateway caches tokens, so one set serves many payments.
#[derive(Debug, Default, Clone)]
pub struct Nonces {
    last: HashMap<SetId, u32>,
}

impl Nonces {
    /// The next `n` nonces of `set`, taken (never handed out again).
    pub(crate) fn take(&mut self, set: &SetId, n: u32) -> Result<std::ops::RangeInclusive<u32>, PayError> {
        let last = self.last.get(set).copied().unwrap_or(0);
        let end = last.checked_add(n).filter(|e| *e <= MAX_TICKETS).ok_or(PayError::NoncesExhausted)?;
        self.last.insert(set.clone(), end);
        Ok(last + 1..=end)
    }

    /// How many sets it remembers.
    pub(crate) fn sets(&self) -> usize {
        self.last.len()
    }

    /// Forgets the sets not in `live` (their params expired or were replaced), bounding memory.
    pub(crate) fn retain(&mut self, live: impl Fn(&SetId) -> bool) {
        self.last.retain(|k, _| live(k));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The set of `recipient` (one byte repeated) and `hash` (one byte repeated).
    pub(crate) fn set(recipient: u8, hash: u8) -> SetId {
        SetId { recipient: vec![recipient; 20], rand_hash: vec![hash; 32] }
    }

    #[test]
    fn nonces_are_never_reused_and_stop_at_600_per_set() {
        let mut n = Nonces::default();
        assert_eq!(n.take(&set(1, 1), 3), Ok(1..=3));
        assert_eq!(n.take(&set(1, 1), 2), Ok(4..=5));
        assert_eq!(n.take(&set(1, 2), 1), Ok(1..=1), "another set starts at 1");
        assert_eq!(n.take(&set(1, 1), 595), Ok(6..=600));
        assert_eq!(n.take(&set(1, 1), 1), Err(PayError::NoncesExhausted));
        // Forgetting one set keeps the other's sequence.
        n.retain(|k| *k == set(1, 2));
        assert_eq!(n.sets(), 1);
        assert_eq!(n.take(&set(1, 2), 1), Ok(2..=2));
    }

    #[test]
    fn two_recipients_with_the_same_hash_keep_their_own_counters() {
        // Keyed by the hash alone, the second orchestrator's set was the first's: its 600
        // nonces were spent by the other, and every payment to it was refused.
        let mut n = Nonces::default();
        assert_eq!(n.take(&set(1, 9), 600), Ok(1..=600));
        assert_eq!(n.take(&set(2, 9), 1), Ok(1..=1));
        assert_eq!(n.take(&set(1, 9), 1), Err(PayError::NoncesExhausted));
    }
}

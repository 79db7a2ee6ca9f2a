//! The back-off of a pair that took a payment and then refused the job: an orchestrator that
//! takes tickets and answers `400 Insufficient balance` (or refuses the tickets it took) would
//! otherwise be paid again with every token it issues, since each brings fresh params and a new
//! balance. After a payment followed by a refusal, the pair stays out for a time that doubles
//! with each such refusal until a job is answered; new tokens (params, balance, price) change
//! nothing. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// The back-off state of one pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RefusalBackoff {
    /// Refusals after a payment since the pair last answered a job (0: none).
    level: u32,
    /// When the pair may take a job again.
    until: Option<Instant>,
}

impl RefusalBackoff {
    /// A payment refusal at `now` (`paid`: the refused call carried a payment). It backs the
    /// pair off when a payment went before it with no job answered since (this call's, or an
    /// earlier one's, which is what `level > 0` remembers), for `base x 2^(level - 1)`, at most
    /// `max`; returns how long. A refusal with no payment behind it is not a taker's doing
    /// (no key, a ledger behind the orchestrator's): `None`, the caller handles it as any
    /// other refusal.
    pub(crate) fn refused(&mut self, paid: bool, now: Instant, base: Duration, max: Duration) -> Option<Duration> {
        if !paid && self.level == 0 {
            return None;
        }
        self.level = self.level.saturating_add(1);
        let hold = base.saturating_mul(1u32 << (self.level - 1).min(20)).min(max);
        self.until = now.checked_add(hold);
        Some(hold)
    }

    /// The pair answered a job: whatever it was paid served.
    pub(crate) fn answered(&mut self) {
        *self = Self::default();
    }

    /// Until when it holds the pair out, seen at `now`.
    pub(crate) fn until_at(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|t| now < *t)
    }

    /// Refusals after a payment since the last answered job.
    pub(crate) fn level(&self) -> u32 {
        self.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn a_refusal_after_a_payment_backs_off_doubling_until_a_job_is_answered() {
        let t = Instant::now();
        let mut b = RefusalBackoff::default();
        assert_eq!(b.refused(false, t, BASE, MAX), None, "no payment behind it: not a taker's");
        assert_eq!(b.until_at(t), None);
        assert_eq!(b.refused(true, t, BASE, MAX), Some(BASE));
        assert_eq!(b.until_at(t), Some(t + BASE));
        assert_eq!(b.until_at(t + BASE), None, "over at its end");
        // After the hold, an unpaid refusal (the ledger thought it had credit) still counts:
        // the payment before it never served.
        assert_eq!(b.refused(false, t + BASE, BASE, MAX), Some(2 * BASE));
        assert_eq!(b.refused(true, t, BASE, MAX), Some(4 * BASE));
        for _ in 0..40 {
            b.refused(true, t, BASE, MAX);
        }
        assert_eq!(b.until_at(t), Some(t + MAX), "capped");
        b.answered();
        assert_eq!((b.level(), b.until_at(t)), (0, None));
        assert_eq!(b.refused(false, t, BASE, MAX), None);
    }
}

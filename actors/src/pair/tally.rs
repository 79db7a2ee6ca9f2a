//! A pair's accounting inbox for calls admitted on the fast path and answered without a
//! failure (a success or a relayed 4xx).
//!
//! The router deposits each such answer here instead of messaging the pair actor per job:
//! on a 2-core machine a cross-thread wake-up per job cost more than everything else the
//! gateway does for it. The first deposit after a drain asks the actor to drain (one
//! message); the actor drains a little later, so a busy pair is accounted in batches. Only the
//! actor applies the samples to the pair's state. Failures never come here: they are recorded
//! with an awaited [`Record`](crate::pair::Record) so the breaker sees them before the job's
//! next attempt.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::outcome::Outcome;

/// Samples kept at most between two drains; past it, samples are dropped (and counted) rather
/// than grow memory when the actor thread cannot keep up.
pub(crate) const TALLY_CAPACITY: usize = 4096;

/// One answered call.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `Success` or `ClientError`.
    pub(crate) outcome: Outcome,
    /// How long the call took.
    pub(crate) elapsed: Duration,
    /// When it ended.
    pub(crate) at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    samples: Vec<Sample>,
    /// A drain was asked for and has not happened yet.
    requested: bool,
    dropped: u64,
}

/// The inbox. Shared by the pair actor (which drains it) and the router (which fills it).
#[derive(Debug, Default)]
pub struct Tally {
    inner: Mutex<Inner>,
}

/// What a deposit asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deposit {
    /// A drain is already on its way.
    Queued,
    /// The caller must ask the actor to drain (and call [`Tally::unrequest`] if it cannot).
    RequestDrain,
    /// The inbox was full: the sample was dropped.
    Dropped,
}

impl Tally {
    /// Deposits one answered call.
    pub(crate) fn deposit(&self, sample: Sample) -> Deposit {
        let mut inner = self.inner.lock();
        if inner.samples.len() >= TALLY_CAPACITY {
            inner.dropped += 1;
            return Deposit::Dropped;
        }
        inner.samples.push(sample);
        if inner.requested {
            Deposit::Queued
        } else {
            inner.requested = true;
            Deposit::RequestDrain
        }
    }

    /// The drain request could not be delivered (mailbox full): the next deposit asks again.
    pub(crate) fn unrequest(&self) {
        self.inner.lock().requested = false;
    }

    /// Takes every sample (and the count of dropped ones) and clears the request, so the next
    /// deposit asks for a new drain.
    pub(crate) fn take(&self) -> (Vec<Sample>, u64) {
        let mut inner = self.inner.lock();
        inner.requested = false;
        (std::mem::take(&mut inner.samples), std::mem::take(&mut inner.dropped))
    }

    /// Whether samples await a drain.
    pub(crate) fn is_pending(&self) -> bool {
        !self.inner.lock().samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample { outcome: Outcome::Success, elapsed: Duration::from_millis(3), at: Instant::now() }
    }

    #[test]
    fn one_drain_request_per_batch_and_bounded() {
        let t = Tally::default();
        assert!(!t.is_pending());
        assert_eq!(t.deposit(sample()), Deposit::RequestDrain);
        assert_eq!(t.deposit(sample()), Deposit::Queued);
        assert!(t.is_pending());
        let (s, dropped) = t.take();
        assert_eq!((s.len(), dropped), (2, 0));
        assert!(!t.is_pending());
        // After a drain the next deposit asks again.
        assert_eq!(t.deposit(sample()), Deposit::RequestDrain);
        // A lost request is re-asked by the next deposit.
        t.unrequest();
        assert_eq!(t.deposit(sample()), Deposit::RequestDrain);
        for _ in 2..TALLY_CAPACITY {
            t.deposit(sample());
        }
        assert_eq!(t.deposit(sample()), Deposit::Dropped);
        let (s, dropped) = t.take();
        assert_eq!((s.len(), dropped), (TALLY_CAPACITY, 1));
    }
}

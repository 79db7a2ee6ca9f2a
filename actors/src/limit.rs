//! A pair's concurrency limit: how many jobs the gateway may have in flight on one
//! orchestrator for one capability.
//!
//! The ceiling comes from the orchestrator's token: the `available_capacity` it reports plus
//! the gateway's own jobs in flight there when the token was read (what it can take from this
//! gateway). Below the ceiling the limit adapts as Netflix's concurrency-limits AIMD and TCP's
//! congestion avoidance do: a capacity refusal (503/429) means other gateways hold the slots
//! the token promised, so the limit drops to what was in flight when the refusal came
//! (multiplicative decrease, never below one); each answer raises it by `1 / limit` (about one
//! slot per limit's worth of answers), back up to the ceiling.
//!
//! Pure and clock-free; the pair actor owns one and publishes [`ConcurrencyLimit::current`].

/// Share of the limit kept after a refusal, at most (the in-flight count at the refusal can
/// lower it further).
pub(crate) const BACKOFF_RATIO: f64 = 0.5;

/// The limit of one pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ConcurrencyLimit {
    /// Current limit, fractional so that additive increase can be gradual.
    limit: f64,
    /// The token's figure; `None` before the first token.
    ceiling: Option<u32>,
}

impl Default for ConcurrencyLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl ConcurrencyLimit {
    /// A limit that has seen no token yet (zero slots).
    pub(crate) fn new() -> Self {
        Self { limit: 0.0, ceiling: None }
    }

    /// Jobs that may be in flight now.
    pub(crate) fn current(&self) -> u32 {
        self.limit.floor() as u32
    }

    /// The token's figure, if a token was seen.
    pub(crate) fn ceiling(&self) -> Option<u32> {
        self.ceiling
    }

    /// A token arrived: the orchestrator reports `available` free slots while the gateway has
    /// `inflight` jobs there. The first token sets the limit to its figure; later ones only cap
    /// it (a refusal's evidence is not overruled by a token read before the refusal mattered;
    /// answers raise the limit back).
    pub(crate) fn on_token(&mut self, available: i64, inflight: u32) {
        let ceiling = u32::try_from(available.max(0)).unwrap_or(u32::MAX).saturating_add(inflight);
        let first = self.ceiling.replace(ceiling).is_none();
        let ceiling = f64::from(ceiling);
        self.limit = if first {
            ceiling
        } else if self.limit < 1.0 {
            // The pair had no room at all: start again from one slot.
            ceiling.min(1.0)
        } else {
            self.limit.min(ceiling)
        };
    }

    /// The orchestrator refused a job for capacity while the gateway had `inflight` other jobs
    /// there: at most that many fit now.
    pub(crate) fn on_refusal(&mut self, inflight: u32) {
        self.limit = (self.limit * BACKOFF_RATIO).floor().min(f64::from(inflight)).max(1.0);
    }

    /// A job was answered: one more slot per `limit` answers, up to the ceiling.
    pub(crate) fn on_answer(&mut self) {
        let Some(ceiling) = self.ceiling else { return };
        let ceiling = f64::from(ceiling);
        if self.limit < ceiling {
            self.limit = (self.limit + 1.0 / self.limit.max(1.0)).min(ceiling);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_token_sets_the_limit_and_counts_the_gateways_own_jobs() {
        let mut l = ConcurrencyLimit::new();
        assert_eq!(l.current(), 0);
        l.on_token(4, 2);
        assert_eq!((l.current(), l.ceiling()), (6, Some(6)));
        l.on_token(-3, 0);
        assert_eq!(l.current(), 0, "no capacity reported and nothing in flight: no slot");
        l.on_token(3, 0);
        assert_eq!(l.current(), 1, "after an empty token the limit starts again from one slot");
    }

    #[test]
    fn a_refusal_drops_to_what_was_in_flight_and_answers_climb_back() {
        let mut l = ConcurrencyLimit::new();
        l.on_token(6, 0);
        l.on_refusal(5);
        assert_eq!(l.current(), 3, "halved (6 -> 3), below the 5 in flight");
        l.on_refusal(1);
        assert_eq!(l.current(), 1);
        l.on_refusal(0);
        assert_eq!(l.current(), 1, "never below one slot");
        let mut answers = 0;
        while l.current() < 6 {
            l.on_answer();
            answers += 1;
            assert!(answers < 100, "the limit must recover");
        }
        assert!(answers > 5, "additive, not a jump: {answers}");
        for _ in 0..100 {
            l.on_answer();
        }
        assert_eq!(l.current(), 6, "capped by the token's figure");
    }

    #[test]
    fn a_later_token_caps_but_does_not_raise_the_limit() {
        let mut l = ConcurrencyLimit::new();
        l.on_token(8, 0);
        l.on_refusal(2);
        assert_eq!(l.current(), 2);
        l.on_token(8, 0);
        assert_eq!(l.current(), 2, "a token does not overrule a refusal");
        l.on_token(0, 1);
        assert_eq!(l.current(), 1, "but it caps the limit");
    }

    proptest! {
        #[test]
        fn the_limit_stays_within_its_bounds(
            events in proptest::collection::vec((0u8..3, -5i64..50, 0u32..60), 1..200)
        ) {
            let mut l = ConcurrencyLimit::new();
            for (kind, available, inflight) in events {
                let before = l.current();
                match kind {
                    0 => l.on_token(available, inflight),
                    1 => l.on_refusal(inflight),
                    _ => l.on_answer(),
                }
                if let Some(c) = l.ceiling() {
                    prop_assert!(l.current() <= c.max(1), "over the ceiling");
                }
                match kind {
                    1 => {
                        prop_assert!(l.current() >= 1, "a refusal leaves one slot");
                        prop_assert!(l.current() <= inflight.max(1), "at most what was in flight");
                    }
                    2 => prop_assert!(l.current() <= before + 1, "additive: one slot at a time"),
                    _ => {}
                }
            }
        }
    }
}

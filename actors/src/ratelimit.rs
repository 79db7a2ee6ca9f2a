//! A token bucket: `rate` tokens a second, at most `burst` saved up. The supervisor spends it
//! on discovery probes: for capability names nobody has offered yet (a discovery probes every
//! orchestrator), so that jobs naming random capabilities cannot make the gateway probe its
//! whole pool at the rate they arrive, and on surveys of who offers what.
//!
//! Pure and clock-free: callers pass the current instant.

use std::time::{Duration, Instant};

/// The bucket.
#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimit {
    /// `rate` tokens a second (at least a thousandth), starting full.
    pub(crate) fn new(rate: f64) -> Self {
        Self { rate: rate.max(0.001), tokens: f64::INFINITY, last: None }
    }

    /// Spends `cost` tokens from a bucket holding at most `burst` (so that one spend of `burst`
    /// always fits an empty-enough bucket eventually): `Ok` when they were there, otherwise
    /// how long until they will be (nothing is spent).
    pub(crate) fn try_spend(&mut self, cost: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        self.refill(burst.max(cost), now);
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost - self.tokens) / self.rate))
        }
    }

    /// Whole tokens held now, in a bucket holding at most `burst` (for a caller that spends
    /// what it can with [`RateLimit::spend`]).
    pub(crate) fn available(&mut self, burst: f64, now: Instant) -> u64 {
        self.refill(burst, now);
        self.tokens.max(0.0).floor() as u64
    }

    /// Spends `cost` tokens (at most what is held).
    pub(crate) fn spend(&mut self, cost: f64) {
        self.tokens = (self.tokens - cost).max(0.0);
    }

    fn refill(&mut self, burst: f64, now: Instant) {
        let elapsed = self.last.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.tokens = (self.tokens + elapsed * self.rate).min(burst);
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_what_it_holds_and_says_when_more_comes() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(2.0);
        assert_eq!(r.try_spend(3.0, 3.0, t0), Ok(()), "starts full");
        assert_eq!(r.try_spend(3.0, 3.0, t0), Err(Duration::from_millis(1500)));
        assert_eq!(r.try_spend(3.0, 3.0, t0 + Duration::from_millis(1500)), Ok(()));
        // A cost over the burst still fits once the bucket has refilled that far.
        let mut r = RateLimit::new(10.0);
        assert_eq!(r.try_spend(50.0, 5.0, t0), Ok(()));
        assert!(r.try_spend(1.0, 5.0, t0).is_err());
    }

    #[test]
    fn available_counts_whole_tokens_and_spend_takes_them() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(4.0);
        assert_eq!(r.available(10.0, t0), 10, "starts full, up to the burst");
        r.spend(7.0);
        assert_eq!(r.available(10.0, t0), 3);
        assert_eq!(r.available(10.0, t0 + Duration::from_millis(500)), 5, "two more in half a second");
        r.spend(50.0);
        assert_eq!(r.available(10.0, t0 + Duration::from_millis(500)), 0, "never below empty");
    }
}

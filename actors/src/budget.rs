//! Retry budget (Envoy `retry_budget`, tower `TpsBudget`, Linkerd): retries allowed in a
//! sliding window are a share of the requests seen in it, plus a floor per second, so that
//! when an orchestrator pool degrades, retries cannot multiply the load on the survivors.
//!
//! Pure and clock-free: callers pass the current instant. Shared by all HTTP workers through
//! [`RetryBudgets`], one budget per capability.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::capability::Capability;

/// Slots of the window (the window is `SLOTS` x `slot` long).
const SLOTS: usize = 10;

/// One capability's budget.
#[derive(Debug)]
pub(crate) struct Budget {
    slot: Duration,
    start: Option<Instant>,
    /// Index of the slot `start` falls in, counted from the first use.
    head: u64,
    requests: [u32; SLOTS],
    retries: [u32; SLOTS],
}

impl Budget {
    /// A budget over a window of `window` (split into ten slots).
    pub(crate) fn new(window: Duration) -> Self {
        Self { slot: window / SLOTS as u32, start: None, head: 0, requests: [0; SLOTS], retries: [0; SLOTS] }
    }

    fn advance(&mut self, now: Instant) -> usize {
        let start = *self.start.get_or_insert(now);
        let idx = (now.saturating_duration_since(start).as_nanos() / self.slot.as_nanos().max(1)) as u64;
        if idx > self.head {
            let steps = (idx - self.head).min(SLOTS as u64);
            for k in 1..=steps {
                let i = ((self.head + k) % SLOTS as u64) as usize;
                self.requests[i] = 0;
                self.retries[i] = 0;
            }
            self.head = idx;
        }
        (self.head % SLOTS as u64) as usize
    }

    /// Counts one request (first attempt).
    pub(crate) fn deposit(&mut self, now: Instant) {
        let i = self.advance(now);
        self.requests[i] = self.requests[i].saturating_add(1);
    }

    /// Takes one retry if the budget allows it: retries in the window stay at or below
    /// `percent x requests + min_per_sec x window seconds`.
    pub(crate) fn withdraw(&mut self, now: Instant, percent: f64, min_per_sec: u32) -> bool {
        let i = self.advance(now);
        let requests: u64 = self.requests.iter().map(|&n| u64::from(n)).sum();
        let retries: u64 = self.retries.iter().map(|&n| u64::from(n)).sum();
        let window_secs = (self.slot * SLOTS as u32).as_secs_f64();
        let allowed = percent * requests as f64 + f64::from(min_per_sec) * window_secs;
        if (retries as f64) < allowed.floor() {
            self.retries[i] = self.retries[i].saturating_add(1);
            true
        } else {
            false
        }
    }
}

/// The budgets of all capabilities, shared by the HTTP workers.
#[derive(Debug, Clone)]
pub struct RetryBudgets {
    window: Duration,
    inner: Arc<Mutex<HashMap<Capability, Budget>>>,
}

impl Default for RetryBudgets {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl RetryBudgets {
    /// Budgets over a window of `window`.
    pub(crate) fn new(window: Duration) -> Self {
        Self { window, inner: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Counts a request for `capability` (only offered capabilities reach here, so the map
    /// stays bounded by what orchestrators serve).
    pub(crate) fn deposit(&self, capability: &Capability, now: Instant) {
        let mut m = self.inner.lock();
        m.entry(capability.clone()).or_insert_with(|| Budget::new(self.window)).deposit(now);
    }

    /// Asks for one retry of a `capability` job.
    pub(crate) fn withdraw(&self, capability: &Capability, now: Instant, percent: f64, min_per_sec: u32) -> bool {
        let mut m = self.inner.lock();
        m.entry(capability.clone()).or_insert_with(|| Budget::new(self.window)).withdraw(now, percent, min_per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_allows_retries_without_traffic_then_stops() {
        let t0 = Instant::now();
        let mut b = Budget::new(Duration::from_secs(10));
        // Floor: 1/s over 10 s = 10 retries.
        let granted = (0..15).filter(|_| b.withdraw(t0, 0.2, 1)).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn share_of_requests_adds_to_the_floor() {
        let t0 = Instant::now();
        let mut b = Budget::new(Duration::from_secs(10));
        for _ in 0..100 {
            b.deposit(t0);
        }
        // 20 % of 100 + 0 floor.
        let granted = (0..50).filter(|_| b.withdraw(t0, 0.2, 0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_window_slides() {
        let t0 = Instant::now();
        let mut b = Budget::new(Duration::from_secs(10));
        assert_eq!((0..5).filter(|_| b.withdraw(t0, 0.0, 0)).count(), 0, "no floor, no requests: no retries");
        for _ in 0..10 {
            b.deposit(t0);
        }
        assert!(b.withdraw(t0, 0.1, 0));
        assert!(!b.withdraw(t0, 0.1, 0));
        // 11 s later the old requests and retries have left the window.
        let later = t0 + Duration::from_secs(11);
        assert!(!b.withdraw(later, 0.1, 0));
        for _ in 0..10 {
            b.deposit(later);
        }
        assert!(b.withdraw(later, 0.1, 0));
        // A long idle gap clears everything.
        let much_later = later + Duration::from_secs(3600);
        assert!(!b.withdraw(much_later, 0.1, 0));
    }
}

//! A rate limit on a repeated warning: under overload the same WARN line (a job refused with
//! `queue-full`, ...) would be written once per job, 1,300 to 1,600 lines per gateway in 15 s
//! of overload. Each kind of line is written at most once per interval; the next one written
//! says how many were left out in between, so no refusal goes uncounted.
//!
//! Kinds are `&'static str` (the stable error codes), so the map is bounded by the code list.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The limit: one line per kind per `every`.
#[derive(Debug)]
pub(crate) struct WarnLimit {
    every: Duration,
    kinds: Mutex<HashMap<&'static str, Kind>>,
}

#[derive(Debug, Clone, Copy)]
struct Kind {
    last: Instant,
    suppressed: u64,
}

impl WarnLimit {
    /// At most one line per kind per `every`.
    pub(crate) fn new(every: Duration) -> Self {
        Self { every, kinds: Mutex::new(HashMap::new()) }
    }

    /// Whether a line of `kind` may be written at `now`: `Some(n)` with the lines of that kind
    /// left out since the last one written, or `None` when this one is to be left out.
    pub(crate) fn check(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock();
        match kinds.get_mut(kind) {
            Some(k) if now.saturating_duration_since(k.last) < self.every => {
                k.suppressed += 1;
                None
            }
            Some(k) => {
                let n = std::mem::take(&mut k.suppressed);
                k.last = now;
                Some(n)
            }
            None => {
                kinds.insert(kind, Kind { last: now, suppressed: 0 });
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_and_the_next_counts_those_left_out() {
        let w = WarnLimit::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(w.check("queue-full", t0), Some(0));
        for i in 1..=1500 {
            assert_eq!(w.check("queue-full", t0 + Duration::from_micros(i * 500)), None);
        }
        assert_eq!(w.check("retry-timeout", t0), Some(0), "kinds are limited apart");
        assert_eq!(w.check("queue-full", t0 + Duration::from_secs(1)), Some(1500));
        assert_eq!(w.check("queue-full", t0 + Duration::from_secs(3)), Some(0));
    }
}

//! Rate-limited log lines: a line that clients can cause at any rate (a refused job, a full
//! queue) is logged at most `burst` times per interval and kind; the lines past that are
//! counted, and the first line let through in a later interval is preceded by one summary
//! line saying how many were suppressed. The log stays readable and its size bounded however
//! fast clients send, while the metrics still count every event.
//!
//! ```
//! use std::time::Duration;
//! use byoc_actors::log_limit::LogLimit;
//!
//! static JOB_FAILED: LogLimit = LogLimit::new("job failed", 10, Duration::from_secs(1));
//! # let code = "queue-full";
//! if JOB_FAILED.allow(code) {
//!     tracing::warn!(code, "job failed: ...");
//! }
//! ```
//!
//! The count of the last busy interval is reported with the next line of the same kind; until
//! then it shows only in the metrics.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A log line kind limited to `burst` lines per `interval` for each key (a fixed set of
/// `&'static str`s, such as error codes, so that one flooding key does not silence the others).
/// Usable as a `static`.
#[derive(Debug)]
pub struct LogLimit {
    what: &'static str,
    burst: u32,
    interval: Duration,
    windows: Mutex<Option<HashMap<&'static str, Window>>>,
}

impl LogLimit {
    /// At most `burst` lines of `what` (as the summary line names it) per `interval` and key.
    pub const fn new(what: &'static str, burst: u32, interval: Duration) -> Self {
        Self { what, burst, interval, windows: Mutex::new(None) }
    }

    /// Whether a line of this kind under `key` may be logged now. When lines were suppressed
    /// since the last one logged, a summary line with their count is logged first.
    pub fn allow(&self, key: &'static str) -> bool {
        let now = Instant::now();
        let verdict = {
            let mut windows = self.windows.lock();
            let w = windows.get_or_insert_with(HashMap::new).entry(key).or_insert_with(|| Window::new(now));
            w.admit(now, self.burst, self.interval)
        };
        match verdict {
            Verdict::Log { suppressed: 0, .. } => true,
            Verdict::Log { suppressed, since } => {
                tracing::warn!(
                    kind = self.what,
                    key,
                    suppressed,
                    "{suppressed} more '{}' lines ({key}) were not logged in the last {:.0} s (at most {} per {:?})",
                    self.what,
                    since.as_secs_f64().ceil(),
                    self.burst,
                    self.interval
                );
                true
            }
            Verdict::Suppress => false,
        }
    }
}

/// What [`Window::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Log the line; `suppressed` lines were not logged over the `since` before it.
    Log { suppressed: u64, since: Duration },
    /// Do not log it (counted).
    Suppress,
}

/// One key's current interval: pure, the caller passes the clock.
#[derive(Debug, Clone)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
    /// When the first suppressed line of the current run was counted.
    suppressed_since: Option<Instant>,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self { started: now, logged: 0, suppressed: 0, suppressed_since: None }
    }

    fn admit(&mut self, now: Instant, burst: u32, interval: Duration) -> Verdict {
        if now.saturating_duration_since(self.started) >= interval {
            self.started = now;
            self.logged = 0;
        }
        if self.logged >= burst {
            self.suppressed += 1;
            self.suppressed_since.get_or_insert(now);
            return Verdict::Suppress;
        }
        self.logged += 1;
        let since = self.suppressed_since.take().map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        Verdict::Log { suppressed: std::mem::take(&mut self.suppressed), since }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_per_interval_then_a_count_of_what_was_left_out() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        for _ in 0..3 {
            assert_eq!(w.admit(t0, 3, SEC), Verdict::Log { suppressed: 0, since: Duration::ZERO });
        }
        for i in 0..1000 {
            assert_eq!(w.admit(t0 + Duration::from_micros(i), 3, SEC), Verdict::Suppress);
        }
        // Next interval: the first line carries the count, the others are plain again.
        let t1 = t0 + SEC;
        assert_eq!(w.admit(t1, 3, SEC), Verdict::Log { suppressed: 1000, since: SEC });
        assert_eq!(w.admit(t1, 3, SEC), Verdict::Log { suppressed: 0, since: Duration::ZERO });
    }

    #[test]
    fn lines_under_the_burst_are_never_suppressed() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        for i in 0..100u64 {
            // Two lines a second against a burst of 2 per second.
            let at = t0 + Duration::from_millis(500 * i);
            assert!(matches!(w.admit(at, 2, SEC), Verdict::Log { suppressed: 0, .. }), "line {i}");
        }
    }

    #[test]
    fn keys_are_limited_separately() {
        static L: LogLimit = LogLimit::new("test line", 1, Duration::from_secs(3600));
        assert!(L.allow("a"));
        assert!(!L.allow("a"));
        assert!(L.allow("b"), "another key has its own burst");
        assert!(!L.allow("a"));
    }
}

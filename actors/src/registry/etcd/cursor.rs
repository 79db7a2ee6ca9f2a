//! Where the registry watch resumes: a plain state machine over revisions and failures.
//!
//! After a break the watch resumes from the revision after the last one it saw, so no change
//! is missed and none is applied twice. If etcd has compacted that revision away (the replica
//! was cut off for longer than etcd keeps history), or the replica started from its local
//! cache, resuming is impossible: the replica resyncs instead (reads the whole registry at one
//! revision, applies the difference, watches from the next revision). Failed attempts back off,
//! doubling from [`FIRST_RETRY`] to [`MAX_RETRY`], so a returning etcd is picked up within a
//! second.

use std::time::Duration;

/// First wait after a failure.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(1);

/// What the watch does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Watch from this revision (inclusive).
    Resume(i64),
    /// Read the whole registry, then watch from the revision after the read.
    Resync,
}

/// The cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchCursor {
    /// The last etcd revision seen (a load's or a watch response's header).
    seen: i64,
    /// Resuming from `seen` is impossible or unsafe.
    resync: bool,
    /// Attempts failed in a row.
    failures: u32,
}

impl WatchCursor {
    /// After a load from etcd at `revision`.
    pub(crate) fn loaded(revision: i64) -> Self {
        Self { seen: revision, resync: false, failures: 0 }
    }

    /// After a start from the local cache: the first thing to do is a resync.
    pub(crate) fn from_cache() -> Self {
        Self { seen: 0, resync: true, failures: 0 }
    }

    /// What to do now.
    pub(crate) fn next(&self) -> Next {
        if self.resync {
            Next::Resync
        } else {
            Next::Resume(self.seen + 1)
        }
    }

    /// The watch is established: failures are forgotten.
    pub(crate) fn established(&mut self) {
        self.failures = 0;
    }

    /// A watch response (or a read) at `revision` was applied.
    pub(crate) fn saw(&mut self, revision: i64) {
        self.seen = self.seen.max(revision);
    }

    /// etcd no longer has the history from where the watch would resume.
    pub(crate) fn compacted(&mut self) {
        self.resync = true;
    }

    /// A resync read the registry at `revision`.
    pub(crate) fn resynced(&mut self, revision: i64) {
        self.seen = revision;
        self.resync = false;
    }

    /// An attempt failed: how long to wait before the next one.
    pub(crate) fn failed(&mut self) -> Duration {
        let wait = FIRST_RETRY.saturating_mul(1 << self.failures.min(10)).min(MAX_RETRY);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// The last revision seen.
    pub(crate) fn seen(&self) -> i64 {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_break_resumes_after_the_last_revision_seen() {
        let mut c = WatchCursor::loaded(10);
        assert_eq!(c.next(), Next::Resume(11));
        c.saw(14);
        c.saw(12);
        assert_eq!(c.next(), Next::Resume(15), "never backwards");
        assert_eq!(c.failed(), FIRST_RETRY);
        assert_eq!(c.next(), Next::Resume(15), "a failure does not move the cursor");
    }

    #[test]
    fn a_compaction_or_a_start_from_cache_means_a_resync() {
        let mut c = WatchCursor::loaded(10);
        c.compacted();
        assert_eq!(c.next(), Next::Resync);
        c.resynced(40);
        assert_eq!(c.next(), Next::Resume(41));
        let mut cached = WatchCursor::from_cache();
        assert_eq!(cached.next(), Next::Resync);
        cached.resynced(3);
        assert_eq!((cached.next(), cached.seen()), (Next::Resume(4), 3));
    }

    #[test]
    fn failures_back_off_to_a_second_and_reset_once_established() {
        let mut c = WatchCursor::loaded(1);
        let waits: Vec<Duration> = (0..8).map(|_| c.failed()).collect();
        assert_eq!(waits[0], Duration::from_millis(100));
        assert_eq!(waits[1], Duration::from_millis(200));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().expect("some"), MAX_RETRY);
        c.established();
        assert_eq!(c.failed(), FIRST_RETRY);
    }
}

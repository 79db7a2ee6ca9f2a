//! A pair's slots: its jobs in flight against its concurrency limit, shared lock-free by the
//! pair actor (which sets the limit) and every HTTP worker (which take and free slots).
//!
//! A slot is taken with a compare-and-swap against the limit, so two workers can never put
//! more jobs on an orchestrator than it has room for, whatever they read a moment before. A
//! freed slot wakes the next job waiting in the capability's queue.
//!
//! The slots also keep the pair's in-flight evidence: since when it has had jobs in flight
//! without any answer coming back ([`Slots::unanswered`]). For one job that is its age; for
//! several, the time since the last answer. Selection reads it (`score::in_flight_latency`):
//! a pair whose jobs have stopped coming back is slow now, before any of its slow answers
//! arrive.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::queue::WaitQueue;

/// The process's reference instant for the timestamps kept in atomics.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds from the process's reference instant to `t`.
pub(crate) fn millis_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_millis() as u64
}

/// Milliseconds since the process's reference instant, wrapping every ~49 days: for comparing
/// short intervals with `wrapping_sub` where a full `Instant` costs too much room.
pub(crate) fn millis_now() -> u32 {
    millis_since_epoch(Instant::now()) as u32
}

/// One pair's slots.
#[derive(Debug, Default)]
pub struct Slots {
    /// Jobs in flight (each holds a [`SlotGuard`]).
    inflight: AtomicU32,
    /// Jobs allowed in flight now (set by the pair actor).
    limit: AtomicU32,
    /// When a job was last sent here to keep the pair measured (ms since [`epoch`], 0: never).
    explored_at: AtomicU64,
    /// Since when jobs have been in flight here without an answer (ms since [`epoch`]): set
    /// when a job arrives at an idle pair and at every answer.
    quiet_since: AtomicU64,
    /// The capability's queue, once the pair is on its board.
    queue: OnceLock<Arc<WaitQueue>>,
}

impl Slots {
    /// Takes a slot if one is free.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<SlotGuard> {
        let limit = self.limit.load(Ordering::Acquire);
        let before =
            self.inflight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).ok()?;
        if before == 0 {
            // An idle pair: its silence starts with this job.
            self.quiet_since.store(millis_since_epoch(Instant::now()), Ordering::Release);
        }
        Some(SlotGuard(self.clone()))
    }

    /// An answer came back from the pair (whatever it said): its jobs are moving.
    pub(crate) fn answered(&self) {
        self.quiet_since.store(millis_since_epoch(Instant::now()), Ordering::Release);
    }

    /// How long the pair has had jobs in flight with no answer coming back, at `now` (`None`:
    /// nothing in flight).
    pub(crate) fn unanswered(&self, now: Instant) -> Option<Duration> {
        if self.inflight() == 0 {
            return None;
        }
        let since = self.quiet_since.load(Ordering::Acquire);
        Some(Duration::from_millis(millis_since_epoch(now).saturating_sub(since)))
    }

    /// How short the capability's pool is (ample until the pair is on a board).
    pub(crate) fn pool(&self, now: Instant) -> crate::breaker::Pool {
        self.queue.get().map_or(crate::breaker::Pool::Ample, |q| q.pool(now))
    }

    /// Jobs in flight.
    pub(crate) fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Acquire)
    }

    /// Jobs allowed in flight.
    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    /// Whether a slot is free now.
    pub(crate) fn has_free(&self) -> bool {
        self.inflight() < self.limit()
    }

    /// Sets the limit (pair actor only); a raised limit wakes a waiting job.
    pub fn set_limit(&self, limit: u32) {
        let before = self.limit.swap(limit, Ordering::AcqRel);
        if limit > before {
            self.wake_waiter();
        }
    }

    /// Wakes the job at the head of the capability's queue if a slot is free.
    pub(crate) fn wake_waiter(&self) {
        if let Some(q) = self.queue.get() {
            if q.waiting() > 0 && self.has_free() {
                q.wake_one();
            }
        }
    }

    /// Connects the pair to its capability's queue (done once, when it joins the board).
    pub(crate) fn attach(&self, queue: Arc<WaitQueue>) {
        let _ = self.queue.set(queue);
    }

    /// Claims this pair's exploration turn: `true` (once per `interval`, across all workers)
    /// when no job was sent here to keep it measured within `interval` before `now`.
    pub(crate) fn claim_exploration(&self, now: Instant, interval: Duration) -> bool {
        let now_ms = millis_since_epoch(now).max(1);
        let last = self.explored_at.load(Ordering::Acquire);
        if last != 0 && now_ms.saturating_sub(last) < interval.as_millis() as u64 {
            return false;
        }
        self.explored_at.compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// One job in flight on a pair; frees its slot when dropped (also when the job is cancelled).
#[derive(Debug)]
pub struct SlotGuard(Arc<Slots>);

impl SlotGuard {
    /// The job's pair answered ([`Slots::answered`]).
    pub(crate) fn answered(&self) {
        self.0.answered();
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
        if let Some(q) = self.0.queue.get() {
            q.wake_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;

    #[test]
    fn slots_are_taken_up_to_the_limit_and_freed_on_drop() {
        let s = Arc::new(Slots::default());
        assert!(s.try_acquire().is_none(), "no limit yet: no slot");
        s.set_limit(2);
        let a = s.try_acquire().expect("free");
        let b = s.try_acquire().expect("free");
        assert!(s.try_acquire().is_none());
        assert_eq!(s.inflight(), 2);
        drop(a);
        assert!(s.has_free());
        s.set_limit(1);
        assert!(s.try_acquire().is_none(), "a lowered limit holds new jobs until enough finish");
        drop(b);
        assert!(s.try_acquire().is_some());
    }

    #[test]
    fn concurrent_takers_never_exceed_the_limit() {
        let s = Arc::new(Slots::default());
        s.set_limit(5);
        let held: Vec<SlotGuard> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..8).map(|_| scope.spawn(|| (0..50).filter_map(|_| s.try_acquire()).collect::<Vec<_>>())).collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        });
        assert_eq!(held.len(), 5);
        assert_eq!(s.inflight(), 5);
    }

    #[actix_rt::test]
    async fn a_freed_slot_wakes_the_head_of_the_queue() {
        let q = Arc::new(WaitQueue::new(&crate::metrics::CapabilityLabel::offered(
            &Capability::new("depth").expect("valid"),
        )));
        let s = Arc::new(Slots::default());
        s.attach(q.clone());
        s.set_limit(1);
        let held = s.try_acquire().expect("free");
        let mut t = q.join(4, false, 0).expect("room");
        drop(held);
        assert_eq!(
            t.wait(Instant::now() + Duration::from_secs(5)).await,
            crate::queue::Wait::Woken,
            "woken by the release"
        );
    }

    #[test]
    fn the_silence_of_a_pair_runs_from_its_first_job_or_last_answer_while_jobs_are_in_flight() {
        let s = Arc::new(Slots::default());
        s.set_limit(4);
        assert_eq!(s.unanswered(Instant::now()), None, "idle");
        let a = s.try_acquire().expect("free");
        let later = Instant::now() + Duration::from_secs(2);
        assert!(s.unanswered(later) >= Some(Duration::from_millis(1900)), "one job: its age");
        let _b = s.try_acquire().expect("free");
        s.answered();
        drop(a);
        assert!(s.unanswered(later) <= Some(Duration::from_millis(2100)));
        assert!(s.unanswered(Instant::now()) < Some(Duration::from_millis(500)), "an answer resets it");
    }

    #[test]
    fn exploration_is_claimed_once_per_interval() {
        let s = Slots::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        assert!(s.claim_exploration(t0, every));
        assert!(!s.claim_exploration(t0 + Duration::from_secs(1), every));
        assert!(s.claim_exploration(t0 + Duration::from_secs(11), every));
    }
}

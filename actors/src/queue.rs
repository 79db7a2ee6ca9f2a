//! A capability's wait queue. A job that finds every routable pair of its capability at its
//! concurrency limit waits here, first in first out, until a slot frees, as HAProxy queues
//! requests behind a server's `maxconn`; past the queue's depth or the job's own wait bound it
//! gets a 503 with a `Retry-After` estimated from how fast the queue drains.
//!
//! Waking is an event, never polling: whoever frees a slot (a call ending, a pair's limit
//! growing, a pair coming back into rotation) wakes the job at the head. A woken job that gets
//! a slot wakes the next one in turn, since more slots may have freed at once; one that finds
//! none after all goes back to the head. Every wake therefore either places a job or leaves the
//! queue as it was, and no free slot is left unused while jobs wait.
//!
//! Memory is bounded by the depth, and each waiting job already holds one of the gateway's
//! in-flight job places (`limits.max_inflight_jobs`), which bounds the bodies they hold.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::capability::Capability;
use crate::metrics as m;

/// Dispatch instants kept to estimate the drain rate.
const DRAIN_SAMPLES: usize = 32;
/// Bounds of the `Retry-After` a full queue answers with.
const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// Counters of one queue since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct QueueCounts {
    /// Jobs that had to wait.
    pub(crate) queued: u64,
    /// Waiting jobs that got a slot.
    pub(crate) dispatched: u64,
    /// Waiting jobs whose wait bound passed first (answered 503).
    pub(crate) timed_out: u64,
    /// Jobs turned away because the queue was at its depth (answered 503).
    pub(crate) rejected: u64,
    /// Waiting jobs that left for another reason (the client went away, or no pair could take
    /// the job any more).
    pub(crate) abandoned: u64,
    /// The deepest the queue has been.
    pub(crate) max_depth: usize,
    /// Total time dispatched jobs waited, in milliseconds.
    pub(crate) wait_ms_total: u64,
}

/// What the admin API shows of a queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct QueueReport {
    /// Jobs waiting now.
    pub(crate) depth: usize,
    /// Jobs taken from the queue per second, over its last dispatches (`None` until known).
    pub(crate) drain_per_sec: Option<f64>,
    /// Mean wait of dispatched jobs, in milliseconds.
    pub(crate) mean_wait_ms: Option<f64>,
    /// Counters since start.
    pub(crate) counts: QueueCounts,
}

/// The queue was at its depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull {
    /// Jobs waiting.
    pub(crate) depth: usize,
    /// When to come back, from the drain rate.
    pub(crate) retry_after: Duration,
}

struct Inner {
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
    next_id: u64,
    /// The last dispatch instants (drain rate).
    dispatches: VecDeque<Instant>,
    counts: QueueCounts,
}

/// Metric handles, registered once per queue.
struct Metrics {
    depth: metrics::Gauge,
    wait: metrics::Histogram,
    dispatched: metrics::Counter,
    timed_out: metrics::Counter,
    rejected: metrics::Counter,
    abandoned: metrics::Counter,
}

/// One capability's queue. Shared by the jobs waiting in it and the pairs whose slots free up.
pub(crate) struct WaitQueue {
    /// Jobs waiting; read without the lock by every slot release.
    waiting: AtomicUsize,
    inner: Mutex<Inner>,
    metrics: Metrics,
}

impl std::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitQueue").field("waiting", &self.waiting()).finish()
    }
}

impl WaitQueue {
    /// An empty queue for `capability` (its metrics carry the name).
    pub(crate) fn new(capability: &Capability) -> Self {
        let c = capability.to_string();
        let outcome =
            |o: &'static str| metrics::counter!(m::QUEUE_OUTCOMES_TOTAL, "capability" => c.clone(), "outcome" => o);
        Self {
            waiting: AtomicUsize::new(0),
            inner: Mutex::new(Inner {
                waiters: VecDeque::new(),
                next_id: 0,
                dispatches: VecDeque::new(),
                counts: QueueCounts::default(),
            }),
            metrics: Metrics {
                depth: metrics::gauge!(m::QUEUE_DEPTH, "capability" => c.clone()),
                wait: metrics::histogram!(m::QUEUE_WAIT_SECONDS, "capability" => c.clone()),
                dispatched: outcome("dispatched"),
                timed_out: outcome("timeout"),
                rejected: outcome("full"),
                abandoned: outcome("abandoned"),
            },
        }
    }

    /// Jobs waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Joins the queue: at the back, or at the front for a job that already waited or failed
    /// over (it is the older job). Refused when `max_depth` jobs wait already.
    pub(crate) fn join(self: &Arc<Self>, max_depth: usize, front: bool) -> Result<Ticket, QueueFull> {
        let mut inner = self.inner.lock();
        if inner.waiters.len() >= max_depth {
            inner.counts.rejected += 1;
            self.metrics.rejected.increment(1);
            let depth = inner.waiters.len();
            let retry_after = retry_after(&inner.dispatches, depth);
            return Err(QueueFull { depth, retry_after });
        }
        inner.counts.queued += 1;
        let rx = Self::push(&mut inner, front);
        let id = inner.next_id - 1;
        self.after_change(&mut inner);
        Ok(Ticket { queue: self.clone(), id, rx, joined: Instant::now(), state: TicketState::Queued })
    }

    fn push(inner: &mut Inner, front: bool) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let id = inner.next_id;
        inner.next_id += 1;
        if front {
            inner.waiters.push_front((id, tx));
        } else {
            inner.waiters.push_back((id, tx));
        }
        rx
    }

    fn after_change(&self, inner: &mut Inner) {
        let depth = inner.waiters.len();
        inner.counts.max_depth = inner.counts.max_depth.max(depth);
        self.waiting.store(depth, Ordering::Release);
        self.metrics.depth.set(depth as f64);
    }

    /// Wakes the job at the head, if any: a slot may have freed. Cheap when nobody waits.
    pub(crate) fn wake_one(&self) {
        if self.waiting() == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        while let Some((_, tx)) = inner.waiters.pop_front() {
            // A waiter whose job has gone removes itself under this lock, so a failed send
            // only happens in a race with that removal; the next one is woken instead.
            if tx.send(()).is_ok() {
                break;
            }
        }
        self.after_change(&mut inner);
    }

    fn remove(&self, id: u64) -> bool {
        let mut inner = self.inner.lock();
        let before = inner.waiters.len();
        inner.waiters.retain(|(i, _)| *i != id);
        let removed = inner.waiters.len() != before;
        self.after_change(&mut inner);
        removed
    }

    /// How long a client turned away now should wait before retrying: the time the queue takes
    /// to drain its current depth at its recent rate, between 1 and 60 s.
    pub(crate) fn retry_after(&self) -> Duration {
        let inner = self.inner.lock();
        retry_after(&inner.dispatches, inner.waiters.len())
    }

    /// Depth, drain rate and counters.
    pub(crate) fn report(&self) -> QueueReport {
        let inner = self.inner.lock();
        let c = inner.counts;
        QueueReport {
            depth: inner.waiters.len(),
            drain_per_sec: drain_rate(&inner.dispatches),
            mean_wait_ms: (c.dispatched > 0).then(|| c.wait_ms_total as f64 / c.dispatched as f64),
            counts: c,
        }
    }
}

fn drain_rate(dispatches: &VecDeque<Instant>) -> Option<f64> {
    let (first, last) = (dispatches.front()?, dispatches.back()?);
    let span = last.saturating_duration_since(*first).as_secs_f64();
    (dispatches.len() >= 2 && span > 0.0).then(|| (dispatches.len() - 1) as f64 / span)
}

fn retry_after(dispatches: &VecDeque<Instant>, depth: usize) -> Duration {
    match drain_rate(dispatches) {
        Some(rate) => {
            Duration::from_secs_f64(((depth + 1) as f64 / rate).ceil()).clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX)
        }
        None => RETRY_AFTER_MIN,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TicketState {
    /// In the queue, not woken.
    Queued,
    /// Woken and not yet placed or gone back.
    Woken,
    /// Placed, or left for good (accounted).
    Left,
}

/// A job's place in a [`WaitQueue`]. Dropped while waiting (the client went away), it leaves
/// the queue; dropped after a wake it did not use, it passes the wake on.
pub(crate) struct Ticket {
    queue: Arc<WaitQueue>,
    id: u64,
    rx: oneshot::Receiver<()>,
    joined: Instant,
    state: TicketState,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).field("state", &self.state).finish()
    }
}

impl Ticket {
    /// Waits to be woken, at most until `until`. `true` when woken (a slot may be free),
    /// `false` when `until` passed first.
    pub(crate) async fn wait(&mut self, until: Instant) -> bool {
        if self.state != TicketState::Queued {
            return true;
        }
        let woken = match tokio::time::timeout_at(until.into(), &mut self.rx).await {
            Ok(_) => true,
            // The deadline and a wake can cross: a wake already sent counts.
            Err(_) => self.rx.try_recv().is_ok(),
        };
        if woken {
            self.state = TicketState::Woken;
        }
        woken
    }

    /// Whether the job was woken and has not used the wake yet.
    pub(crate) fn is_woken(&self) -> bool {
        self.state == TicketState::Woken
    }

    /// Woken, but no slot was free after all: back to the head of the queue (whatever its
    /// depth: the job already had its place).
    pub(crate) fn requeue(&mut self) {
        let mut inner = self.queue.inner.lock();
        if self.state == TicketState::Queued {
            return;
        }
        self.rx = WaitQueue::push(&mut inner, true);
        self.id = inner.next_id - 1;
        self.state = TicketState::Queued;
        self.queue.after_change(&mut inner);
    }

    /// The job got a slot: it leaves the queue, and the next job is woken, since more slots
    /// may be free.
    pub(crate) fn dispatched(mut self) {
        self.leave();
        let waited = self.joined.elapsed();
        {
            let mut inner = self.queue.inner.lock();
            inner.counts.dispatched += 1;
            inner.counts.wait_ms_total += waited.as_millis() as u64;
            if inner.dispatches.len() >= DRAIN_SAMPLES {
                inner.dispatches.pop_front();
            }
            inner.dispatches.push_back(Instant::now());
        }
        self.queue.metrics.dispatched.increment(1);
        self.queue.metrics.wait.record(waited.as_secs_f64());
        self.state = TicketState::Left;
        self.queue.wake_one();
    }

    /// The job leaves without a slot: its wait bound passed (`timed_out`) or no pair can take
    /// it any more. A wake it held is passed on.
    pub(crate) fn give_up(mut self, timed_out: bool) {
        {
            let mut inner = self.queue.inner.lock();
            if timed_out {
                inner.counts.timed_out += 1;
            } else {
                inner.counts.abandoned += 1;
            }
        }
        if timed_out { &self.queue.metrics.timed_out } else { &self.queue.metrics.abandoned }.increment(1);
        self.leave();
    }

    /// Out of the queue; a wake not used goes to the next job.
    fn leave(&mut self) {
        match std::mem::replace(&mut self.state, TicketState::Left) {
            TicketState::Queued => {
                if !self.queue.remove(self.id) {
                    // Woken between the last check and now: pass it on.
                    self.queue.wake_one();
                }
            }
            TicketState::Woken => self.queue.wake_one(),
            TicketState::Left => {}
        }
    }

    /// How long the job has been waiting.
    pub(crate) fn waited(&self) -> Duration {
        self.joined.elapsed()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.state != TicketState::Left {
            self.queue.inner.lock().counts.abandoned += 1;
            self.queue.metrics.abandoned.increment(1);
            self.leave();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Arc<WaitQueue> {
        Arc::new(WaitQueue::new(&Capability::new("depth").expect("valid")))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(20)
    }

    #[actix_rt::test]
    async fn first_in_first_out_and_the_depth_is_bounded() {
        let q = queue();
        let mut a = q.join(2, false).expect("room");
        let mut b = q.join(2, false).expect("room");
        let full = q.join(2, false).expect_err("at depth");
        assert_eq!((full.depth, full.retry_after), (2, RETRY_AFTER_MIN));
        assert_eq!(q.waiting(), 2);
        q.wake_one();
        assert!(a.wait(soon()).await, "the head is woken first");
        assert!(!b.wait(soon()).await, "one wake, one job");
        a.dispatched();
        // The dispatched job passed the wake on.
        assert!(b.wait(soon()).await);
        b.dispatched();
        assert_eq!(q.waiting(), 0);
        let r = q.report();
        assert_eq!((r.counts.queued, r.counts.dispatched, r.counts.rejected), (2, 2, 1));
    }

    #[actix_rt::test]
    async fn a_job_that_finds_no_slot_goes_back_to_the_head() {
        let q = queue();
        let mut a = q.join(8, false).expect("room");
        let mut b = q.join(8, false).expect("room");
        q.wake_one();
        assert!(a.wait(soon()).await);
        a.requeue();
        q.wake_one();
        assert!(a.wait(soon()).await, "a kept its place ahead of b");
        assert!(!b.wait(soon()).await);
        drop(a);
        // a dropped a wake it did not use: b gets it.
        assert!(b.wait(soon()).await);
    }

    #[actix_rt::test]
    async fn leaving_removes_the_job_and_counts_why() {
        let q = queue();
        let mut a = q.join(8, false).expect("room");
        assert!(!a.wait(soon()).await, "nobody woke it");
        a.give_up(true);
        let b = q.join(8, true).expect("room");
        drop(b);
        assert_eq!(q.waiting(), 0);
        let c = q.report().counts;
        assert_eq!((c.timed_out, c.abandoned, c.max_depth), (1, 1, 1));
        // Waking an empty queue is a no-op.
        q.wake_one();
    }

    #[test]
    fn retry_after_follows_the_drain_rate() {
        let t0 = Instant::now();
        let dispatches: VecDeque<Instant> = (0..11).map(|i| t0 + Duration::from_millis(100 * i)).collect();
        // 10 dispatches per second: 49 waiting plus the newcomer take 5 s.
        assert_eq!(retry_after(&dispatches, 49), Duration::from_secs(5));
        assert_eq!(retry_after(&dispatches, 0), RETRY_AFTER_MIN);
        assert_eq!(retry_after(&dispatches, 100_000), RETRY_AFTER_MAX);
        assert_eq!(retry_after(&VecDeque::new(), 10), RETRY_AFTER_MIN);
    }
}

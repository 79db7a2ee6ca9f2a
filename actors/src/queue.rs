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
//! **Places.** A job holds its place from joining until it gets a slot or leaves, woken or
//! not: the depth counts woken jobs too, so the queue never holds more than its depth (a woken
//! job going back to the head used to take the queue past it).
//!
//! **Per-client share.** When the queue is at its depth, a job from a client holding fewer
//! places than the client holding the most takes the newest place of that client, whose job is
//! answered `queue-full` as if it had arrived later (longest-queue drop, as fair buffer
//! management does). One client alone may use the whole queue; it cannot keep another out.
//!
//! **Retry-After** is the time the queue takes to drain its depth at the rate it has really
//! drained lately: its recent dispatches counted up to now, so a queue that has stopped moving
//! does not answer with the rate it had before it stopped.
//!
//! **How short the pool is.** The queue also tells the capability's pairs whether its pool is
//! short ([`WaitQueue::pool`]): a job found every routable pair full within [`SHORT_MEMORY`]
//! (the routable pairs could not carry the load; a job that chose to wait for a faster slot
//! does not count), or most of its pairs are out of rotation (set by the supervisor each
//! second). Breakers weigh a pair's absence by it (`breaker.rs`).
//!
//! Memory is bounded by the depth, and each waiting job already holds one of the gateway's
//! in-flight job places (`limits.max_inflight_jobs`), which bounds the bodies they hold.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::oneshot;

mod drain;
mod ticket;

use drain::{drain_rate, retry_after};
use ticket::TicketState;
pub(crate) use ticket::{Ticket, Wait};

use crate::breaker::Pool;
use crate::metrics::{self as m, CapabilityLabel};

/// Dispatch instants kept to estimate the drain rate.
const DRAIN_SAMPLES: usize = 32;
/// Bounds of the `Retry-After` a full queue answers with.
const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);
/// How long a job having queued keeps the pool counted short.
pub(crate) const SHORT_MEMORY: Duration = Duration::from_secs(2);

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
    /// Waiting jobs whose place went to a job of a client holding fewer places (answered 503).
    #[serde(default)]
    pub(crate) displaced: u64,
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

/// Who a job is from, for the per-client share (a hash of the client's address; 0: unknown).
pub(crate) type ClientKey = u64;

struct Waiter {
    id: u64,
    client: ClientKey,
    tx: oneshot::Sender<()>,
}

struct Inner {
    waiters: VecDeque<Waiter>,
    /// Jobs woken and not yet placed, back in line or gone: they hold their places.
    woken: usize,
    /// Places held per client (waiting or woken).
    places: HashMap<ClientKey, usize>,
    next_id: u64,
    /// The last dispatch instants (drain rate).
    dispatches: VecDeque<Instant>,
    /// When the queue last went from empty to holding a job.
    busy_since: Option<Instant>,
    counts: QueueCounts,
}

impl Inner {
    /// Jobs holding a place.
    fn depth(&self) -> usize {
        self.waiters.len() + self.woken
    }

    fn take_place(&mut self, client: ClientKey) {
        *self.places.entry(client).or_default() += 1;
    }

    fn give_place(&mut self, client: ClientKey) {
        if let Some(n) = self.places.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.places.remove(&client);
            }
        }
    }

    /// The waiting job to turn away so that `client` may have a place in a full queue: the
    /// newest waiting job of the client holding the most places, if that client holds at
    /// least two more than `client` (so that taking one never makes it the smaller).
    fn displace_for(&mut self, client: ClientKey) -> Option<Waiter> {
        let mine = self.places.get(&client).copied().unwrap_or(0);
        let (&hog, &most) = self.places.iter().filter(|(c, _)| **c != client).max_by_key(|(_, n)| **n)?;
        if most < mine + 2 {
            return None;
        }
        let i = self.waiters.iter().rposition(|w| w.client == hog)?;
        let w = self.waiters.remove(i)?;
        self.give_place(hog);
        Some(w)
    }
}

/// Metric handles, registered once per queue.
struct Metrics {
    depth: metrics::Gauge,
    wait: metrics::Histogram,
    dispatched: metrics::Counter,
    timed_out: metrics::Counter,
    rejected: metrics::Counter,
    displaced: metrics::Counter,
    abandoned: metrics::Counter,
}

/// One capability's queue. Shared by the jobs waiting in it and the pairs whose slots free up.
pub(crate) struct WaitQueue {
    /// Jobs waiting; read without the lock by every slot release.
    waiting: AtomicUsize,
    /// When a job last found every routable pair full (ms since the slots' epoch, 0: never):
    /// the pool was short then.
    full_at_ms: AtomicU64,
    /// Most of the capability's pairs are out of rotation (the supervisor's last count).
    mostly_out: AtomicBool,
    inner: Mutex<Inner>,
    metrics: Metrics,
}

impl std::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitQueue").field("waiting", &self.waiting()).finish()
    }
}

impl WaitQueue {
    /// An empty queue for the capability its metrics are labelled with.
    pub(crate) fn new(label: &CapabilityLabel) -> Self {
        let c = label.value();
        let outcome =
            |o: &'static str| metrics::counter!(m::QUEUE_OUTCOMES_TOTAL, "capability" => c.clone(), "outcome" => o);
        Self {
            waiting: AtomicUsize::new(0),
            full_at_ms: AtomicU64::new(0),
            mostly_out: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                waiters: VecDeque::new(),
                woken: 0,
                places: HashMap::new(),
                next_id: 0,
                dispatches: VecDeque::new(),
                busy_since: None,
                counts: QueueCounts::default(),
            }),
            metrics: Metrics {
                depth: metrics::gauge!(m::QUEUE_DEPTH, "capability" => c.clone()),
                wait: metrics::histogram!(m::QUEUE_WAIT_SECONDS, "capability" => c.clone()),
                dispatched: outcome("dispatched"),
                timed_out: outcome("timeout"),
                rejected: outcome("full"),
                displaced: outcome("displaced"),
                abandoned: outcome("abandoned"),
            },
        }
    }

    /// Jobs waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Whether the capability's pool is short at `now`: a job found every pair full within
    /// [`SHORT_MEMORY`], or most of its pairs are out.
    pub(crate) fn pool(&self, now: Instant) -> Pool {
        let full = self.full_at_ms.load(Ordering::Relaxed);
        let recent = full != 0
            && crate::pair::slots::millis_since_epoch(now).saturating_sub(full) < SHORT_MEMORY.as_millis() as u64;
        if recent || self.mostly_out.load(Ordering::Relaxed) {
            Pool::Short
        } else {
            Pool::Ample
        }
    }

    /// Records that a job found every routable pair at its limit at `now` (the pool is short).
    pub(crate) fn note_full(&self, now: Instant) {
        self.full_at_ms.store(crate::pair::slots::millis_since_epoch(now).max(1), Ordering::Relaxed);
    }

    /// Records whether most of the capability's pairs are out of rotation (fewer than half of
    /// those that offer it are routable: Envoy's panic threshold).
    pub(crate) fn set_mostly_out(&self, mostly_out: bool) {
        self.mostly_out.store(mostly_out, Ordering::Relaxed);
    }

    /// Joins the queue for `client`: at the back, or at the front for a job that already
    /// waited or failed over (it is the older job). When `max_depth` jobs hold places already,
    /// it takes the newest place of the client holding the most (see the module
    /// documentation), or is refused.
    pub(crate) fn join(
        self: &Arc<Self>,
        max_depth: usize,
        front: bool,
        client: ClientKey,
    ) -> Result<Ticket, QueueFull> {
        let mut inner = self.inner.lock();
        if inner.depth() >= max_depth {
            match inner.displace_for(client).filter(|_| max_depth > 0) {
                // Dropping its sender tells the displaced job (its wait ends `Displaced`).
                Some(displaced) => {
                    drop(displaced);
                    inner.counts.displaced += 1;
                    self.metrics.displaced.increment(1);
                }
                None => {
                    inner.counts.rejected += 1;
                    self.metrics.rejected.increment(1);
                    let depth = inner.depth();
                    let retry_after = retry_after(&inner, depth, Instant::now());
                    return Err(QueueFull { depth, retry_after });
                }
            }
        }
        inner.counts.queued += 1;
        inner.take_place(client);
        let (id, rx) = Self::push(&mut inner, front, client);
        self.after_change(&mut inner);
        Ok(Ticket { queue: self.clone(), id, client, rx, joined: Instant::now(), state: TicketState::Queued })
    }

    fn push(inner: &mut Inner, front: bool, client: ClientKey) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let id = inner.next_id;
        inner.next_id += 1;
        let w = Waiter { id, client, tx };
        if front {
            inner.waiters.push_front(w);
        } else {
            inner.waiters.push_back(w);
        }
        (id, rx)
    }

    fn after_change(&self, inner: &mut Inner) {
        let depth = inner.depth();
        inner.counts.max_depth = inner.counts.max_depth.max(depth);
        if depth == 0 {
            inner.busy_since = None;
        } else if inner.busy_since.is_none() {
            inner.busy_since = Some(Instant::now());
        }
        self.waiting.store(inner.waiters.len(), Ordering::Release);
        self.metrics.depth.set(depth as f64);
    }

    /// Wakes the job at the head, if any: a slot may have freed. Cheap when nobody waits.
    pub(crate) fn wake_one(&self) {
        if self.waiting() == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        while let Some(w) = inner.waiters.pop_front() {
            // A waiter whose job has gone removes itself under this lock, so a failed send
            // only happens in a race with that removal; the next one is woken instead.
            if w.tx.send(()).is_ok() {
                inner.woken += 1;
                break;
            }
            inner.give_place(w.client);
        }
        self.after_change(&mut inner);
    }

    /// Takes waiter `id` out of the line; `false` when it is no longer there (woken, or
    /// displaced).
    fn remove(&self, id: u64) -> bool {
        let mut inner = self.inner.lock();
        let Some(i) = inner.waiters.iter().position(|w| w.id == id) else { return false };
        if let Some(w) = inner.waiters.remove(i) {
            inner.give_place(w.client);
        }
        self.after_change(&mut inner);
        true
    }

    /// A woken job of `client` leaves its place (placed, or gone); `requeue` puts it back in
    /// line at the head instead, keeping its place.
    fn unwake(&self, client: ClientKey, requeue: bool) -> Option<(u64, oneshot::Receiver<()>)> {
        let mut inner = self.inner.lock();
        inner.woken = inner.woken.saturating_sub(1);
        let back = if requeue {
            Some(Self::push(&mut inner, true, client))
        } else {
            inner.give_place(client);
            None
        };
        self.after_change(&mut inner);
        back
    }

    /// How long a client turned away now should wait before retrying: the time the queue takes
    /// to drain its current depth at its recent rate, between 1 and 60 s.
    pub(crate) fn retry_after(&self) -> Duration {
        let inner = self.inner.lock();
        retry_after(&inner, inner.depth(), Instant::now())
    }

    /// Depth, drain rate and counters.
    pub(crate) fn report(&self) -> QueueReport {
        let inner = self.inner.lock();
        let c = inner.counts;
        QueueReport {
            depth: inner.depth(),
            drain_per_sec: drain_rate(&inner.dispatches, Instant::now()),
            mean_wait_ms: (c.dispatched > 0).then(|| c.wait_ms_total as f64 / c.dispatched as f64),
            counts: c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Arc<WaitQueue> {
        Arc::new(WaitQueue::new(&CapabilityLabel::offered(
            &crate::capability::Capability::new("depth").expect("valid"),
        )))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(20)
    }

    #[actix_rt::test]
    async fn first_in_first_out_and_the_depth_is_bounded() {
        let q = queue();
        let mut a = q.join(2, false, 1).expect("room");
        let mut b = q.join(2, false, 1).expect("room");
        let full = q.join(2, false, 1).expect_err("at depth");
        assert_eq!((full.depth, full.retry_after), (2, RETRY_AFTER_MIN));
        assert_eq!(q.waiting(), 2);
        q.wake_one();
        assert_eq!(a.wait(soon()).await, Wait::Woken, "the head is woken first");
        assert_eq!(b.wait(soon()).await, Wait::TimedOut, "one wake, one job");
        a.dispatched();
        // The dispatched job passed the wake on.
        assert_eq!(b.wait(soon()).await, Wait::Woken);
        b.dispatched();
        assert_eq!(q.waiting(), 0);
        let r = q.report();
        assert_eq!((r.counts.queued, r.counts.dispatched, r.counts.rejected), (2, 2, 1));
    }

    #[actix_rt::test]
    async fn a_job_that_finds_no_slot_goes_back_to_the_head() {
        let q = queue();
        let mut a = q.join(8, false, 1).expect("room");
        let mut b = q.join(8, false, 1).expect("room");
        q.wake_one();
        assert_eq!(a.wait(soon()).await, Wait::Woken);
        a.requeue();
        q.wake_one();
        assert_eq!(a.wait(soon()).await, Wait::Woken, "a kept its place ahead of b");
        assert_eq!(b.wait(soon()).await, Wait::TimedOut);
        drop(a);
        // a dropped a wake it did not use: b gets it.
        assert_eq!(b.wait(soon()).await, Wait::Woken);
    }

    #[actix_rt::test]
    async fn woken_jobs_keep_their_places_so_the_queue_never_holds_more_than_its_depth() {
        let q = queue();
        let mut a = q.join(2, false, 1).expect("room");
        let mut b = q.join(2, false, 2).expect("room");
        // Two slots free at once: both are woken, and neither finds its slot after all.
        q.wake_one();
        q.wake_one();
        assert_eq!(a.wait(soon()).await, Wait::Woken);
        assert_eq!(b.wait(soon()).await, Wait::Woken);
        // Newcomers meanwhile: the woken jobs still hold the two places.
        assert!(q.join(2, false, 3).is_err(), "full: the woken jobs hold their places");
        a.requeue();
        b.requeue();
        let r = q.report();
        assert_eq!((r.depth, r.counts.max_depth), (2, 2), "never past the depth: {r:?}");
        drop((a, b));
        assert_eq!(q.report().depth, 0);
        assert!(q.join(2, false, 3).is_ok());
    }

    #[actix_rt::test]
    async fn a_client_cannot_keep_another_out_of_a_full_queue() {
        let q = queue();
        let mut hog: Vec<Ticket> = (0..4).map(|_| q.join(4, false, 7).expect("room")).collect();
        // Alone, one client may use the whole queue.
        assert!(q.join(4, false, 7).is_err(), "its own fifth job is refused");
        // Another client's job takes the hog's newest place; that job learns it is out.
        let mut other = q.join(4, false, 9).expect("a place for another client");
        let mut newest = hog.pop().expect("four");
        assert_eq!(newest.wait(soon()).await, Wait::Displaced);
        assert_eq!(q.report().counts.displaced, 1);
        assert_eq!(q.report().depth, 4);
        // Fair, not inverted: with 3 against 1, the next job of the other client takes one
        // more (3 vs 2 is still more than one apart before), then it is 2 vs 2 and full.
        let second = q.join(4, false, 9).expect("3 vs 1: one more place");
        assert!(q.join(4, false, 9).is_err(), "2 vs 2: nobody holds two more than the other");
        // Wakes still go first in, first out.
        q.wake_one();
        assert_eq!(hog[0].wait(soon()).await, Wait::Woken);
        assert_eq!(other.wait(soon()).await, Wait::TimedOut);
        drop((hog, second, newest));
        q.wake_one();
        assert_eq!(other.wait(soon()).await, Wait::Woken);
    }

    #[actix_rt::test]
    async fn leaving_removes_the_job_and_counts_why() {
        let q = queue();
        let mut a = q.join(8, false, 1).expect("room");
        assert_eq!(a.wait(soon()).await, Wait::TimedOut, "nobody woke it");
        a.give_up(true);
        let b = q.join(8, true, 1).expect("room");
        drop(b);
        assert_eq!(q.waiting(), 0);
        let c = q.report().counts;
        assert_eq!((c.timed_out, c.abandoned, c.max_depth), (1, 1, 1));
        // Waking an empty queue is a no-op.
        q.wake_one();
    }

    fn inner_with(dispatches: VecDeque<Instant>, busy_since: Option<Instant>) -> Inner {
        Inner {
            waiters: VecDeque::new(),
            woken: 0,
            places: HashMap::new(),
            next_id: 0,
            dispatches,
            busy_since,
            counts: QueueCounts::default(),
        }
    }

    #[test]
    fn retry_after_follows_the_drain_rate_up_to_now() {
        let t0 = Instant::now();
        let every_100ms: VecDeque<Instant> = (0..10).map(|i| t0 + Duration::from_millis(100 * i)).collect();
        let now = t0 + Duration::from_secs(1);
        let inner = inner_with(every_100ms.clone(), Some(t0));
        // 10 dispatches a second: 49 waiting plus the newcomer take 5 s.
        assert_eq!(retry_after(&inner, 49, now), Duration::from_secs(5));
        assert_eq!(retry_after(&inner, 0, now), RETRY_AFTER_MIN);
        assert_eq!(retry_after(&inner, 100_000, now), RETRY_AFTER_MAX);
        // The same burst long ago, nothing since: the queue drains at 10 jobs per 30 s now,
        // not at the burst's 10 a second (it answered 1 s while draining at 0.3 jobs/s).
        let later = t0 + Duration::from_secs(30);
        assert_eq!(retry_after(&inner, 9, later), Duration::from_secs(30));
        // No dispatch yet: at most one job per time the queue has been busy.
        let stuck = inner_with(VecDeque::new(), Some(t0));
        assert_eq!(retry_after(&stuck, 3, t0 + Duration::from_secs(2)), Duration::from_secs(8));
        assert_eq!(retry_after(&inner_with(VecDeque::new(), None), 10, now), RETRY_AFTER_MIN);
    }
}

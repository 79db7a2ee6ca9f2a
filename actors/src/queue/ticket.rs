//! A job's place in a [`WaitQueue`](super::WaitQueue): waiting to be woken, going back to the
//! head when the wake found no slot, leaving (dispatched, given up, displaced or dropped) with
//! its place given back and an unused wake passed on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{ClientKey, WaitQueue, DRAIN_SAMPLES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TicketState {
    /// In the queue, not woken.
    Queued,
    /// Woken and not yet placed or gone back.
    Woken,
    /// Placed, or left for good (accounted).
    Left,
}

/// How a wait in the queue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Woken: a slot may be free.
    Woken,
    /// The wait bound passed first.
    TimedOut,
    /// Its place went to a job of a client holding fewer places: the queue is full for it.
    Displaced,
}

/// A job's place in a [`WaitQueue`]. Dropped while waiting (the client went away), it leaves
/// the queue; dropped after a wake it did not use, it passes the wake on.
pub(crate) struct Ticket {
    pub(super) queue: Arc<WaitQueue>,
    pub(super) id: u64,
    pub(super) client: ClientKey,
    pub(super) rx: oneshot::Receiver<()>,
    pub(super) joined: Instant,
    pub(super) state: TicketState,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).field("state", &self.state).finish()
    }
}

impl Ticket {
    /// Waits to be woken, at most until `until`.
    pub(crate) async fn wait(&mut self, until: Instant) -> Wait {
        if self.state != TicketState::Queued {
            return Wait::Woken;
        }
        let got = match tokio::time::timeout_at(until.into(), &mut self.rx).await {
            Ok(Ok(())) => Wait::Woken,
            Ok(Err(_)) => Wait::Displaced,
            // The deadline and a wake can cross: a wake already sent counts.
            Err(_) => match self.rx.try_recv() {
                Ok(()) => Wait::Woken,
                Err(oneshot::error::TryRecvError::Closed) => Wait::Displaced,
                Err(oneshot::error::TryRecvError::Empty) => Wait::TimedOut,
            },
        };
        match got {
            Wait::Woken => self.state = TicketState::Woken,
            // Its place is already given back.
            Wait::Displaced => self.state = TicketState::Left,
            Wait::TimedOut => {}
        }
        got
    }

    /// Whether the job was woken and has not used the wake yet.
    pub(crate) fn is_woken(&self) -> bool {
        self.state == TicketState::Woken
    }

    /// Woken, but no slot was free after all: back to the head of the queue (its place is still
    /// its own: the depth already counts it).
    pub(crate) fn requeue(&mut self) {
        if self.state != TicketState::Woken {
            return;
        }
        if let Some((id, rx)) = self.queue.unwake(self.client, true) {
            self.id = id;
            self.rx = rx;
        }
        self.state = TicketState::Queued;
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
        if self.state == TicketState::Left {
            return;
        }
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

    /// Out of the queue, giving its place back; a wake not used goes to the next job.
    fn leave(&mut self) {
        match std::mem::replace(&mut self.state, TicketState::Left) {
            TicketState::Queued => {
                if !self.queue.remove(self.id) {
                    // Not in line: woken between the last check and now (pass the wake on), or
                    // displaced (its place is already given back, and the channel says so).
                    if self.rx.try_recv().is_ok() {
                        self.queue.unwake(self.client, false);
                        self.queue.wake_one();
                    }
                }
            }
            TicketState::Woken => {
                self.queue.unwake(self.client, false);
                self.queue.wake_one();
            }
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

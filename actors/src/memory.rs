//! Byte budgets: bounds on the bytes the gateway holds in memory for all jobs together (job
//! bodies being read, waiting or being sent; orchestrators' answers being read or relayed).
//!
//! A budget counts the bytes actually allocated to hold data (the blocks of a
//! [`BodyBuilder`](crate::protocol::body::BodyBuilder)), reserved before they are allocated and
//! given back when the data is dropped. Taking bytes either fails at once
//! ([`Reservation::try_grow`], for bodies: a fast 503) or waits in line, first come first
//! served ([`Reservation::grow`], for answers: the orchestrator's connection is read later).
//!
//! Waiting cannot deadlock. Answers of unknown length grow as they arrive, so readers that each
//! hold part of the budget could all wait for bytes that only they hold. When every byte held
//! belongs to a reservation that is waiting (nothing else will give any back), the youngest
//! waiter that holds bytes is refused ([`Reservation::grow`] returns false) and gives its bytes
//! back to the others. While some bytes are held by anything else (an answer being relayed to
//! its client, a reader between two chunks), waiters wait; the caller bounds how long.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// A gateway-wide budget of bytes (shared by every worker).
pub struct ByteBudget {
    limit: usize,
    ledger: Mutex<Ledger>,
    /// The gauge of bytes held, kept in step.
    gauge: metrics::Gauge,
}

impl std::fmt::Debug for ByteBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteBudget").field("limit", &self.limit).field("used", &self.used()).finish()
    }
}

impl ByteBudget {
    /// A budget of `limit` bytes whose use is published as the gauge `gauge`.
    pub fn new(limit: usize, gauge: &'static str) -> Arc<Self> {
        Arc::new(Self { limit, ledger: Mutex::new(Ledger::new(limit)), gauge: metrics::gauge!(gauge) })
    }

    /// Its size in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.ledger.lock().used
    }

    fn give_back(&self, n: usize) {
        if n > 0 {
            self.gauge.decrement(n as f64);
            let decisions = self.ledger.lock().release(n);
            decisions.send();
        }
    }
}

/// The bytes one body (or answer) holds of a budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl Reservation {
    /// An empty reservation on `budget`.
    pub fn new(budget: &Arc<ByteBudget>) -> Self {
        Self { budget: budget.clone(), bytes: 0 }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget it draws on.
    pub fn budget(&self) -> &Arc<ByteBudget> {
        &self.budget
    }

    /// Takes `n` more bytes if the budget has them now (and nobody waits for them); takes
    /// nothing otherwise.
    pub fn try_grow(&mut self, n: usize) -> bool {
        let taken = self.budget.ledger.lock().try_take(n);
        if taken {
            self.took(n);
        }
        taken
    }

    /// Takes `n` more bytes, waiting in line when the budget has not that many left. False
    /// when it was refused to break a deadlock (see the module documentation) or can never
    /// fit. Cancel-safe: dropped while waiting, nothing is taken. The caller bounds the wait.
    pub async fn grow(&mut self, n: usize) -> bool {
        let (id, rx, decisions) = {
            let mut ledger = self.budget.ledger.lock();
            if ledger.try_take(n) {
                drop(ledger);
                self.took(n);
                return true;
            }
            if n > self.budget.limit {
                return false;
            }
            let (tx, rx) = oneshot::channel();
            let id = ledger.enqueue(n, self.bytes, tx);
            (id, rx, ledger.resolve())
        };
        decisions.send();
        let budget = self.budget.clone();
        let mut queued = Queued { budget: &budget, id: Some(id) };
        let granted = rx.await.unwrap_or(false);
        queued.id = None;
        drop(queued);
        if granted {
            self.confirm(id);
            self.took(n);
        }
        granted
    }

    /// Gives back bytes down to `n` held (no-op when it holds no more than that).
    pub fn shrink_to(&mut self, n: usize) {
        if self.bytes > n {
            let back = self.bytes - n;
            self.bytes = n;
            self.budget.give_back(back);
        }
    }

    fn took(&mut self, n: usize) {
        self.bytes += n;
        self.budget.gauge.increment(n as f64);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

/// A waiter still in line when its `grow` is dropped leaves it (bytes granted in between go
/// back).
struct Queued<'a> {
    budget: &'a ByteBudget,
    id: Option<u64>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let decisions = self.budget.ledger.lock().leave(id);
            decisions.send();
        }
    }
}

/// Grants and refusals decided under the lock, sent after it is released.
#[must_use]
struct Decisions(Vec<(oneshot::Sender<bool>, bool)>);

impl Decisions {
    fn send(self) {
        for (tx, granted) in self.0 {
            // A waiter gone meanwhile left the line itself (`Queued`), giving back its grant.
            let _ = tx.send(granted);
        }
    }
}

/// One reservation waiting in line.
#[derive(Debug)]
struct Waiter {
    id: u64,
    need: usize,
    /// What it holds while it waits.
    held: usize,
    tx: oneshot::Sender<bool>,
}

/// The budget's books: bytes held and the line of waiters. Pure: no clock, no I/O.
#[derive(Debug)]
struct Ledger {
    limit: usize,
    used: usize,
    waiters: VecDeque<Waiter>,
    /// Bytes granted to waiters whose answer is still in flight: theirs unless they left.
    granted: Vec<(u64, usize)>,
    next_id: u64,
}

impl Ledger {
    fn new(limit: usize) -> Self {
        Self { limit, used: 0, waiters: VecDeque::new(), granted: Vec::new(), next_id: 0 }
    }

    /// Takes `n` bytes now if they fit and nobody waits ahead.
    fn try_take(&mut self, n: usize) -> bool {
        if self.waiters.is_empty() && self.used.saturating_add(n) <= self.limit {
            self.used += n;
            true
        } else {
            false
        }
    }

    fn enqueue(&mut self, need: usize, held: usize, tx: oneshot::Sender<bool>) -> u64 {
        self.next_id += 1;
        self.waiters.push_back(Waiter { id: self.next_id, need, held, tx });
        self.next_id
    }

    fn release(&mut self, n: usize) -> Decisions {
        self.used = self.used.saturating_sub(n);
        self.resolve()
    }

    /// A waiter that stopped waiting: out of the line, or, if it was granted bytes it never
    /// took, those go back.
    fn leave(&mut self, id: u64) -> Decisions {
        if let Some(i) = self.waiters.iter().position(|w| w.id == id) {
            self.waiters.remove(i);
        } else if let Some(i) = self.granted.iter().position(|(g, _)| *g == id) {
            let (_, n) = self.granted.swap_remove(i);
            self.used = self.used.saturating_sub(n);
        }
        self.resolve()
    }

    /// Grants the head of the line while it fits; then, if the head still waits and every byte
    /// held is held by a waiter, refuses the youngest waiter holding bytes.
    fn resolve(&mut self) -> Decisions {
        let mut out = Vec::new();
        while let Some(head) = self.waiters.front() {
            if self.used + head.need > self.limit {
                break;
            }
            let Some(w) = self.waiters.pop_front() else { break };
            self.used += w.need;
            self.granted.push((w.id, w.need));
            out.push((w.tx, true));
        }
        let waiting_held: usize = self.waiters.iter().map(|w| w.held).sum();
        if !self.waiters.is_empty() && self.used > 0 && waiting_held >= self.used {
            if let Some(i) = self.waiters.iter().rposition(|w| w.held > 0) {
                if let Some(w) = self.waiters.remove(i) {
                    out.push((w.tx, false));
                }
            }
        }
        Decisions(out)
    }
}

impl Reservation {
    /// Confirms a grant received (its bytes are this reservation's now).
    fn confirm(&self, id: u64) {
        let mut ledger = self.budget.ledger.lock();
        if let Some(i) = ledger.granted.iter().position(|(g, _)| *g == id) {
            ledger.granted.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_take_and_give_back_the_budget() {
        let budget = ByteBudget::new(10, "test_bytes");
        let mut a = Reservation::new(&budget);
        assert!(a.try_grow(6));
        let mut b = Reservation::new(&budget);
        assert!(!b.try_grow(5), "over the budget: nothing taken");
        assert!(b.try_grow(4));
        assert_eq!(budget.used(), 10);
        a.shrink_to(2);
        assert_eq!((a.bytes(), budget.used()), (2, 6));
        drop(a);
        assert_eq!(budget.used(), 4);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_waiting_reservation_gets_its_bytes_when_they_come_back() {
        let budget = ByteBudget::new(10, "test_bytes");
        let mut holder = Reservation::new(&budget);
        assert!(holder.try_grow(8));
        let mut waiter = Reservation::new(&budget);
        let wait = tokio::spawn(async move { (waiter.grow(5).await, waiter) });
        tokio::task::yield_now().await;
        assert!(!wait.is_finished(), "3 bytes left: it waits");
        let mut late = Reservation::new(&budget);
        assert!(!late.try_grow(1), "nobody takes bytes ahead of a waiter");
        drop(holder);
        let (got, waiter) = wait.await.expect("task");
        assert!(got);
        assert_eq!((waiter.bytes(), budget.used()), (5, 5));
    }

    #[tokio::test]
    async fn waiters_that_hold_every_byte_are_untangled_by_refusing_the_youngest() {
        let budget = ByteBudget::new(10, "test_bytes");
        let (mut a, mut b) = (Reservation::new(&budget), Reservation::new(&budget));
        assert!(a.try_grow(5) && b.try_grow(5));
        // `a` waits for 3 more bytes: `b` holds them and is not waiting, so `a` waits.
        let wait_a = tokio::spawn(async move { (a.grow(3).await, a) });
        tokio::task::yield_now().await;
        assert!(!wait_a.is_finished());
        // `b` now waits too: both wait for bytes only the other holds. The younger (`b`) is
        // refused; once it gives its bytes back, `a` gets its own.
        assert!(!b.grow(3).await, "the youngest waiter holding bytes is refused");
        drop(b);
        let (got, a) = wait_a.await.expect("task");
        assert!(got);
        assert_eq!((a.bytes(), budget.used()), (8, 8));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_no_bytes_behind() {
        let budget = ByteBudget::new(10, "test_bytes");
        let mut holder = Reservation::new(&budget);
        assert!(holder.try_grow(10));
        let mut waiter = Reservation::new(&budget);
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(1), waiter.grow(4)).await;
        assert!(gave_up.is_err());
        drop(holder);
        assert_eq!(budget.used(), 0, "nothing granted to the waiter that left");
        let mut next = Reservation::new(&budget);
        assert!(next.try_grow(10), "the line is empty again");
    }

    #[test]
    fn a_grant_to_a_waiter_gone_meanwhile_goes_back() {
        let mut l = Ledger::new(10);
        assert!(l.try_take(10));
        let (tx, _rx) = oneshot::channel();
        let id = l.enqueue(4, 0, tx);
        let granted = l.release(10);
        assert_eq!((granted.0.len(), l.used), (1, 4));
        // The waiter's future was dropped before it saw the grant.
        drop(l.leave(id));
        assert_eq!(l.used, 0);
    }
}

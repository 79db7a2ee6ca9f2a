//! `Dispatcher`: a read-optimised scoreboard per capability, derived from the views pair
//! actors publish. For each job attempt it picks the healthiest routable pair by power of two
//! choices (O(1) per pick), excluding orchestrators already tried for that job.
//!
//! The boards live in a [`Scoreboard`] that the HTTP workers read in place
//! ([`Scoreboard::select`]), so picking a pair for an attempt costs no message round trip to
//! the actor thread: on a 2-core machine that round trip was the largest single cost of a job.
//! The supervisor keeps the boards in step with the registry ([`Scoreboard::register`],
//! [`Scoreboard::unregister`]) as it changes it, so a pair it has registered is selectable at
//! once; selection reads the pairs' published views directly. The actor answers [`Select`]
//! for callers without a scoreboard and reports board sizes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use parking_lot::RwLock;
use rand::Rng;

use crate::capability::Capability;
use crate::orchestrator::OrchestratorId;
use crate::pair::{PairActor, PairKey, SharedView, Tally, Unroutable};
use crate::score::p2c;

/// One pair as the dispatcher sees it.
#[derive(Clone)]
pub struct Slot {
    /// Which pair.
    pub key: PairKey,
    /// Its actor (the address survives supervised restarts).
    pub addr: Addr<PairActor>,
    /// Its published view.
    pub view: SharedView,
    /// Where fast-path answers are deposited for its accounting.
    pub tally: Arc<Tally>,
}

#[derive(Default, Clone)]
struct Board {
    slots: Vec<Slot>,
    /// `slots[i].view` for every `i`, kept in step with `slots`, so a select hands [`pick`]
    /// a plain slice without collecting one (no allocation on the hot path).
    views: Vec<SharedView>,
    index: HashMap<OrchestratorId, usize>,
}

/// The boards, for lock-light reads from any thread.
///
/// Readers take the map's read lock only to clone one board's `Arc`; a registration updates
/// a board in place when no reader holds it and copies it otherwise (`Arc::make_mut`), so a
/// pick never waits for a registration and registrations at start-up do not copy.
#[derive(Clone, Default)]
pub struct Scoreboard {
    boards: Arc<RwLock<HashMap<Capability, Arc<Board>>>>,
}

impl Scoreboard {
    fn board(&self, capability: &Capability) -> Option<Arc<Board>> {
        self.boards.read().get(capability).cloned()
    }

    /// Picks a pair for one attempt of a job for `capability`, excluding `exclude`
    /// (what [`Select`] answers, computed on the caller's thread).
    pub fn select(&self, capability: &Capability, exclude: &[OrchestratorId]) -> Selection {
        let Some(board) = self.board(capability) else {
            return Selection::Unknown;
        };
        let now = Instant::now();
        let mut rng = rand::rng();
        if let Some(i) = pick(&board.views, exclude, now, &mut rng) {
            return Selection::Picked(Picked { board, index: i });
        }
        match unavailable(&board.views, exclude, now) {
            Some(why) => Selection::Unavailable(why),
            None => Selection::Unknown,
        }
    }

    /// Adds a pair to its capability's board (or replaces it). Called by the supervisor as it
    /// registers the pair, so the very next selection sees it.
    pub fn register(&self, slot: Slot) {
        let mut boards = self.boards.write();
        let board = Arc::make_mut(boards.entry(slot.key.capability.clone()).or_default());
        match board.index.get(&slot.key.orchestrator) {
            Some(&i) => {
                board.views[i] = slot.view.clone();
                board.slots[i] = slot;
            }
            None => {
                board.index.insert(slot.key.orchestrator.clone(), board.slots.len());
                board.views.push(slot.view.clone());
                board.slots.push(slot);
            }
        }
    }

    /// Removes a pair from its board (its orchestrator was removed).
    pub fn unregister(&self, key: &PairKey) {
        let mut boards = self.boards.write();
        let Some(board) = boards.get_mut(&key.capability).map(Arc::make_mut) else {
            return;
        };
        let Some(i) = board.index.remove(&key.orchestrator) else {
            return;
        };
        // Same swap on both vectors keeps `views[i]` the view of `slots[i]`.
        board.slots.swap_remove(i);
        board.views.swap_remove(i);
        if let Some(moved) = board.slots.get(i) {
            board.index.insert(moved.key.orchestrator.clone(), i);
        }
        if board.slots.is_empty() {
            boards.remove(&key.capability);
        }
    }

    /// Pairs per capability, sorted by capability.
    pub fn sizes(&self) -> Vec<(Capability, usize)> {
        let mut v: Vec<_> = self.boards.read().iter().map(|(c, b)| (c.clone(), b.slots.len())).collect();
        v.sort();
        v
    }
}

/// The actor.
#[derive(Default)]
pub struct Dispatcher {
    board: Scoreboard,
    mailbox_capacity: usize,
}

impl Dispatcher {
    /// A dispatcher with the given mailbox capacity.
    pub fn new(mailbox_capacity: usize) -> Self {
        Self { board: Scoreboard::default(), mailbox_capacity }
    }

    /// The boards this dispatcher selects from (for the supervisor, which keeps them in step,
    /// and for readers on other threads).
    pub fn scoreboard(&self) -> Scoreboard {
        self.board.clone()
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity.max(16));
    }
}

/// The pair a selection picked: its board (an `Arc` snapshot, never changed in place while
/// shared) and its index there. Handing this out rather than a copy of the [`Slot`] makes a
/// pick one reference count: cloning a slot's actor address allocates.
#[derive(Clone)]
pub struct Picked {
    board: Arc<Board>,
    index: usize,
}

impl std::ops::Deref for Picked {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        // `index` came from this board's own `pick`, and a shared board is never mutated.
        &self.board.slots[self.index]
    }
}

impl std::fmt::Debug for Picked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// Why nothing could be picked, summarised over the capability's pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unavailable {
    /// The earliest instant an open breaker admits a trial, if any breaker is the reason.
    pub retry_at: Option<Instant>,
    /// Pairs excluded because this job already tried them.
    pub tried: u32,
    /// Count of pairs per reason (`breaker-open`, `no-capacity`, ...), sorted by reason.
    pub reasons: Vec<(&'static str, u32)>,
}

/// The answer to [`Select`].
#[derive(Debug, Clone)]
pub enum Selection {
    /// The pair to try.
    Picked(Picked),
    /// No orchestrator has ever offered this capability (or none is registered for it).
    Unknown,
    /// Pairs exist but none can take this job now.
    Unavailable(Unavailable),
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot({})", self.key)
    }
}

/// Picks a pair for one attempt of a job.
#[derive(Message)]
#[rtype(result = "Selection")]
pub struct Select {
    /// The job's capability.
    pub capability: Capability,
    /// Orchestrators already tried for this job.
    pub exclude: Vec<OrchestratorId>,
}

impl Handler<Select> for Dispatcher {
    type Result = MessageResult<Select>;

    fn handle(&mut self, msg: Select, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.board.select(&msg.capability, &msg.exclude))
    }
}

/// Power of two choices over `views`: the index of the cheaper of two random routable views
/// whose orchestrator is not in `exclude`, or `None` when no view is eligible.
///
/// O(1) while a fair share of views is eligible (see [`p2c`]); it takes no actor system, so
/// the selection benchmark measures exactly what [`Select`] runs.
pub fn pick(views: &[SharedView], exclude: &[OrchestratorId], now: Instant, rng: &mut impl Rng) -> Option<usize> {
    let eligible = |i: usize| -> Option<f64> {
        let v = views[i].read();
        // The view's key is the pair's key (its actor publishes it), so the lock we need for
        // the cost anyway also answers "already tried".
        if exclude.contains(&v.key.orchestrator) {
            return None;
        }
        v.routable_at(now).ok()?;
        Some(v.cost_at(now))
    };
    p2c(views.len(), eligible, |n| rng.random_range(0..n))
}

/// Why [`pick`] found nothing among `views`, or `None` when none of them ever offered the
/// capability (the caller reports it as unknown rather than unavailable).
///
/// O(n), but it only runs when nothing is routable, where the explanation is worth a scan.
pub fn unavailable(views: &[SharedView], exclude: &[OrchestratorId], now: Instant) -> Option<Unavailable> {
    let mut offered = false;
    let mut why = Unavailable::default();
    let mut counts: HashMap<&'static str, u32> = HashMap::new();
    for view in views {
        let v = view.read();
        offered |= v.offered;
        if exclude.contains(&v.key.orchestrator) {
            why.tried += 1;
            continue;
        }
        if let Err(reason) = v.routable_at(now) {
            if let Unroutable::BreakerOpen(Some(t)) | Unroutable::CapacityBackoff(t) = reason {
                why.retry_at = Some(why.retry_at.map_or(t, |r: Instant| r.min(t)));
            }
            *counts.entry(reason.as_str()).or_default() += 1;
        }
    }
    if !offered {
        return None;
    }
    why.reasons = counts.into_iter().collect();
    why.reasons.sort();
    Some(why)
}

/// Pairs on the board per capability (for the supervisor view and tests).
#[derive(Message)]
#[rtype(result = "Vec<(Capability, usize)>")]
pub struct BoardSizes;

impl Handler<BoardSizes> for Dispatcher {
    type Result = MessageResult<BoardSizes>;

    fn handle(&mut self, _msg: BoardSizes, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.board.sizes())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::RwLock;

    use super::*;
    use crate::pair::PairView;

    fn view(orch: &str, capacity: i64) -> SharedView {
        let key =
            PairKey { orchestrator: OrchestratorId(orch.into()), capability: Capability::new("depth").expect("valid") };
        let mut v = PairView::new(key, Arc::from("http://x"));
        v.probed = true;
        v.offered = true;
        v.token_ok = true;
        v.available_capacity = capacity;
        Arc::new(RwLock::new(v))
    }

    #[test]
    fn pick_skips_tried_and_unroutable_and_explains_failure() {
        let now = Instant::now();
        let mut rng = rand::rng();
        let views = [view("a", 1), view("b", 0), view("c", 1)];
        let tried = [OrchestratorId("a".into())];
        for _ in 0..20 {
            assert_eq!(pick(&views, &tried, now, &mut rng), Some(2));
        }
        let tried = [OrchestratorId("a".into()), OrchestratorId("c".into())];
        assert_eq!(pick(&views, &tried, now, &mut rng), None);
        let why = unavailable(&views, &tried, now).expect("offered");
        assert_eq!((why.tried, why.reasons), (2, vec![("no-capacity", 1)]));
        views[1].write().offered = false;
        views[0].write().offered = false;
        views[2].write().offered = false;
        assert_eq!(unavailable(&views, &tried, now), None);
    }
}

//! The scoreboard: a read-optimised board per capability, derived from the views pair actors
//! publish (the design card's "Dispatcher": it is not an actor, since selecting on the HTTP
//! worker that owns the job costs no message round trip). For each job attempt it picks the best routable pair with a free slot,
//! excluding orchestrators already tried for that job, and takes that slot:
//!
//! - on a board of up to [`FULL_SCAN_MAX`] pairs (the usual size: a capability has a handful
//!   of orchestrators) by comparing every pair, so a much slower pair never wins while a
//!   faster one has room;
//! - on a larger board by power of two choices, so a pick stays O(1).
//!
//! A pair whose share of 4xx answers stands far above its siblings' ([`crate::client_errors`])
//! ranks last, and on a board of up to [`FULL_SCAN_MAX`] pairs it takes no job while a sibling
//! in good standing is merely full (the job waits for that slot), only its exploration turns.
//!
//! Either way a pair not measured for [`EXPLORE_INTERVAL`] gets one job per interval (at most
//! one per pair across all workers), which keeps idle, slower and recovering pairs measured at
//! a bounded cost: with `P` such pairs and `R` jobs per second, a share of about
//! `P / (EXPLORE_INTERVAL x R)` of jobs. When every routable pair is at its limit the answer is
//! [`Selection::Full`], with the capability's [`WaitQueue`] to wait in.
//!
//! **Waiting for a faster slot** ([`worth_waiting`]): on a full scan, when the best pair with a
//! free slot is much slower than pairs that are full, the job waits in the queue for one of
//! their slots if that is expected to finish it sooner: the faster full pairs free a slot about
//! every `1 / sum(inflight / latency)`, so the job behind `ahead` others starts there after
//! `(ahead + 1)` of those, and finishes a latency later. Sending a job to an idle 300 ms
//! orchestrator while 80 ms ones free a slot every 10 ms is what made the tail of a busy but
//! not short pool (issue 23's oracle, which routes to the fastest free orchestrator, does that
//! too). A job waits this way only while its own wait, counted, stays under what it would
//! gain, only while the pool is not short (then every slot counts), and never when failing
//! over.
//!
//! The boards live in a [`Scoreboard`] that the HTTP workers read in place
//! ([`Scoreboard::select`]), so picking a pair for an attempt costs no message round trip to
//! an actor thread: on a 2-core machine that round trip was the largest single cost of a job.
//! The supervisor keeps the boards in step with the registry ([`Scoreboard::register`],
//! [`Scoreboard::unregister`]) as it changes it, so a pair it has registered is selectable at
//! once; selection reads the pairs' published views directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use parking_lot::RwLock;
use rand::Rng;

use crate::capability::Capability;
use crate::metrics::{self as m, CapabilityLabel};
use crate::orchestrator::OrchestratorId;
use crate::pair::{PairActor, PairKey, PairView, Reason, SharedView, SlotGuard, Tally, Unroutable};
use crate::protocol::header::OrchestratorFilter;
use crate::queue::WaitQueue;
use crate::score::p2c;

/// Boards up to this size compare every pair; larger ones sample two (O(1)).
pub(crate) const FULL_SCAN_MAX: usize = 64;

/// A pair whose latency was last measured longer ago than this gets one job to be measured
/// again (once per interval).
pub(crate) const EXPLORE_INTERVAL: Duration = Duration::from_secs(5);

/// Picks retried when a slot another worker took first was the one chosen.
const PICK_RETRIES: usize = 4;

/// The orchestrators one attempt may not go to: those the job already tried, and those its
/// `parameters.orchestrators` leaves out.
#[derive(Debug, Clone, Copy)]
pub struct Exclusions<'a> {
    /// Already tried (or refused admission) for this job.
    pub(crate) tried: &'a [OrchestratorId],
    /// The job's include / exclude lists.
    pub(crate) filter: Option<&'a OrchestratorFilter>,
}

impl<'a> Exclusions<'a> {
    /// Nothing excluded.
    #[cfg(test)]
    pub(crate) const NONE: Exclusions<'static> = Exclusions { tried: &[], filter: None };

    /// Only the orchestrators already tried.
    pub fn tried(tried: &'a [OrchestratorId]) -> Self {
        Self { tried, filter: None }
    }

    /// Whether `v`'s orchestrator was tried (`Some(true)`), is left out by the job's filter
    /// (`Some(false)`), or may be used (`None`).
    fn blocks(&self, v: &PairView) -> Option<bool> {
        if self.tried.contains(&v.key.orchestrator) {
            return Some(true);
        }
        match self.filter {
            Some(f) if !f.allows(&v.key.orchestrator.0, &v.orchestrator.url) => Some(false),
            _ => None,
        }
    }
}

/// One pair as the scoreboard sees it.
#[derive(Clone)]
pub(crate) struct BoardEntry {
    /// Which pair.
    pub(crate) key: PairKey,
    /// Its actor (the address survives supervised restarts).
    pub(crate) addr: Addr<PairActor>,
    /// Its published view.
    pub(crate) view: SharedView,
    /// Where fast-path answers are deposited for its accounting.
    pub(crate) tally: Arc<Tally>,
}

#[derive(Clone)]
struct Board {
    slots: Vec<BoardEntry>,
    /// `slots[i].view` for every `i`, kept in step with `slots`, so a select hands [`pick`]
    /// a plain slice without collecting one (no allocation on the hot path).
    views: Vec<SharedView>,
    index: HashMap<OrchestratorId, usize>,
    /// Jobs waiting for a slot on this board.
    queue: Arc<WaitQueue>,
    /// The `capability` label of its series: its name, since an orchestrator offers it.
    label: CapabilityLabel,
}

impl Board {
    fn new(capability: &Capability) -> Self {
        let label = CapabilityLabel::offered(capability);
        Self {
            slots: Vec::new(),
            views: Vec::new(),
            index: HashMap::new(),
            queue: Arc::new(WaitQueue::new(&label)),
            label,
        }
    }
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

    /// Picks a pair for one attempt of a job for `capability`, excluding `exclude`, and takes
    /// one of its slots. `waited` is how long the job has already waited in the queue (`None`:
    /// it may not wait for a faster slot, such as a job failing over).
    pub(crate) fn select(
        &self,
        capability: &Capability,
        exclude: Exclusions<'_>,
        waited: Option<Duration>,
    ) -> Selection {
        let Some(board) = self.board(capability) else {
            return Selection::Unknown;
        };
        let now = Instant::now();
        let mut rng = rand::rng();
        // Waiting for a faster slot is for an ample pool: while it is short every slot counts.
        let ample = board.queue.pool(now) == crate::breaker::Pool::Ample;
        let patience = waited.filter(|_| ample).map(|waited| Patience { waited, ahead: board.queue.waiting() });
        match pick_with(&board.views, exclude, now, &mut rng, patience) {
            Pick::Picked(index, guard) => return Selection::Picked(Picked { board, index }, guard),
            Pick::Wait => {
                metrics::counter!(crate::metrics::WAITED_FOR_FASTER_TOTAL).increment(1);
                return Selection::Full(board.queue.clone());
            }
            Pick::Nothing => {}
        }
        match unavailable(&board.views, exclude, now) {
            Some(why) if why.full > 0 => {
                board.queue.note_full(now);
                Selection::Full(board.queue.clone())
            }
            Some(why) => Selection::Unavailable(why),
            None => Selection::Unknown,
        }
    }

    /// The `capability` label of the series about `capability`: its name while it has a board
    /// (an orchestrator offers it), `unknown` otherwise. The one place that decides a label:
    /// a name a client sent never becomes one by itself.
    pub(crate) fn label(&self, capability: &Capability) -> CapabilityLabel {
        self.boards.read().get(capability).map_or(CapabilityLabel::UNKNOWN, |b| b.label.clone())
    }

    /// The wait queue of `capability`, if it has a board.
    pub(crate) fn queue(&self, capability: &Capability) -> Option<Arc<WaitQueue>> {
        self.board(capability).map(|b| b.queue.clone())
    }

    /// Adds a pair to its capability's board (or replaces it). Called by the supervisor as it
    /// registers the pair, so the very next selection sees it.
    pub(crate) fn register(&self, slot: BoardEntry) {
        let mut boards = self.boards.write();
        let board = Arc::make_mut(boards.entry(slot.key.capability.clone()).or_insert_with(|| {
            let board = Board::new(&slot.key.capability);
            m::register_capability(&board.label);
            Arc::new(board)
        }));
        // Freed slots of this pair wake the jobs waiting on this board.
        slot.view.read().slots.attach(board.queue.clone());
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
    pub(crate) fn unregister(&self, key: &PairKey) {
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
}

/// The pair a selection picked: its board (an `Arc` snapshot, never changed in place while
/// shared) and its index there. Handing this out rather than a copy of the [`BoardEntry`] makes a
/// pick one reference count: cloning a slot's actor address allocates.
#[derive(Clone)]
pub(crate) struct Picked {
    board: Arc<Board>,
    index: usize,
}

impl Picked {
    /// The `capability` label of its board.
    pub(crate) fn label(&self) -> &CapabilityLabel {
        &self.board.label
    }

    /// Whether a pair of this board other than the picked one and those in `exclude` could take
    /// a job now: routable, not deprioritised for its 4xx answers, and with a free slot when
    /// `free_slot`. Stops at the first such pair. (An attempt is cut short only for a real
    /// alternative: not to hand the job to a pair that answers 4xx to nearly everything.)
    pub(crate) fn has_alternative(&self, exclude: &[OrchestratorId], free_slot: bool) -> bool {
        let now = Instant::now();
        let this = &self.key.orchestrator;
        self.board.views.iter().any(|view| alternative(&view.read(), this, exclude, now, free_slot))
    }
}

/// Whether `v` could take a job instead of the pair of orchestrator `this` ([`Picked::has_alternative`]).
fn alternative(v: &PairView, this: &OrchestratorId, exclude: &[OrchestratorId], now: Instant, free_slot: bool) -> bool {
    v.key.orchestrator != *this
        && !exclude.contains(&v.key.orchestrator)
        && !v.client_errors.outlier
        && v.routable_at(now).is_ok()
        && (!free_slot || v.slots.has_free())
}

impl std::ops::Deref for Picked {
    type Target = BoardEntry;

    fn deref(&self) -> &BoardEntry {
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
    pub(crate) retry_at: Option<Instant>,
    /// Pairs excluded because this job already tried them.
    pub(crate) tried: u32,
    /// Routable pairs at their concurrency limit.
    pub(crate) full: u32,
    /// Pairs the job's own `parameters.orchestrators` include/exclude lists leave out.
    pub(crate) excluded_by_job: u32,
    /// Count of pairs per reason, in [`Reason::ALL`] order.
    pub(crate) reasons: Vec<(Reason, u32)>,
}

/// What a selection found.
#[derive(Debug)]
pub(crate) enum Selection {
    /// The pair to try, with the slot taken there (held until the attempt ends).
    Picked(Picked, SlotGuard),
    /// Every pair that could take the job is at its limit: wait in this queue.
    Full(Arc<WaitQueue>),
    /// No orchestrator has ever offered this capability (or none is registered for it).
    Unknown,
    /// Pairs exist but none can take this job now.
    Unavailable(Unavailable),
}

impl std::fmt::Debug for BoardEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BoardEntry({})", self.key)
    }
}

/// Picks a pair for one attempt of a job among `views`, excluding orchestrators in
/// `exclude`, and takes one of its slots: the index of the pair and the slot, or `None` when no
/// eligible pair has a free slot. See the module documentation for how.
///
/// It takes no actor system, so the selection benchmark measures exactly what a job runs.
pub fn pick(
    views: &[SharedView],
    exclude: Exclusions<'_>,
    now: Instant,
    rng: &mut impl Rng,
) -> Option<(usize, SlotGuard)> {
    match pick_with(views, exclude, now, rng, None) {
        Pick::Picked(i, guard) => Some((i, guard)),
        Pick::Wait | Pick::Nothing => None,
    }
}

/// How long a job may still wait for a faster slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Patience {
    /// What it has waited in the queue already.
    pub(crate) waited: Duration,
    /// Jobs in the queue it would wait behind.
    pub(crate) ahead: usize,
}

/// What [`pick_with`] found.
#[derive(Debug)]
pub(crate) enum Pick {
    /// This pair, with the slot taken.
    Picked(usize, SlotGuard),
    /// A faster pair's slot is expected sooner than the free pair would answer: wait.
    Wait,
    /// No eligible pair has a free slot.
    Nothing,
}

/// [`pick`], with the option of waiting for a faster slot ([`worth_waiting`]) for a job with
/// `patience`.
pub(crate) fn pick_with(
    views: &[SharedView],
    exclude: Exclusions<'_>,
    now: Instant,
    rng: &mut impl Rng,
    patience: Option<Patience>,
) -> Pick {
    for _ in 0..PICK_RETRIES {
        let chosen = if views.len() <= FULL_SCAN_MAX {
            match scan(views, exclude, now, rng) {
                Some((i, explored)) => {
                    if !explored && patience.is_some_and(|p| worth_waiting(views, exclude, now, i, p)) {
                        return Pick::Wait;
                    }
                    i
                }
                None => return Pick::Nothing,
            }
        } else {
            match sample(views, exclude, now, rng) {
                Some(i) => i,
                None => return Pick::Nothing,
            }
        };
        // Another worker may have taken the last slot since it was read: choose again.
        if let Some(guard) = views[chosen].read().slots.try_acquire() {
            return Pick::Picked(chosen, guard);
        }
    }
    Pick::Nothing
}

/// Expected time (ms) a job takes on `v`, not counting a wait for its slot: its latency (at
/// least the silence of overdue jobs) times its failure penalty (a failed attempt is retried).
fn service_ms(v: &PairView, now: Instant) -> f64 {
    let latency = crate::score::in_flight_latency(
        v.expected_latency_ms(),
        v.latency_percentiles.map(|p| p.1),
        v.unanswered_ms(now),
    );
    latency.max(0.1) * v.penalty()
}

/// Whether a job with `patience` should wait for a slot of a faster, full pair rather than take
/// `free` (the best pair with a free slot): the faster full pairs (routable, measured, not
/// warming or deprioritised, not excluded) free a slot every `1 / sum(inflight / service)` ms;
/// behind `ahead` jobs, this one starts after `ahead + 1` of those and then takes the fastest
/// such pair's time. It waits when that, plus what it has waited already, is under 0.8 of
/// `free`'s time.
fn worth_waiting(views: &[SharedView], exclude: Exclusions<'_>, now: Instant, free: usize, p: Patience) -> bool {
    let free_ms = service_ms(&views[free].read(), now);
    let waited_ms = p.waited.as_secs_f64() * 1000.0;
    let budget_ms = 0.8 * free_ms - waited_ms;
    if budget_ms <= 0.0 {
        return false;
    }
    let (mut rate, mut fastest) = (0.0f64, f64::INFINITY);
    for (i, view) in views.iter().enumerate() {
        if i == free {
            continue;
        }
        let v = view.read();
        if exclude.blocks(&v).is_some()
            || v.slots.has_free()
            || v.warming
            || v.latency_percentiles.is_none()
            || v.deprioritized_at(now)
            || v.client_errors.outlier
            || v.routable_at(now).is_err()
        {
            continue;
        }
        let ms = service_ms(&v, now);
        if ms < budget_ms {
            rate += f64::from(v.inflight()) / ms;
            fastest = fastest.min(ms);
        }
    }
    rate > 0.0 && (p.ahead as f64 + 1.0) / rate + fastest < budget_ms
}

/// Whether `v` can take this job now: not tried, routable, a free slot.
fn eligible(v: &PairView, exclude: Exclusions<'_>, now: Instant) -> bool {
    exclude.blocks(v).is_none() && v.routable_at(now).is_ok() && v.slots.has_free()
}

/// Whether `v` is due a job to be measured: its breaker is due a trial (its trial permits bound
/// those), or it was never measured or not for [`EXPLORE_INTERVAL`].
fn due(v: &PairView, now: Instant) -> bool {
    v.breaker != crate::breaker::State::Closed
        || v.latency.updated().is_none_or(|t| now.saturating_duration_since(t) >= EXPLORE_INTERVAL)
}

/// Whether `v` takes this job to be measured: it is [`due`], and a breaker trial or this
/// interval's turn (one job per interval across all workers: this claims it).
fn explore(v: &PairView, now: Instant) -> bool {
    due(v, now) && (v.breaker != crate::breaker::State::Closed || v.slots.claim_exploration(now, EXPLORE_INTERVAL))
}

/// How a pair ranks for selection, lower first: a pair deprioritised (after a slow cold start,
/// or for answering far more 4xx than its siblings) only when no other pair has room, then by
/// cost.
fn rank(v: &PairView, now: Instant) -> (bool, f64) {
    (v.deprioritized_at(now) || v.client_errors.outlier, v.cost_at(now))
}

/// Whether a pair other than `best` that this job may use, in good standing on 4xx answers, is
/// routable but full: a job then waits for its slot rather than go to a pair whose answers are
/// mostly 4xx (the clients' requests are the same everywhere).
fn sibling_full(views: &[SharedView], best: usize, exclude: Exclusions<'_>, now: Instant) -> bool {
    views.iter().enumerate().any(|(i, view)| {
        let v = view.read();
        i != best
            && !v.client_errors.outlier
            && exclude.blocks(&v).is_none()
            && v.routable_at(now).is_ok()
            && !v.slots.has_free()
    })
}

/// Full scan: the best-ranked eligible pair, unless another is due exploration (then `true`
/// with it). The scan starts at a random pair so that ties and exploration turns are spread.
fn scan(views: &[SharedView], exclude: Exclusions<'_>, now: Instant, rng: &mut impl Rng) -> Option<(usize, bool)> {
    let start = if views.len() > 1 { rng.random_range(0..views.len()) } else { 0 };
    let order = (0..views.len()).map(|k| (start + k) % views.len());
    let mut best: Option<(usize, (bool, f64), bool)> = None;
    let mut due_seen = 0;
    for i in order.clone() {
        let v = views[i].read();
        if !eligible(&v, exclude, now) {
            continue;
        }
        due_seen += usize::from(due(&v, now));
        let r = rank(&v, now);
        if best.is_none_or(|(_, b, _)| r < b) {
            best = Some((i, r, v.latency.updated().is_some()));
        }
    }
    let (best, _, measured) = best?;
    {
        let v = views[best].read();
        if v.client_errors.outlier && sibling_full(views, best, exclude, now) {
            // Only this pair's exploration turn, else the job waits for a sibling's slot.
            return explore(&v, now).then_some((best, true));
        }
    }
    if !measured {
        // The best has no measurement yet: this job measures it.
        return Some((best, true));
    }
    if due_seen == 0 || (due_seen == 1 && due(&views[best].read(), now)) {
        // Nobody else is due exploration (the usual case: no second pass).
        return Some((best, false));
    }
    // The first other eligible pair due exploration takes this job. A second pass rather than
    // a list from the first: no allocation per job.
    let explored = order.filter(|&i| i != best).find(|&i| {
        let v = views[i].read();
        eligible(&v, exclude, now) && explore(&v, now)
    });
    Some(explored.map_or((best, false), |i| (i, true)))
}

/// Power of two choices among eligible pairs; a sampled pair due exploration wins its sample.
fn sample(views: &[SharedView], exclude: Exclusions<'_>, now: Instant, rng: &mut impl Rng) -> Option<usize> {
    let cost_of = |i: usize| -> Option<f64> {
        let v = views[i].read();
        if !eligible(&v, exclude, now) {
            return None;
        }
        // Ranks folded into one number for the sampler: exploration first, deprioritised last.
        Some(if explore(&v, now) {
            f64::NEG_INFINITY
        } else {
            let (deprioritized, cost) = rank(&v, now);
            if deprioritized {
                cost + 1e12
            } else {
                cost
            }
        })
    };
    p2c(views.len(), cost_of, |n| rng.random_range(0..n))
}

/// Why [`pick`] found nothing among `views`, or `None` when none of them ever offered the
/// capability (the caller reports it as unknown rather than unavailable).
///
/// O(n), but it only runs when nothing could be picked, where the explanation is worth a scan.
pub(crate) fn unavailable(views: &[SharedView], exclude: Exclusions<'_>, now: Instant) -> Option<Unavailable> {
    let mut offered = false;
    let mut why = Unavailable::default();
    let mut counts: HashMap<Reason, u32> = HashMap::new();
    for view in views {
        let v = view.read();
        offered |= v.offered;
        match exclude.blocks(&v) {
            Some(true) => {
                why.tried += 1;
                continue;
            }
            Some(false) => {
                why.excluded_by_job += 1;
                continue;
            }
            None => {}
        }
        match v.routable_at(now) {
            Ok(()) => why.full += 1,
            Err(reason) => {
                if let Unroutable::BreakerOpen(Some(t)) | Unroutable::CapacityBackoff(t) = reason {
                    why.retry_at = Some(why.retry_at.map_or(t, |r: Instant| r.min(t)));
                }
                *counts.entry(reason.reason()).or_default() += 1;
            }
        }
    }
    if !offered {
        return None;
    }
    why.reasons = counts.into_iter().collect();
    why.reasons.sort();
    Some(why)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::RwLock;

    use super::*;

    fn view(orch: &str, slots: u32, latency_ms: f64) -> SharedView {
        let key =
            PairKey { orchestrator: OrchestratorId(orch.into()), capability: Capability::new("depth").expect("valid") };
        let mut v = PairView::new(key, Arc::from("http://x"));
        v.probed = true;
        v.offered = true;
        v.token_ok = true;
        v.capacity_ceiling = Some(slots);
        v.slots.set_limit(slots);
        v.latency = crate::score::PeakEwma::new(latency_ms, Duration::from_secs(10));
        v.latency.observe(latency_ms, Instant::now());
        // Measured just now and explored just now: no exploration turn is due in these tests.
        v.slots.claim_exploration(Instant::now(), EXPLORE_INTERVAL);
        Arc::new(RwLock::new(v))
    }

    #[test]
    fn pick_skips_tried_and_unroutable_and_explains_failure() {
        let now = Instant::now();
        let mut rng = rand::rng();
        let views = [view("a", 1, 10.0), view("b", 0, 10.0), view("c", 1, 10.0)];
        views[1].write().capacity_ceiling = Some(0);
        let tried = [OrchestratorId("a".into())];
        for _ in 0..20 {
            let (i, guard) = pick(&views, Exclusions::tried(&tried), now, &mut rng).expect("c is free");
            assert_eq!(i, 2);
            drop(guard);
        }
        let tried = [OrchestratorId("a".into()), OrchestratorId("c".into())];
        assert!(pick(&views, Exclusions::tried(&tried), now, &mut rng).is_none());
        let why = unavailable(&views, Exclusions::tried(&tried), now).expect("offered");
        assert_eq!((why.tried, why.full, why.reasons), (2, 0, vec![(Reason::NoCapacity, 1)]));
        views[1].write().offered = false;
        views[0].write().offered = false;
        views[2].write().offered = false;
        assert_eq!(unavailable(&views, Exclusions::tried(&tried), now), None);
    }

    #[test]
    fn the_fastest_pair_with_a_free_slot_wins_and_full_pairs_are_reported_full() {
        let now = Instant::now();
        let mut rng = rand::rng();
        let views = [view("slow", 2, 700.0), view("fast", 2, 50.0)];
        let (i, first) = pick(&views, Exclusions::NONE, now, &mut rng).expect("free");
        assert_eq!(i, 1, "fast");
        let (i, second) = pick(&views, Exclusions::NONE, now, &mut rng).expect("free");
        assert_eq!(i, 1, "still fast: half full costs 75 < 700");
        let (i, third) = pick(&views, Exclusions::NONE, now, &mut rng).expect("free");
        assert_eq!(i, 0, "fast is full: slow gets it");
        let fourth = pick(&views, Exclusions::NONE, now, &mut rng).expect("one slot left on slow");
        assert!(pick(&views, Exclusions::NONE, now, &mut rng).is_none(), "every slot taken");
        let why = unavailable(&views, Exclusions::NONE, now).expect("offered");
        assert_eq!((why.full, why.reasons.len()), (2, 0));
        drop((first, second, third, fourth));
    }

    #[test]
    fn every_unmeasured_pair_gets_its_exploration_turn() {
        let now = Instant::now();
        let mut rng = rand::rng();
        let fast = view("fast", 4, 30.0);
        let unmeasured = |name: &str| {
            let v = view(name, 1, 100.0);
            let mut w = v.write();
            w.latency = crate::score::PeakEwma::new(100.0, Duration::from_secs(10));
            w.slots = Arc::default();
            w.slots.set_limit(1);
            drop(w);
            v
        };
        let views = [fast, unmeasured("broken"), unmeasured("slow")];
        let picks: Vec<usize> =
            (0..6).map(|_| pick(&views, Exclusions::NONE, now, &mut rng).map(|(i, _)| i).expect("free")).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 1, "{picks:?}");
        assert_eq!(picks.iter().filter(|&&i| i == 2).count(), 1, "{picks:?}");
    }

    #[test]
    fn a_pair_answering_mostly_4xx_ranks_last_and_takes_no_overflow() {
        let now = Instant::now();
        let mut rng = rand::rng();
        let views = [view("good", 1, 50.0), view("bad", 4, 5.0)];
        views[1].write().client_errors.outlier = true;
        let (i, held) = pick(&views, Exclusions::NONE, now, &mut rng).expect("free");
        assert_eq!(i, 0, "ranked last although it is faster");
        // `good` is full: the job waits for it rather than go to `bad`.
        assert!(pick(&views, Exclusions::NONE, now, &mut rng).is_none());
        assert!(unavailable(&views, Exclusions::NONE, now).is_some_and(|why| why.full > 0), "reported full: queue");
        // Its exploration turn still comes, once per interval.
        let later = now + EXPLORE_INTERVAL + Duration::from_secs(1);
        let (i, explored) = pick(&views, Exclusions::NONE, later, &mut rng).expect("exploration turn");
        assert_eq!(i, 1);
        assert!(pick(&views, Exclusions::NONE, later, &mut rng).is_none(), "one per interval");
        // When the job may not go to `good` (tried already), `bad` is the last candidate.
        let tried = [OrchestratorId("good".into())];
        assert_eq!(pick(&views, Exclusions::tried(&tried), now, &mut rng).map(|p| p.0), Some(1));
        // And `good`'s attempts are not cut short (per-try, stuck) for `bad`'s sake.
        let good = OrchestratorId("good".into());
        assert!(!alternative(&views[1].read(), &good, &[], now, true));
        views[1].write().client_errors.outlier = false;
        assert!(alternative(&views[1].read(), &good, &[], now, true));
        drop((held, explored));
    }

    #[test]
    fn a_job_waits_for_a_faster_slot_when_that_finishes_it_sooner_and_only_then() {
        let now = Instant::now();
        let mut rng = rand::rng();
        // Two fast pairs (50 ms, 4 slots each) full; a 700 ms pair idle.
        let measured = |v: SharedView| {
            let ms = v.read().latency.estimate_ms();
            v.write().latency_percentiles = Some((ms, ms));
            v
        };
        let views = [view("fast-a", 4, 50.0), view("fast-b", 4, 50.0), view("slow", 4, 700.0)].map(measured);
        let held: Vec<SlotGuard> =
            (0..8).map(|_| pick(&views, Exclusions::NONE, now, &mut rng).expect("free").1).collect();
        let fresh = Patience { waited: Duration::ZERO, ahead: 0 };
        // A slot of the fast pairs frees every ~6 ms: wait (~56 ms) rather than take 700 ms.
        assert!(matches!(pick_with(&views, Exclusions::NONE, now, &mut rng, Some(fresh)), Pick::Wait));
        // Behind 200 jobs the wait (~1.3 s) is longer than the slow pair's time: take it.
        let crowded = Patience { ahead: 200, ..fresh };
        assert!(matches!(pick_with(&views, Exclusions::NONE, now, &mut rng, Some(crowded)), Pick::Picked(2, _)));
        // A job that already waited most of what it would gain takes the free slot.
        let waited = Patience { waited: Duration::from_millis(600), ..fresh };
        assert!(matches!(pick_with(&views, Exclusions::NONE, now, &mut rng, Some(waited)), Pick::Picked(2, _)));
        // No patience (failing over, or a plain pick): the free slot.
        assert!(matches!(pick_with(&views, Exclusions::NONE, now, &mut rng, None), Pick::Picked(2, _)));
        drop(held);
        // A pair only a little slower than the full ones is taken at once.
        let near = [view("fast", 1, 50.0), view("near", 1, 55.0)].map(measured);
        let _busy = pick(&near, Exclusions::NONE, now, &mut rng).expect("free");
        assert!(matches!(pick_with(&near, Exclusions::NONE, now, &mut rng, Some(fresh)), Pick::Picked(1, _)));
    }

    #[test]
    fn a_pair_not_measured_lately_gets_one_job_per_interval() {
        let mut rng = rand::rng();
        let views = [view("fast", 4, 50.0), view("slow", 4, 700.0)];
        let later = Instant::now() + EXPLORE_INTERVAL + Duration::from_secs(1);
        // Both are stale by then; fast is the best anyway, slow is explored once.
        let picks: Vec<usize> =
            (0..10).map(|_| pick(&views, Exclusions::NONE, later, &mut rng).map(|(i, _)| i).expect("free")).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 1, "{picks:?}");
    }
}

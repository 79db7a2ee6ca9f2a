//! `Dispatcher`: a read-optimised scoreboard per capability, derived from the views pair
//! actors publish. For each job attempt it picks the healthiest routable pair by power of two
//! choices (O(1) per pick), excluding orchestrators already tried for that job.
//!
//! The supervisor keeps it in step with the registry through [`RegisterPair`] and
//! [`UnregisterPair`]; selection itself reads the pairs' published views directly.

use std::collections::HashMap;
use std::time::Instant;

use actix::prelude::*;
use rand::Rng;

use crate::capability::Capability;
use crate::orchestrator::OrchestratorId;
use crate::pair::{PairActor, PairKey, SharedView, Unroutable};
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
}

#[derive(Default)]
struct Board {
    slots: Vec<Slot>,
    index: HashMap<OrchestratorId, usize>,
}

/// The actor.
#[derive(Default)]
pub struct Dispatcher {
    boards: HashMap<Capability, Board>,
    mailbox_capacity: usize,
}

impl Dispatcher {
    /// A dispatcher with the given mailbox capacity (it sees one message per attempt).
    pub fn new(mailbox_capacity: usize) -> Self {
        Self { boards: HashMap::new(), mailbox_capacity }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity.max(16));
    }
}

/// Adds a pair to its capability's board (or replaces it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterPair(pub Slot);

impl Handler<RegisterPair> for Dispatcher {
    type Result = ();

    fn handle(&mut self, RegisterPair(slot): RegisterPair, _ctx: &mut Self::Context) {
        let board = self.boards.entry(slot.key.capability.clone()).or_default();
        match board.index.get(&slot.key.orchestrator) {
            Some(&i) => board.slots[i] = slot,
            None => {
                board.index.insert(slot.key.orchestrator.clone(), board.slots.len());
                board.slots.push(slot);
            }
        }
    }
}

/// Removes a pair from its board (its orchestrator was removed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnregisterPair(pub PairKey);

impl Handler<UnregisterPair> for Dispatcher {
    type Result = ();

    fn handle(&mut self, UnregisterPair(key): UnregisterPair, _ctx: &mut Self::Context) {
        let Some(board) = self.boards.get_mut(&key.capability) else {
            return;
        };
        let Some(i) = board.index.remove(&key.orchestrator) else {
            return;
        };
        board.slots.swap_remove(i);
        if let Some(moved) = board.slots.get(i) {
            board.index.insert(moved.key.orchestrator.clone(), i);
        }
        if board.slots.is_empty() {
            self.boards.remove(&key.capability);
        }
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
    Picked(Slot),
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
        let Some(board) = self.boards.get(&msg.capability) else {
            return MessageResult(Selection::Unknown);
        };
        let now = Instant::now();
        let mut rng = rand::rng();
        let eligible = |i: usize| -> Option<f64> {
            let slot = &board.slots[i];
            if msg.exclude.contains(&slot.key.orchestrator) {
                return None;
            }
            let v = slot.view.read();
            v.routable_at(now).ok()?;
            Some(v.cost_at(now))
        };
        if let Some(i) = p2c(board.slots.len(), eligible, |n| rng.random_range(0..n)) {
            return MessageResult(Selection::Picked(board.slots[i].clone()));
        }
        // Failure path: explain why (O(n), only when nothing is routable).
        let mut offered = false;
        let mut why = Unavailable::default();
        let mut counts: HashMap<&'static str, u32> = HashMap::new();
        for slot in &board.slots {
            let v = slot.view.read();
            offered |= v.offered;
            if msg.exclude.contains(&slot.key.orchestrator) {
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
            return MessageResult(Selection::Unknown);
        }
        why.reasons = counts.into_iter().collect();
        why.reasons.sort();
        MessageResult(Selection::Unavailable(why))
    }
}

/// Pairs on the board per capability (for the supervisor view and tests).
#[derive(Message)]
#[rtype(result = "Vec<(Capability, usize)>")]
pub struct BoardSizes;

impl Handler<BoardSizes> for Dispatcher {
    type Result = MessageResult<BoardSizes>;

    fn handle(&mut self, _msg: BoardSizes, _ctx: &mut Self::Context) -> Self::Result {
        let mut v: Vec<_> = self.boards.iter().map(|(c, b)| (c.clone(), b.slots.len())).collect();
        v.sort();
        MessageResult(v)
    }
}

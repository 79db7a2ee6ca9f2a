//! The attempt loop of an app call or a session reservation, the BYOC router's steps on the
//! app boards: **select** a runner with a free slot ([`Scoreboard::select`], the BYOC
//! selection), **admit** it ([`admit_on`], the BYOC admission: breaker, trials), **call** it
//! ([`super::forward`]), **account** ([`classify`](super::classify::classify) then the pair's
//! `Record`, the BYOC health model), **decide**: relay the answer, or fail over to the next
//! runner while nothing has reached the client.
//!
//! When every runner is at its capacity, a request waits in the app's queue for a slot, as a
//! BYOC job waits in its capability's (bounded by the app's `queue_timeout` and `queue_depth`);
//! then `503 no-capacity`, which the client can retry.

use std::sync::Arc;
use std::time::Duration;

use crate::orchestrator::OrchestratorId;
use crate::outcome::Outcome;
use crate::pair::{Record, SlotGuard};
use crate::queue::{Ticket, Wait};
use crate::route::admit_on;
use crate::scoreboard::{Exclusions, Picked, Selection};

use super::error::AppError;
use super::record::Mode;
use super::{AppName, Boards};

/// How app calls and reservations run.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Most runners tried for one call or reservation.
    pub max_attempts: usize,
    /// Bound on a runner's answer head (status and headers) to a call or reservation.
    pub head_timeout: Duration,
    /// Bound on waiting for a pair actor.
    pub mailbox_timeout: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self { max_attempts: 3, head_timeout: Duration::from_secs(30), mailbox_timeout: Duration::from_secs(2) }
    }
}

/// A runner picked, admitted, with a slot held.
pub(crate) struct Placed {
    pub(crate) picked: Picked,
    pub(crate) guard: SlotGuard,
    /// The runner's URL from its discovery record (`.../app` or `.../session`).
    pub(crate) url: Arc<str>,
    pub(crate) lease: Option<u64>,
}

/// What the runners tried so far said.
#[derive(Default)]
pub(crate) struct Tries {
    pub(crate) tried: Vec<OrchestratorId>,
    pub(crate) last: Option<String>,
}

impl Tries {
    /// The error that ends the request when no runner is left.
    pub(crate) fn exhausted(&mut self, app: &AppName) -> AppError {
        AppError::NoRunner { app: app.clone(), tried: self.tried.len(), last: self.last.take() }
    }
}

/// How long a request may wait for a runner's slot, and how many may wait (the app's
/// `queue_timeout` and `queue_depth`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueBound {
    pub(crate) depth: usize,
    pub(crate) timeout: Duration,
}

/// Selects and admits a runner of `app` in `mode`, skipping the runners in `tries`. When every
/// runner that could take it is at its capacity, the request waits in the app's queue (as a
/// BYOC job waits in its capability's) for a slot, up to `queue.timeout`; past it, or with the
/// queue full, `503 no-capacity`.
pub(crate) async fn place(
    boards: &Boards,
    settings: &DispatchSettings,
    app: &AppName,
    mode: Mode,
    tries: &mut Tries,
    queue: QueueBound,
) -> Result<Placed, AppError> {
    let key = app.board_key();
    let until = std::time::Instant::now() + queue.timeout;
    let mut ticket: Option<Ticket> = None;
    loop {
        match boards.of(mode).select(&key, Exclusions::tried(&tries.tried), None) {
            Selection::Picked(picked, guard) => {
                if let Some(t) = ticket.take() {
                    t.dispatched();
                }
                match admit_on(&picked, settings.head_timeout, settings.mailbox_timeout).await {
                    Ok(a) => return Ok(Placed { picked, guard, url: a.service_addr, lease: a.lease }),
                    Err(reason) => {
                        tracing::debug!(pair = %picked.key, reason = reason.map(|r| r.as_str()), "runner refused admission");
                        tries.tried.push(picked.key.orchestrator.clone());
                    }
                }
            }
            Selection::Full(q) => match ticket.as_mut() {
                // Joined, then select again before sleeping: a slot freed in between would
                // wake nobody. A request failing over goes to the front (it waited already).
                None => match q.join(queue.depth, !tries.tried.is_empty(), 0) {
                    Ok(t) => ticket = Some(t),
                    Err(_) => return Err(AppError::NoCapacity(app.clone())),
                },
                // Woken, but another request took the slot: back to the head, check again.
                Some(t) if t.is_woken() => t.requeue(),
                Some(t) => match t.wait(until).await {
                    Wait::Woken => {}
                    Wait::TimedOut => {
                        if let Some(t) = ticket.take() {
                            t.give_up(true);
                        }
                        return Err(AppError::NoCapacity(app.clone()));
                    }
                    Wait::Displaced => return Err(AppError::NoCapacity(app.clone())),
                },
            },
            Selection::Unknown if tries.tried.is_empty() => {
                return Err(match boards.apps().iter().find(|(a, _)| a == app) {
                    Some(_) => AppError::WrongMode { app: app.clone(), mode: mode.as_str() },
                    None => AppError::UnknownApp(app.to_string()),
                })
            }
            Selection::Unknown | Selection::Unavailable(_) => return Err(tries.exhausted(app)),
        }
    }
}

/// Tells the pair how an attempt ended (its breaker, latency and slots learn from it), and
/// whether the request may go to another runner.
pub(crate) async fn account(settings: &DispatchSettings, placed: &Placed, outcome: &Outcome, elapsed: Duration) {
    if matches!(outcome, Outcome::Success | Outcome::ClientError(_)) {
        placed.guard.answered();
    }
    let record = Record { lease: placed.lease, outcome: outcome.clone(), elapsed, paid: false };
    if placed.picked.addr.send(record).timeout(settings.mailbox_timeout).await.is_err() {
        metrics::counter!(crate::metrics::MAILBOX_ERRORS_TOTAL, "actor" => "pair").increment(1);
    }
}

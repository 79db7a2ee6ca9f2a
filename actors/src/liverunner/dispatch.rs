//! The attempt loop of an app call or a session reservation, the BYOC router's steps on the
//! app boards: **select** a runner with a free slot ([`Scoreboard::select`], the BYOC
//! selection), **admit** it ([`admit_on`], the BYOC admission: breaker, trials), **call** it
//! ([`super::forward`]), **account** ([`classify`](super::classify::classify) then the pair's
//! `Record`, the BYOC health model), **decide**: relay the answer, or fail over to the next
//! runner while nothing has reached the client.
//!
//! Unlike a BYOC job, nothing waits in a queue: a runner's capacity is its sessions, and a full
//! app is a clean `503 no-capacity` the client can retry.

use std::sync::Arc;
use std::time::Duration;

use crate::orchestrator::OrchestratorId;
use crate::outcome::Outcome;
use crate::pair::{Record, SlotGuard};
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

/// Selects and admits a runner of `app` in `mode`, skipping the runners in `tries`.
pub(crate) async fn place(
    boards: &Boards,
    settings: &DispatchSettings,
    app: &AppName,
    mode: Mode,
    tries: &mut Tries,
) -> Result<Placed, AppError> {
    let key = app.board_key();
    loop {
        match boards.of(mode).select(&key, Exclusions::tried(&tries.tried), None) {
            Selection::Picked(picked, guard) => {
                match admit_on(&picked, settings.head_timeout, settings.mailbox_timeout).await {
                    Ok(a) => return Ok(Placed { picked, guard, url: a.service_addr, lease: a.lease }),
                    Err(reason) => {
                        tracing::debug!(pair = %picked.key, reason = reason.map(|r| r.as_str()), "runner refused admission");
                        tries.tried.push(picked.key.orchestrator.clone());
                    }
                }
            }
            Selection::Full(_) => return Err(AppError::NoCapacity(app.clone())),
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

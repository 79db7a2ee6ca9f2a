//! Placing an attempt: select a pair with a free slot (waiting in the capability's queue when
//! every pair is full, and for a new capability's first probes when it has none yet), then
//! admit the job there.

use std::sync::Arc;
use std::time::Duration;

use crate::pair::{Reason, SlotGuard, Unroutable};
use crate::queue::{ClientKey, Ticket, Wait, WaitQueue};
use crate::scoreboard::{Picked, Selection};
use crate::supervisor::Availability;

use super::state::JobState;
use super::{RouteError, Router};

/// A pair chosen for an attempt, with a slot taken there and the job admitted.
pub(crate) struct Placed {
    /// The pair.
    pub(crate) picked: Picked,
    /// The slot the attempt holds until it ends.
    pub(crate) guard: SlotGuard,
    /// Where to send the job.
    pub(crate) service_addr: Arc<str>,
    /// The pair actor's lease, for a half-open trial.
    pub(crate) lease: Option<u64>,
    /// Whether this is a half-open trial.
    pub(crate) trial: bool,
}

impl Router {
    /// Finds a pair for the next attempt of the job in `s`, or the error that ends the job.
    pub(crate) async fn place(&self, s: &mut JobState<'_>) -> Result<Placed, RouteError> {
        let cap = s.capability();
        let mut ticket: Option<Ticket> = None;
        loop {
            // A new job may wait for a faster slot (counting what it has waited); one failing
            // over takes what is free.
            let patience = s.attempts.is_empty().then(|| ticket.as_ref().map_or(Duration::ZERO, Ticket::waited));
            match self.scoreboard.select(cap, s.exclusions(), patience) {
                Selection::Picked(picked, guard) => {
                    if let Some(t) = ticket.take() {
                        t.dispatched();
                    }
                    match self.admit(&picked, s.remaining()).await {
                        Ok(admitted) => {
                            return Ok(Placed {
                                picked,
                                guard,
                                service_addr: admitted.service_addr,
                                lease: admitted.lease,
                                trial: admitted.trial,
                            })
                        }
                        Err(reason) => {
                            tracing::debug!(pair = %picked.key, reason = reason.map(Unroutable::as_str), "admission refused; selecting again");
                            s.refused(picked.key.orchestrator.clone(), reason)?;
                        }
                    }
                }
                Selection::Full(queue) => match ticket.as_mut() {
                    // Joined, then select again before sleeping: a slot freed in between
                    // would wake nobody.
                    None => ticket = Some(join(&queue, s)?),
                    // Woken, but another job took the slot: back to the head, check again.
                    Some(t) if t.is_woken() => t.requeue(),
                    Some(t) => match t.wait(s.queue_until()).await {
                        Wait::Woken => {}
                        Wait::TimedOut => {
                            let waited = t.waited();
                            if let Some(t) = ticket.take() {
                                t.give_up(true);
                            }
                            return Err(RouteError::QueueTimeout {
                                capability: cap.clone(),
                                waited,
                                retry_after: queue.retry_after(),
                                attempts: std::mem::take(&mut s.attempts),
                            });
                        }
                        // A job of a client holding fewer places took this one's place.
                        Wait::Displaced => return Err(queue_full(&queue, s)),
                    },
                },
                Selection::Unknown if !s.ensured && s.attempts.is_empty() => {
                    s.ensured = true;
                    match self.ensure(cap).await? {
                        Availability::Offered => {}
                        Availability::NotOffered => return Err(RouteError::UnknownCapability(cap.clone())),
                        Availability::RateLimited(retry_after) => {
                            return Err(RouteError::DiscoveryRateLimited { capability: cap.clone(), retry_after })
                        }
                        Availability::LimitReached => return Err(RouteError::CapabilityLimit(cap.clone())),
                    }
                }
                Selection::Unknown if s.attempts.is_empty() => return Err(RouteError::UnknownCapability(cap.clone())),
                Selection::Unknown => return Err(s.exhausted()),
                Selection::Unavailable(why)
                    if !s.ensured && why.reasons.iter().any(|(r, _)| *r == Reason::TokenPending) =>
                {
                    // Pairs just started (gateway start-up, hot-add, restart): wait for their
                    // first probes rather than refuse the job, also after a first attempt
                    // failed (the other pairs may just not have probed yet).
                    s.ensured = true;
                    self.ensure(cap).await?;
                }
                Selection::Unavailable(why) => {
                    if let Some(t) = ticket.take() {
                        // Nothing can take the job any more: leave, passing any wake on.
                        t.give_up(false);
                    }
                    return Err(s.none_routable(why));
                }
            }
        }
    }
}

/// Joins the capability's queue: at the back for a new job, at the front for one failing over
/// (it already waited for an attempt).
fn join(queue: &Arc<WaitQueue>, s: &mut JobState<'_>) -> Result<Ticket, RouteError> {
    let client = client_key(s.job.client_addr);
    queue.join(s.policy.queue_depth as usize, !s.attempts.is_empty(), client).map_err(|full| RouteError::QueueFull {
        capability: s.capability().clone(),
        depth: full.depth,
        retry_after: full.retry_after,
        attempts: std::mem::take(&mut s.attempts),
    })
}

/// The `queue-full` answer for a job that lost its place.
fn queue_full(queue: &WaitQueue, s: &mut JobState<'_>) -> RouteError {
    let report = queue.report();
    RouteError::QueueFull {
        capability: s.capability().clone(),
        depth: report.depth,
        retry_after: queue.retry_after(),
        attempts: std::mem::take(&mut s.attempts),
    }
}

/// Who a job is from, for the queue's per-client share: its client's address (0: unknown).
fn client_key(addr: Option<std::net::IpAddr>) -> ClientKey {
    use std::hash::{Hash, Hasher};
    let Some(addr) = addr else { return 0 };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    addr.hash(&mut h);
    h.finish().max(1)
}

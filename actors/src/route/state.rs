//! What the attempt loop knows about one job between its steps: its policy and deadlines,
//! the orchestrators it tried, the attempts it made, and the rules that end the loop
//! (attempt limit, retry timeout).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capability::Capability;
use crate::orchestrator::OrchestratorId;
use crate::outcome::Outcome;
use crate::pair::{Reason, Unroutable};
use crate::policy::Effective;
use crate::protocol::client::UpstreamError;
use crate::scoreboard::{Exclusions, Unavailable};

use super::deadline::{self, Timeout};
use super::{AttemptKind, AttemptReport, Job, RouteError};

/// Admission refusals tolerated per job (a pair's state can change between its published view
/// and the admit; each refusal excludes that pair).
const MAX_REFUSALS: usize = 16;

/// One job's progress through the loop.
pub(crate) struct JobState<'a> {
    /// The job.
    pub(crate) job: &'a Job,
    /// Its capability's policy, read once.
    pub(crate) policy: Arc<Effective>,
    /// When routing the job started.
    pub(crate) started: Instant,
    /// `timeout_seconds + 5 s` after `started`: nothing outlives it.
    pub(crate) deadline: Instant,
    /// Orchestrators already tried (or that refused admission): excluded from selection.
    pub(crate) tried: Vec<OrchestratorId>,
    /// The failed attempts so far.
    pub(crate) attempts: Vec<AttemptReport>,
    /// Why pairs refused admission (their view was a moment behind), for the 503's reasons.
    refused: Vec<Unroutable>,
    /// Admission refusals, with or without a reason.
    refusals: usize,
    /// Capability discovery already waited for (at most once per job).
    pub(crate) ensured: bool,
}

impl<'a> JobState<'a> {
    pub(crate) fn new(job: &'a Job, policy: Arc<Effective>, started: Instant) -> Self {
        Self {
            job,
            policy,
            started,
            deadline: deadline::job_deadline(started, job.client.timeout_seconds),
            tried: Vec::new(),
            attempts: Vec::new(),
            refused: Vec::new(),
            refusals: 0,
            ensured: false,
        }
    }

    /// The job's capability.
    pub(crate) fn capability(&self) -> &'a Capability {
        &self.job.client.capability
    }

    /// The orchestrators the next attempt may not go to: those tried, and those the job's
    /// `parameters.orchestrators` leaves out.
    pub(crate) fn exclusions(&self) -> Exclusions<'_> {
        let filter = &self.job.client.orchestrators;
        Exclusions { tried: &self.tried, filter: (!filter.is_empty()).then_some(filter) }
    }

    /// Time left before the job's deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether a new attempt may start now; the error that ends the job otherwise.
    pub(crate) fn may_attempt(&mut self) -> Result<(), RouteError> {
        if self.attempts.len() >= self.policy.max_attempts as usize {
            return Err(self.exhausted());
        }
        if !self.attempts.is_empty() && self.remaining().is_zero() {
            return Err(self.job_timeout());
        }
        if !self.attempts.is_empty() && self.started.elapsed() >= self.policy.retry_timeout {
            return Err(self.retry_timeout());
        }
        Ok(())
    }

    /// Whether, should the coming attempt fail, another may start: within the attempt limit
    /// and the retry timeout.
    pub(crate) fn may_retry(&self) -> bool {
        self.attempts.len() + 1 < self.policy.max_attempts as usize
            && self.started.elapsed() < self.policy.retry_timeout
    }

    /// Until when a job may wait in the queue: its deadline, the capability's queue timeout
    /// and, for a job failing over, the retry timeout.
    pub(crate) fn queue_until(&self) -> Instant {
        let mut until = self.deadline.min(self.started + self.policy.queue_timeout);
        if !self.attempts.is_empty() {
            until = until.min(self.started + self.policy.retry_timeout);
        }
        until
    }

    /// A pair refused admission: it is excluded, and its reason kept. Too many refusals end
    /// the job.
    pub(crate) fn refused(
        &mut self,
        orchestrator: OrchestratorId,
        reason: Option<Unroutable>,
    ) -> Result<(), RouteError> {
        self.tried.push(orchestrator);
        self.refused.extend(reason);
        self.refusals += 1;
        if self.refusals > MAX_REFUSALS {
            return Err(self.exhausted());
        }
        Ok(())
    }

    /// An attempt failed with `outcome`: it is reported, its orchestrator excluded. A time-out
    /// at the job's own deadline ends the job with that error; another time-out past the retry
    /// timeout ends it with the retry timeout's.
    pub(crate) fn failed(
        &mut self,
        orchestrator: OrchestratorId,
        report: AttemptReport,
        outcome: &Outcome,
    ) -> Result<(), RouteError> {
        let fired = report.timeout;
        self.attempts.push(report);
        self.tried.push(orchestrator);
        if fired == Some(Timeout::Job) {
            return Err(self.job_timeout());
        }
        let timed_out = matches!(outcome, Outcome::Failed(UpstreamError::Timeout(_)) | Outcome::Stuck(_));
        if timed_out && self.started.elapsed() >= self.policy.retry_timeout {
            return Err(self.retry_timeout());
        }
        Ok(())
    }

    fn retry_timeout(&mut self) -> RouteError {
        RouteError::RetryTimeout { timeout: self.policy.retry_timeout, attempts: std::mem::take(&mut self.attempts) }
    }

    fn job_timeout(&mut self) -> RouteError {
        RouteError::JobTimeout {
            timeout_seconds: self.job.client.timeout_seconds,
            attempts: std::mem::take(&mut self.attempts),
        }
    }

    /// The error once no further attempt will be made. When every attempt was refused for
    /// capacity, the pool is full, not broken: that is a 503 with `Retry-After`, not a 502.
    pub(crate) fn exhausted(&mut self) -> RouteError {
        self.exhausted_with(None)
    }

    /// [`JobState::exhausted`], saying why the orchestrators not tried could not take the job.
    fn exhausted_with(&mut self, others: Option<Unavailable>) -> RouteError {
        let attempts = std::mem::take(&mut self.attempts);
        if !attempts.is_empty() && attempts.iter().all(|a| a.kind == AttemptKind::CapacityRefused) {
            let why = Unavailable {
                retry_at: None,
                tried: 0,
                full: 0,
                excluded_by_job: 0,
                reasons: vec![(Reason::CapacityBackoff, attempts.len() as u32)],
            };
            return RouteError::NoneRoutable {
                capability: self.capability().clone(),
                why,
                retry_after: Some(1),
                attempts,
            };
        }
        if !attempts.is_empty() && attempts.iter().all(|a| a.kind == AttemptKind::OrchestratorRefused) {
            return RouteError::OrchestratorRefused { attempts };
        }
        RouteError::AttemptsExhausted { attempts, others }
    }

    /// Nothing can take the job: the 503 that says why, counting pairs that refused admission
    /// under their reason rather than as "already tried".
    pub(crate) fn none_routable(&mut self, mut why: Unavailable) -> RouteError {
        for reason in &self.refused {
            why.tried = why.tried.saturating_sub(1);
            match why.reasons.iter_mut().find(|(r, _)| *r == reason.reason()) {
                Some((_, n)) => *n += 1,
                None => why.reasons.push((reason.reason(), 1)),
            }
            if let Unroutable::BreakerOpen(Some(t)) | Unroutable::CapacityBackoff(t) = *reason {
                why.retry_at = Some(why.retry_at.map_or(t, |r| r.min(t)));
            }
        }
        why.reasons.sort();
        if why.full == 0
            && !self.attempts.is_empty()
            && self.attempts.iter().all(|a| a.kind == AttemptKind::OrchestratorRefused)
        {
            // No alternative: the client gets the orchestrators' own answers.
            return RouteError::OrchestratorRefused { attempts: std::mem::take(&mut self.attempts) };
        }
        if !self.attempts.is_empty() && why.full == 0 {
            // One rule: once an attempt was made and failed, and nothing else can take the job,
            // the answer is the failed attempts (502), saying why the others could not; a 503
            // means no attempt could be made (or the pool is full).
            return self.exhausted_with(Some(why));
        }
        let retry_after =
            why.retry_at.map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64().ceil().max(1.0) as u64);
        RouteError::NoneRoutable {
            capability: self.capability().clone(),
            why,
            retry_after,
            attempts: std::mem::take(&mut self.attempts),
        }
    }
}

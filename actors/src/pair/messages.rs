//! The messages a pair actor handles, one handler each: admission of a trial (`Admit`), accounting
//! (`Record`, `DrainTally`, `Settle`), node-level signals (`PeerUnreachable`), operator and
//! supervisor commands (`SetPolicy`, `SetEnabled`, `SetLabel`, `Retire`, `ForceBreaker`, `GetView`,
//! `ClientErrorVerdict`), and fault injection (`Crash`, tests only).

use super::*;

/// A permission to send one job to this pair.
#[derive(Debug, Clone)]
pub(crate) struct Permit {
    /// Lease id to quote in [`Record`].
    pub(crate) lease: u64,
    /// Where to send the job.
    pub(crate) service_addr: Arc<str>,
    /// Whether this is a half-open trial call.
    pub(crate) trial: bool,
}

/// Asks the pair to admit one job that may run for up to `timeout`.
#[derive(Message)]
#[rtype(result = "Result<Permit, Unroutable>")]
pub(crate) struct Admit {
    /// The attempt's own deadline (the lease expires after it plus slack).
    pub(crate) timeout: Duration,
}

impl Handler<Admit> for PairActor {
    type Result = Result<Permit, Unroutable>;

    fn handle(&mut self, msg: Admit, _ctx: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        // Everything but the breaker is decided by the published view (one source of truth).
        let refusal = {
            let v = self.view.read();
            match v.routable_at(now) {
                Err(Unroutable::BreakerOpen(_)) | Ok(()) => None,
                Err(other) => Some(other),
            }
        };
        if let Some(reason) = refusal {
            return Err(reason);
        }
        let Some(service_addr) = self.service_addr.clone() else {
            return Err(Unroutable::TokenUnavailable);
        };
        let (admission, transition) = self.breaker.admit(now, self.slots.pool(now));
        if let Some(t) = transition {
            self.on_transition(t, "admit");
        }
        let trial = match admission {
            Admission::Allowed => false,
            Admission::Trial => true,
            Admission::Refused(until) => {
                self.publish();
                return Err(Unroutable::BreakerOpen(until));
            }
        };
        let lease = self.next_lease;
        self.next_lease += 1;
        self.leases.insert(lease, Lease { deadline: now + msg.timeout + self.settings.lease_slack, trial });
        self.publish();
        Ok(Permit { lease, service_addr, trial })
    }
}

/// Reports how an admitted job ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Record {
    /// The lease from [`Permit`], or `None` for a call admitted on the fast path
    /// ([`PairView::fast_admission`]).
    pub(crate) lease: Option<u64>,
    /// The outcome.
    pub(crate) outcome: Outcome,
    /// How long the call took.
    pub(crate) elapsed: Duration,
    /// The call carried a payment (a refusal after one backs the pair off).
    pub(crate) paid: bool,
}

impl Handler<Record> for PairActor {
    type Result = ();

    fn handle(&mut self, msg: Record, ctx: &mut Self::Context) {
        let now = Instant::now();
        let trial = match msg.lease {
            None => false,
            Some(id) => match self.leases.remove(&id) {
                Some(lease) => lease.trial,
                None => {
                    // Expired or from before a restart: the breaker already moved on without it.
                    tracing::debug!(pair = %self.key, orchestrator_label = self.label().as_deref(), lease = id, "record for an unknown lease ignored");
                    return;
                }
            },
        };
        self.account(Call { trial, paid: msg.paid }, &msg.outcome, msg.elapsed, now, ctx);
        self.publish();
    }
}

/// Samples wait in the pair's [`Tally`] (the router deposited the first of a batch): drain
/// them shortly, so that a busy pair is accounted in batches rather than per job.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DrainTally;

/// How long a drain waits for more samples.
const TALLY_BATCH: Duration = Duration::from_millis(10);

impl Handler<DrainTally> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: DrainTally, ctx: &mut Self::Context) {
        if self.drain_scheduled {
            return;
        }
        self.drain_scheduled = true;
        ctx.run_later(TALLY_BATCH, |act, ctx| {
            act.drain_scheduled = false;
            act.drain_tally(ctx);
        });
    }
}

/// Drains the pair's [`Tally`] now, so that what is read next (admin views, an export, the
/// final flush) includes every answered job.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Settle;

impl Handler<Settle> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: Settle, ctx: &mut Self::Context) {
        self.drain_tally(ctx);
    }
}

/// A sibling pair on the same orchestrator could not connect: this pair leaves rotation at
/// once and re-probes (a container crash is a node-level event).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PeerUnreachable;

impl Handler<PeerUnreachable> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: PeerUnreachable, ctx: &mut Self::Context) {
        if self.retired || self.node_unreachable {
            return;
        }
        self.mark_unreachable(ctx);
        self.publish();
    }
}

/// The supervisor's comparison of this pair's share of 4xx answers with its siblings'
/// ([`crate::client_errors::outliers`]): `Some(baseline)` when it stands far above the lowest
/// sibling share (`baseline`), so selection ranks it last; `None` when it no longer does.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ClientErrorVerdict(pub(crate) Option<f64>);

impl Handler<ClientErrorVerdict> for PairActor {
    type Result = ();

    fn handle(&mut self, ClientErrorVerdict(verdict): ClientErrorVerdict, _ctx: &mut Self::Context) {
        let share = self.client_errors.share() * 100.0;
        match verdict {
            Some(baseline) if !self.client_errors.outlier => {
                tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(),
                "answers 4xx to {share:.0} % of jobs while a sibling answers {:.0} %: deprioritised (its 4xx answers are still relayed)",
                baseline * 100.0)
            }
            None if self.client_errors.outlier => {
                tracing::info!(pair = %self.key, orchestrator_label = self.label().as_deref(), "its share of 4xx answers ({share:.0} %) is back near its siblings': no longer deprioritised")
            }
            _ => {}
        }
        self.client_errors.outlier = verdict.is_some();
        self.publish();
    }
}

/// Replaces the capability policy this pair follows (operator changed it).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetPolicy(pub(crate) Arc<Effective>);

impl Handler<SetPolicy> for PairActor {
    type Result = ();

    fn handle(&mut self, SetPolicy(policy): SetPolicy, ctx: &mut Self::Context) {
        self.breaker.set_config(policy.breaker.clone());
        if policy.warmup.is_none() {
            // Removing the warm-up job releases the pairs waiting for it (still cold).
            self.warmth.warmup_dropped();
        }
        self.policy = policy;
        self.publish();
        self.maybe_warm_up(ctx);
    }
}

/// Returns the pair's current view. Answered only after the first token probe of the
/// current incarnation, which is what lazy capability discovery waits for.
#[derive(Message)]
#[rtype(result = "PairView")]
pub(crate) struct GetView;

impl Handler<GetView> for PairActor {
    type Result = MessageResult<GetView>;

    fn handle(&mut self, _msg: GetView, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.view.read().clone())
    }
}

/// Enables or disables (drains) the pair because its orchestrator was toggled.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetEnabled(pub(crate) bool);

impl Handler<SetEnabled> for PairActor {
    type Result = ();

    fn handle(&mut self, SetEnabled(enabled): SetEnabled, _ctx: &mut Self::Context) {
        self.disabled = !enabled;
        self.publish();
    }
}

/// Its orchestrator's label changed: the orchestrator as its pairs now show it (one value
/// shared by the orchestrator's pairs).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetLabel(pub(crate) Arc<view::OrchestratorRef>);

impl Handler<SetLabel> for PairActor {
    type Result = ();

    fn handle(&mut self, SetLabel(orchestrator): SetLabel, _ctx: &mut Self::Context) {
        self.view.write().orchestrator = orchestrator;
    }
}

/// Takes the pair out of service for good (its orchestrator was removed): no new leases,
/// no more probes. In-flight jobs finish; the actor stops once nobody holds its address.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retire;

impl Handler<Retire> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Self::Context) {
        self.retired = true;
        if let Some(h) = self.refresh.take() {
            ctx.cancel_future(h);
        }
        self.count_failing();
        self.publish();
    }
}

/// Fault injection: stops the actor's context as an internal failure would, so that the
/// supervisor restarts it. Used by the supervision tests and chaos runs; only with the
/// `fault-injection` feature.
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Crash;

#[cfg(any(test, feature = "fault-injection"))]
impl Handler<Crash> for PairActor {
    type Result = ();

    fn handle(&mut self, _msg: Crash, ctx: &mut Self::Context) {
        tracing::warn!(pair = %self.key, orchestrator_label = self.label().as_deref(), "fault injected: pair actor stops");
        ctx.stop();
    }
}

/// Forces the breaker open (`trip: true`) or closed (`trip: false`); operator action.
#[derive(Message)]
#[rtype(result = "PairView")]
pub(crate) struct ForceBreaker {
    /// Open it (true) or close and reset it (false).
    pub(crate) trip: bool,
    /// With `trip`: hold it open this long (then it admits a trial as any open breaker does);
    /// `None` holds it until a reset.
    pub(crate) hold_for: Option<Duration>,
}

impl Handler<ForceBreaker> for PairActor {
    type Result = MessageResult<ForceBreaker>;

    fn handle(&mut self, msg: ForceBreaker, _ctx: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let transition = if msg.trip {
            // An operator who trips a pair means "keep it out": the breaker's own open time
            // would let a trial through within a second or so.
            self.forced = Some(msg.hold_for.and_then(|d| now.checked_add(d)));
            self.state_since = now;
            self.breaker.trip(now, rand::random::<f64>())
        } else {
            self.forced = None;
            self.capacity_backoff_until = None;
            self.refusal = None;
            self.payment_backoff.answered();
            self.breaker.reset()
        };
        if let Some(t) = transition {
            self.on_transition(t, "operator");
        }
        self.publish();
        MessageResult(self.view.read().clone())
    }
}

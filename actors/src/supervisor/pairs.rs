//! Pair actors: starting them (supervised), putting them on the scoreboard, retiring them, finding
//! whether a capability is offered (`EnsureCapability`), and the operator's and the router's
//! messages to one pair.

use super::*;

impl Supervisor {
    /// Starts a pair actor under actix supervision. `register` puts it on the board.
    pub(super) fn spawn_pair(&mut self, key: PairKey, register: bool) {
        if self.pairs.contains_key(&key) {
            return;
        }
        let Some(orch) = self.orchestrators.get(&key.orchestrator) else {
            return;
        };
        let declared = orch.capabilities.contains(&key.capability);
        let enabled = orch.enabled;
        let orchestrator = self.orchestrator_ref(&key.orchestrator);
        let record = self.warm.remove(&key);
        let actor = PairActor::new(
            self.settings.clone(),
            self.policies.effective(&key.capability),
            self.client.clone(),
            key.clone(),
            orchestrator,
            record.as_ref(),
            declared,
        )
        .with_enabled(enabled);
        let view = actor.view();
        let tally = actor.tally();
        // Just loaded from disk: not dirty until it changes.
        let saved = record.is_some().then(|| view.read().generation);
        let addr = actix::Supervisor::start(move |_ctx| actor);
        if let Some(forced) = self.forced_for(&key) {
            addr.do_send(forced);
        }
        self.pairs.insert(key.clone(), PairEntry { addr, view, tally, saved, on_board: false });
        if register {
            self.put_on_board(&key);
        } else {
            self.off_board.insert(key, Instant::now());
        }
    }

    /// Puts an existing pair on the scoreboard.
    pub(super) fn put_on_board(&mut self, key: &PairKey) {
        self.off_board.remove(key);
        let Some(entry) = self.pairs.get_mut(key) else { return };
        if !entry.on_board {
            entry.on_board = true;
            self.scoreboard.register(BoardEntry {
                key: key.clone(),
                addr: entry.addr.clone(),
                view: entry.view.clone(),
                tally: entry.tally.clone(),
            });
        }
    }

    /// Makes sure every orchestrator has a pair on the board for each capability it declares
    /// (declared capabilities are registered).
    pub(super) fn ensure_declared_pairs(&mut self) {
        let keys: Vec<PairKey> = self
            .orchestrators
            .values()
            .flat_map(|o| o.capabilities.iter().map(|c| PairKey { orchestrator: o.id.clone(), capability: c.clone() }))
            .filter(|k| self.registered.contains(&k.capability))
            .collect();
        for key in keys {
            if self.pairs.contains_key(&key) {
                self.put_on_board(&key);
            } else {
                self.spawn_pair(key, true);
            }
        }
    }

    /// Registers a capability: its pairs that have offered it go on the board and, when
    /// something anchors it, every orchestrator is asked whether it offers it (a discovered
    /// one was just asked about by the job that found it).
    pub(super) fn register_capability(&mut self, cap: &Capability, how: Registration) {
        if how == Registration::Anchored {
            self.anchor(cap);
        }
        if self.registered.insert(cap.clone()) {
            tracing::info!(capability = %cap, "capability registered");
            let keys: Vec<PairKey> = self.off_board.keys().filter(|k| &k.capability == cap).cloned().collect();
            for key in &keys {
                self.decide(key);
            }
            if how == Registration::Anchored {
                self.survey.capability_registered(cap.clone());
            }
        }
    }

    /// A newly registered orchestrator: pairs for what it declares, a survey for the rest.
    pub(super) fn orchestrator_added(&mut self, orch: &Orchestrator) {
        for cap in &orch.capabilities {
            self.register_capability(cap, Registration::Anchored);
        }
        self.survey.orchestrator_added(orch.id.clone());
        self.ensure_declared_pairs();
    }

    /// Hands a capability's new effective policy to each of its pairs (control plane: one
    /// message per pair of one capability).
    pub(super) fn push_policy(&self, cap: &Capability, effective: &Arc<Effective>) {
        for (key, entry) in &self.pairs {
            if &key.capability == cap {
                entry.addr.do_send(SetPolicy(effective.clone()));
            }
        }
    }

    pub(super) fn remove_pair(&mut self, key: &PairKey) {
        self.off_board.remove(key);
        if let Some(entry) = self.pairs.remove(key) {
            if entry.on_board {
                self.scoreboard.unregister(key);
            }
            entry.addr.do_send(Retire);
        }
    }

    /// Waits until every pair with fast-path answers awaiting accounting has applied them
    /// (bounded by [`SETTLE_TIMEOUT`]), so that what is read next includes every answered job.
    /// Only pairs with pending samples get a message.
    pub(super) fn settle(&self) -> impl std::future::Future<Output = ()> + 'static {
        let pending: Vec<_> = self
            .pairs
            .values()
            .filter(|e| e.tally.is_pending())
            .map(|e| e.addr.send(Settle).timeout(SETTLE_TIMEOUT))
            .collect();
        async move {
            futures_util::future::join_all(pending).await;
        }
    }

    /// Retires every pair of an orchestrator that has left the registry (they leave the boards
    /// at once; in-flight jobs finish). Returns how many there were.
    pub(super) fn remove_orchestrator_pairs(&mut self, id: &OrchestratorId) -> usize {
        self.orchestrator_refs.remove(id);
        let keys: Vec<PairKey> = self.pairs.keys().filter(|k| &k.orchestrator == id).cloned().collect();
        for key in &keys {
            self.remove_pair(key);
        }
        keys.len()
    }

    /// The orchestrator as its pairs' views show it (URL and label), one value shared by its
    /// pairs: made on its first pair, again when its label changes.
    fn orchestrator_ref(&mut self, id: &OrchestratorId) -> Arc<OrchestratorRef> {
        let Some(orch) = self.orchestrators.get(id) else {
            return Arc::new(OrchestratorRef { url: Arc::from(""), label: None });
        };
        match self.orchestrator_refs.get(id) {
            Some(r) if r.label == orch.label => r.clone(),
            _ => {
                let r = Arc::new(OrchestratorRef { url: Arc::from(orch.url.as_str()), label: orch.label.clone() });
                self.orchestrator_refs.insert(id.clone(), r.clone());
                r
            }
        }
    }

    /// Hands an orchestrator's (new) label to each of its pairs, which show it in their views
    /// and log lines. `orch` is its registry entry, already in the registry.
    pub(super) fn relabel_pairs(&mut self, orch: &Orchestrator) {
        self.orchestrators.insert(orch.id.clone(), orch.clone());
        let r = self.orchestrator_ref(&orch.id);
        for (key, entry) in &self.pairs {
            if key.orchestrator == orch.id {
                entry.addr.do_send(SetLabel(r.clone()));
            }
        }
    }
}

/// How a capability comes to be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Registration {
    /// Something keeps it: an orchestrator declares it, or it has a policy.
    Anchored,
    /// A job asked for it and an orchestrator offered it (bounded, persisted once it served).
    Discovered,
}

/// Whether some orchestrator offers a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// At least one orchestrator offers (or has offered) it; its pairs are on the board.
    Offered,
    /// Nobody offers it.
    NotOffered,
    /// Not known, and the probes for unknown names are spent for now: try again after this.
    RateLimited(Duration),
    /// Not registered, and `routing.max_discovered_capabilities` capabilities are registered
    /// by discovery already.
    LimitReached,
}

/// Makes sure pairs exist for a capability and waits (up to the probe wait) for their first
/// token probes. Called by the router when the scoreboard does not know a capability, or
/// knows it but some of its pairs are still waiting for their first probe.
#[derive(Message)]
#[rtype(result = "Availability")]
pub struct EnsureCapability {
    /// The capability asked for.
    pub(crate) capability: Capability,
}

impl Handler<EnsureCapability> for Supervisor {
    type Result = ResponseActFuture<Self, Availability>;

    fn handle(&mut self, msg: EnsureCapability, _ctx: &mut Self::Context) -> Self::Result {
        let cap = msg.capability;
        let now = Instant::now();
        if self.not_offered.get(&cap).is_some_and(|t| *t > now) || self.orchestrators.is_empty() {
            return Box::pin(actix::fut::ready(Availability::NotOffered));
        }
        let mut waiting = Vec::new();
        // A registered capability with pairs on the board is known: its pairs are what the
        // orchestrators offer. One registered without any (a policy named it before anyone
        // offered it, or every offer was withdrawn) is asked about as an unknown name is, so
        // an orchestrator that starts offering it is found by the next job, not by the survey's
        // next pass (a minute of 404s after a policy change).
        let on_board = self.pairs.iter().any(|(k, e)| k.capability == cap && e.on_board);
        if self.registered.contains(&cap) && on_board {
            // Its pairs are the ones orchestrators declare or offer, and the surveys' still
            // asking: wait for those on their first probe.
            for (key, entry) in self.pairs.iter().filter(|(k, _)| k.capability == cap) {
                let v = entry.view.read();
                if entry.on_board && v.routable_at(now).is_ok() {
                    return Box::pin(actix::fut::ready(Availability::Offered));
                }
                if !v.probed {
                    waiting.push((key.clone(), entry.addr.clone()));
                }
            }
        } else {
            if !self.registered.contains(&cap) && !self.discovery_has_room() {
                // Nothing is probed for a name that could not be registered anyway (a
                // registered one needs no room).
                self.refuse_discovery(&cap);
                return Box::pin(actix::fut::ready(Availability::LimitReached));
            }
            if !self.pairs.keys().any(|k| k.capability == cap) {
                // A name nobody is known to offer: probing it costs one probe per orchestrator.
                let cost = self.orchestrators.len() as f64;
                if let Err(wait) = self.name_probes.try_spend(cost, self.discovery_burst(), now) {
                    metrics::counter!(m::DISCOVERY_RATE_LIMITED_TOTAL).increment(1);
                    return Box::pin(actix::fut::ready(Availability::RateLimited(wait)));
                }
            }
            let keys: Vec<PairKey> = self
                .orchestrators
                .keys()
                .map(|o| PairKey { orchestrator: o.clone(), capability: cap.clone() })
                .collect();
            for key in keys {
                self.spawn_pair(key.clone(), false);
                if let Some(e) = self.pairs.get(&key) {
                    waiting.push((key, e.addr.clone()));
                }
            }
        }
        // Each pair answers the snapshot after its first token probe: waiting on them
        // (bounded) lets a job that arrived during start-up or right after a hot-add be routed
        // instead of refused.
        let wait = self.probe_wait;
        let probes = join_all(waiting.into_iter().map(move |(_, a)| a.send(GetView).timeout(wait)));
        Box::pin(probes.into_actor(self).map(move |_answers, act, _ctx| {
            let keys: Vec<PairKey> = act.pairs.keys().filter(|k| k.capability == cap).cloned().collect();
            let offered = keys.iter().any(|k| act.pairs.get(k).is_some_and(|e| e.view.read().offered));
            if offered {
                act.not_offered.remove(&cap);
                if !act.register_discovered(&cap) {
                    // Other names took the room while this one was probed.
                    for key in &keys {
                        act.remove_pair(key);
                    }
                    act.refuse_discovery(&cap);
                    return Availability::LimitReached;
                }
                for key in &keys {
                    act.decide(key);
                }
                return Availability::Offered;
            }
            if act.registered.contains(&cap) {
                for key in &keys {
                    act.decide(key);
                }
            } else {
                for key in &keys {
                    act.remove_pair(key);
                }
            }
            if act.not_offered.len() >= NOT_OFFERED_MAX {
                act.not_offered.clear();
            }
            act.not_offered.insert(cap.clone(), Instant::now() + NOT_OFFERED_TTL);
            tracing::debug!(capability = %cap, "no orchestrator offers this capability");
            Availability::NotOffered
        }))
    }
}

/// Forces a pair's breaker open or closed.
#[derive(Message)]
#[rtype(result = "Result<PairReport, RegistryError>")]
pub struct ForcePairBreaker {
    /// Orchestrator id.
    pub orchestrator: String,
    /// Capability name.
    pub capability: String,
    /// Trip (true) or reset (false).
    pub trip: bool,
    /// With `trip`: how long to hold it open (`None`: until a reset).
    pub hold_for: Option<Duration>,
}

impl Handler<ForcePairBreaker> for Supervisor {
    type Result = ResponseActFuture<Self, Result<PairReport, RegistryError>>;

    fn handle(&mut self, msg: ForcePairBreaker, _ctx: &mut Self::Context) -> Self::Result {
        let addr = match self.find_pair(&msg.orchestrator, &msg.capability) {
            Ok(a) => a,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        // find_pair checked both names.
        let Ok(capability) = Capability::new(&msg.capability) else {
            return Box::pin(actix::fut::ready(Err(RegistryError::PairNotFound(msg.orchestrator, msg.capability))));
        };
        let key = PairKey { orchestrator: OrchestratorId(msg.orchestrator.as_str().into()), capability };
        let forced = if msg.trip {
            Forced::Trip {
                until_unix_ms: msg.hold_for.map(|d| crate::clock::unix_ms_now().saturating_add(d.as_millis() as u64)),
            }
        } else {
            Forced::Reset
        };
        let fut = self.registry.force(key.clone(), forced);
        let (orchestrator, cap_name) = (msg.orchestrator, msg.capability);
        Box::pin(fut.into_actor(self).then(move |res, act, ctx| {
            let committed = match super::changes::written(res) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    return Box::pin(actix::fut::ready(Err(RegistryError::PairNotFound(orchestrator, cap_name))))
                        as ResponseActFuture<Self, _>
                }
                Err(e) => return Box::pin(actix::fut::ready(Err(e))),
            };
            let change = crate::registry::Change::Forced(key, forced);
            Box::pin(act.applied(committed, move |_| vec![change], ctx).then(move |(), _act, _ctx| {
                // The pair handles the forced state before this read (one mailbox, in order).
                async move {
                    let view = addr
                        .send(GetView)
                        .timeout(Duration::from_secs(5))
                        .await
                        .map_err(|_| RegistryError::Unavailable("pair actor"))?;
                    Ok(view.report(Instant::now()))
                }
                .into_actor(_act)
            }))
        }))
    }
}

/// Fault injection: makes a pair actor stop as an internal failure would (it is restarted by
/// actix supervision). Used by the supervision tests and chaos runs; only with the
/// `fault-injection` feature.
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct CrashPair {
    /// Orchestrator id.
    pub orchestrator: String,
    /// Capability name.
    pub capability: String,
}

#[cfg(any(test, feature = "fault-injection"))]
impl Handler<CrashPair> for Supervisor {
    type Result = ResponseFuture<Result<(), RegistryError>>;

    fn handle(&mut self, msg: CrashPair, _ctx: &mut Self::Context) -> Self::Result {
        let addr = self.find_pair(&msg.orchestrator, &msg.capability);
        Box::pin(async move {
            addr?
                .send(Crash)
                .timeout(Duration::from_secs(5))
                .await
                .map_err(|_| RegistryError::Unavailable("pair actor"))
        })
    }
}

/// A connect failure on an orchestrator: all its pairs leave rotation and re-probe.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NodeUnreachable {
    /// The orchestrator.
    pub(crate) orchestrator: OrchestratorId,
}

impl Handler<NodeUnreachable> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: NodeUnreachable, _ctx: &mut Self::Context) {
        let mut n = 0;
        for (key, entry) in &self.pairs {
            if key.orchestrator == msg.orchestrator {
                // Bounded fan-out (one message per pair of one orchestrator), control plane.
                entry.addr.do_send(PeerUnreachable);
                n += 1;
            }
        }
        let label = self.orchestrators.get(&msg.orchestrator).and_then(|o| o.label.as_ref()).map(Label::as_str);
        tracing::warn!(orchestrator = %msg.orchestrator, orchestrator_label = label, pairs = n,
            "connect failure: the orchestrator's pairs leave rotation until re-probed");
    }
}

impl Supervisor {
    pub(super) fn find_pair(&self, orchestrator: &str, capability: &str) -> Result<Addr<PairActor>, RegistryError> {
        let not_found = || RegistryError::PairNotFound(orchestrator.to_string(), capability.to_string());
        let cap = Capability::new(capability).map_err(|_| not_found())?;
        let key = PairKey { orchestrator: OrchestratorId(orchestrator.into()), capability: cap };
        self.pairs.get(&key).map(|e| e.addr.clone()).ok_or_else(not_found)
    }
}

//! Capabilities registered because a job asked for them (lazy discovery), as opposed to those
//! an orchestrator declares, the config names, or a policy anchors. Strangers choose their
//! names: an orchestrator that answers a token for any name would otherwise make the gateway
//! register every name a client sends, each with its pair actors, a board and its metric
//! series, for ever and again after every restart. So they are bounded
//! (`routing.max_discovered_capabilities`; past it a job for another such name gets a 503
//! `capability-limit`), their pair records are written to the store only once one of their
//! pairs has answered a job (until then a restart forgets them), and an operator can forget
//! any capability that nothing declares (`POST /admin/capabilities/{name}/forget`).

use super::*;

/// What forgetting a capability did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ForgottenCapability {
    /// The capability.
    pub(crate) name: String,
    /// Pair actors stopped (they finish their jobs in flight).
    pub(crate) pairs_stopped: usize,
    /// Pair records removed from the store.
    pub(crate) records_forgotten: usize,
    /// A runtime policy was removed from the store.
    pub(crate) policy_removed: bool,
}

/// How many capabilities lazy discovery holds, for `/admin/supervisor`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DiscoveredReport {
    /// Capabilities registered by lazy discovery (nothing declares them).
    pub(crate) count: usize,
    /// The bound (`routing.max_discovered_capabilities`).
    pub(crate) limit: usize,
    /// Of those, capabilities none of whose pairs has answered a job yet: not persisted.
    pub(crate) unproven: usize,
    /// Jobs refused because the bound was reached, since start.
    pub(crate) refused: u64,
}

/// Which capabilities to register at start from the stored pair records: a capability with an
/// offering record is registered when something anchors it (`anchored`) or one of its records
/// answered a job; the rest (a store written before this rule, or a name that never served)
/// is not, and its records are forgotten with the other stale ones. Returns the registered
/// ones that are discovered (not anchored).
pub(super) fn from_records(
    records: &[PairRecord],
    anchored: impl Fn(&Capability) -> bool,
    registered: &mut BTreeSet<Capability>,
) -> BTreeSet<Capability> {
    let served: BTreeSet<&Capability> =
        records.iter().filter(|r| r.offered && r.counters.success > 0).map(|r| &r.capability).collect();
    let mut discovered = BTreeSet::new();
    for r in records.iter().filter(|r| r.offered) {
        if anchored(&r.capability) {
            registered.insert(r.capability.clone());
        } else if served.contains(&r.capability) {
            registered.insert(r.capability.clone());
            discovered.insert(r.capability.clone());
        }
    }
    discovered
}

impl Supervisor {
    /// Whether something other than lazy discovery keeps `cap` registered: an orchestrator
    /// declares it, or it has a policy (the config file's `[capabilities.NAME]`, which also
    /// registers it at start, or one set through the admin API).
    pub(super) fn anchored(&self, cap: &Capability) -> bool {
        self.policies.get(cap).is_some() || !self.declared_by(cap).is_empty()
    }

    /// The orchestrators that declare `cap`.
    fn declared_by(&self, cap: &Capability) -> Vec<OrchestratorId> {
        self.orchestrators.values().filter(|o| o.capabilities.contains(cap)).map(|o| o.id.clone()).collect()
    }

    /// Whether one more capability may be registered by lazy discovery.
    pub(super) fn discovery_has_room(&self) -> bool {
        self.discovered.len() < self.max_discovered
    }

    /// Counts a job refused because lazy discovery is full.
    pub(super) fn refuse_discovery(&mut self, cap: &Capability) {
        self.discovery_refused += 1;
        metrics::counter!(m::CAPABILITY_LIMIT_TOTAL).increment(1);
        if self.discovery_refused.is_power_of_two() {
            // Every name a client sends could be logged here: only the 1st, 2nd, 4th, ...
            tracing::warn!(capability = %cap, limit = self.max_discovered, refused = self.discovery_refused,
                "a job asked for a capability some orchestrator offers, but routing.max_discovered_capabilities \
                 capabilities are registered by discovery already; declare it (or forget one) to serve it");
        }
    }

    /// Registers `cap`, found offered for a job, as a discovered capability (not persisted
    /// until one of its pairs answers a job). False when lazy discovery is full.
    pub(super) fn register_discovered(&mut self, cap: &Capability) -> bool {
        if self.registered.contains(cap) {
            return true;
        }
        if !self.anchored(cap) {
            if !self.discovery_has_room() {
                return false;
            }
            self.discovered.insert(cap.clone());
            self.unproven.insert(cap.clone());
        }
        // Every orchestrator was just asked about the new name: no survey needed.
        self.register_capability(cap, Registration::Discovered);
        true
    }

    /// `cap` is anchored now (a policy, a declaring orchestrator): it no longer counts as
    /// discovered, and its pairs are persisted as any other's.
    pub(super) fn anchor(&mut self, cap: &Capability) {
        self.discovered.remove(cap);
        self.unproven.remove(cap);
    }

    /// Drops from `unproven` the capabilities one of whose pairs has answered a job: their
    /// records are written from now on. One walk over the pairs, only while some are unproven.
    pub(super) fn note_proven(&mut self) {
        if self.unproven.is_empty() {
            return;
        }
        let proven: Vec<Capability> = self
            .pairs
            .iter()
            .filter(|(k, e)| self.unproven.contains(&k.capability) && e.view.read().counters.success > 0)
            .map(|(k, _)| k.capability.clone())
            .collect();
        for cap in proven {
            if self.unproven.remove(&cap) {
                tracing::info!(capability = %cap, "discovered capability answered a job; its pairs are persisted from now on");
            }
        }
    }

    /// Drops everything in memory about `cap`: its pairs stop (jobs in flight finish), its
    /// boards go, its policy and registration, its metric series are no longer exported.
    /// Returns how many pairs stopped.
    fn forget_in_memory(&mut self, cap: &Capability) -> usize {
        let keys: Vec<PairKey> = self.pairs.keys().filter(|k| &k.capability == cap).cloned().collect();
        for key in &keys {
            self.remove_pair(key);
        }
        self.registered.remove(cap);
        self.discovered.remove(cap);
        self.unproven.remove(cap);
        self.not_offered.remove(cap);
        self.warm.retain(|k, _| &k.capability != cap);
        if self.runtime_policies.remove(cap) {
            self.policies.remove(cap);
        }
        m::hide_capability(cap);
        keys.len()
    }
}

/// Forgets a capability that nothing declares: its pairs stop, its pair records and runtime
/// policy leave the store (durably, before the answer), its metric series are no longer
/// exported. A job naming it later discovers it anew, if some orchestrator offers it (remove
/// that orchestrator to keep it away).
#[derive(Message)]
#[rtype(result = "Result<ForgottenCapability, RegistryError>")]
pub struct ForgetCapability {
    /// The capability.
    pub name: String,
}

impl Handler<ForgetCapability> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ForgottenCapability, RegistryError>>;

    fn handle(&mut self, msg: ForgetCapability, _ctx: &mut Self::Context) -> Self::Result {
        let checked = Capability::new(&msg.name)
            .map_err(|e| RegistryError::InvalidCapability(msg.name.clone(), e))
            .and_then(|cap| {
                let by = self.declared_by(&cap);
                if !by.is_empty() || self.config_policies.contains_key(&cap) {
                    return Err(RegistryError::CapabilityDeclared {
                        name: cap.to_string(),
                        by: by.iter().map(ToString::to_string).collect(),
                    });
                }
                let known = self.registered.contains(&cap)
                    || self.policies.get(&cap).is_some()
                    || self.pairs.keys().any(|k| k.capability == cap)
                    || self.warm.keys().any(|k| k.capability == cap);
                if known {
                    Ok(cap)
                } else {
                    Err(RegistryError::CapabilityNotFound(msg.name.clone()))
                }
            });
        let cap = match checked {
            Ok(c) => c,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let fut = self.registry.forget_capability(cap.clone());
        Box::pin(fut.into_actor(self).then(move |res, act, ctx| {
            let committed = match super::changes::written(res) {
                Ok(c) => c,
                Err(e) => return Box::pin(actix::fut::ready(Err(e))) as ResponseActFuture<Self, _>,
            };
            // The shared policy (if any) leaves through the registry; the pairs and the
            // discovery bookkeeping are this replica's own.
            let policy_change = crate::registry::Change::PolicyRemoved(cap.clone());
            let pairs_stopped = act.forget_in_memory(&cap);
            Box::pin(act.applied(committed, move |_| vec![policy_change], ctx).map(
                move |(records_forgotten, policy_removed), _act, _ctx| {
                    tracing::info!(capability = %cap, pairs_stopped, records_forgotten, policy_removed, "capability forgotten");
                    Ok(ForgottenCapability { name: cap.to_string(), pairs_stopped, records_forgotten, policy_removed })
                },
            ))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(s: &str) -> Capability {
        Capability::new(s).expect("valid")
    }

    /// An offering record of `capability` with `success` answered jobs.
    fn record(orch: &OrchestratorId, capability: &str, success: u64) -> PairRecord {
        PairRecord {
            orchestrator: orch.clone(),
            capability: cap(capability),
            latency_ewma_ms: 10.0,
            latency_updated_unix_ms: None,
            success_rate: 1.0,
            breaker: crate::breaker::State::Closed,
            breaker_level: 0,
            open_until_unix_ms: None,
            offered: true,
            cold_start_ms: None,
            counters: crate::pair::view::Counters { success, ..Default::default() },
            restarts: 0,
            saved_at_unix_ms: 0,
        }
    }

    #[test]
    fn at_start_only_anchored_or_served_capabilities_come_back() {
        let o = OrchestratorId("orch-1".into());
        let never = record(&o, "junk", 0);
        let mut unoffered = record(&o, "quiet", 5);
        unoffered.offered = false;
        let records = [record(&o, "depth", 0), record(&o, "served", 3), never, unoffered];
        let mut registered = BTreeSet::new();
        let discovered = from_records(&records, |c| c.as_str() == "depth", &mut registered);
        assert_eq!(registered, [cap("depth"), cap("served")].into());
        assert_eq!(discovered, [cap("served")].into(), "declared ones do not count against the bound");
    }
}

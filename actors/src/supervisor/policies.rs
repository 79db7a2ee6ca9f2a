//! Capabilities and their runtime policies: what the admin API lists, sets and deletes.

use super::changes::written;
use super::*;
use crate::registry::Change;

/// One capability as `/admin/capabilities` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CapabilityReport {
    /// Name.
    pub(crate) name: String,
    /// Its own policy, if it has one (otherwise the default policy applies).
    pub(crate) policy: Option<CapabilityPolicy>,
    /// The knobs in force.
    #[schema(value_type = Effective)]
    pub(crate) effective: Arc<Effective>,
    /// Pair actors of this capability.
    pub(crate) pairs: usize,
    /// Pairs whose orchestrator has offered it.
    pub(crate) offered_by: usize,
    /// Pairs that can take a job now.
    pub(crate) routable: usize,
    /// Jobs its routable pairs may have in flight now (the sum of their concurrency limits).
    pub(crate) slots: u64,
    /// Jobs in flight on its pairs.
    pub(crate) inflight: u64,
    /// Its wait queue (jobs waiting for a free slot), once it has a board.
    pub(crate) queue: Option<QueueReport>,
}

/// Lists registered capabilities (and those with a policy) with their policies.
#[derive(Message)]
#[rtype(result = "Vec<CapabilityReport>")]
pub struct ListCapabilities;

impl Handler<ListCapabilities> for Supervisor {
    type Result = MessageResult<ListCapabilities>;

    fn handle(&mut self, _msg: ListCapabilities, _ctx: &mut Self::Context) -> Self::Result {
        let mut names: BTreeSet<Capability> = self.registered.clone();
        names.extend(self.policies.list().into_iter().map(|(c, _, _)| c));
        MessageResult(names.iter().map(|c| self.capability_report(c)).collect())
    }
}

/// One capability's report; an error if the name is invalid or unknown.
#[derive(Message)]
#[rtype(result = "Result<CapabilityReport, RegistryError>")]
pub struct GetCapability {
    /// The name.
    pub name: String,
}

impl Handler<GetCapability> for Supervisor {
    type Result = Result<CapabilityReport, RegistryError>;

    fn handle(&mut self, msg: GetCapability, _ctx: &mut Self::Context) -> Self::Result {
        let cap = Capability::new(&msg.name).map_err(|e| RegistryError::InvalidCapability(msg.name.clone(), e))?;
        if !self.registered.contains(&cap) && self.policies.get(&cap).is_none() {
            return Err(RegistryError::CapabilityNotFound(msg.name));
        }
        Ok(self.capability_report(&cap))
    }
}

/// Sets a capability's policy: validated, stored durably, then applied to the routers and
/// to every pair of the capability at once. The capability becomes registered (every
/// orchestrator is asked whether it offers it).
#[derive(Message)]
#[rtype(result = "Result<CapabilityReport, RegistryError>")]
pub struct SetCapabilityPolicy {
    /// The capability.
    pub name: String,
    /// Its new policy.
    pub policy: CapabilityPolicy,
}

impl Handler<SetCapabilityPolicy> for Supervisor {
    type Result = ResponseActFuture<Self, Result<CapabilityReport, RegistryError>>;

    fn handle(&mut self, msg: SetCapabilityPolicy, _ctx: &mut Self::Context) -> Self::Result {
        let checked = Capability::new(&msg.name)
            .map_err(|e| RegistryError::InvalidCapability(msg.name.clone(), e))
            .and_then(|cap| {
                self.policies.validate(&msg.policy).map_err(|e| RegistryError::InvalidPolicy(msg.name.clone(), e))?;
                Ok(cap)
            });
        let cap = match checked {
            Ok(c) => c,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let policy = msg.policy;
        let fut = self.registry.put_policy(cap.clone(), policy.clone());
        Box::pin(fut.into_actor(self).then(move |res, act, ctx| {
            let committed = match written(res) {
                Ok(c) => c,
                Err(e) => return Box::pin(actix::fut::ready(Err(e))) as ResponseActFuture<Self, _>,
            };
            let change = Change::Policy(cap.clone(), Box::new(policy));
            Box::pin(
                act.applied(committed, move |_| vec![change], ctx)
                    .map(move |(), act, _| Ok(act.capability_report(&cap))),
            )
        }))
    }
}

/// Removes a capability's runtime policy (set through the admin API): it falls back to the
/// config file's policy for it, or to the default policy. Durable when it answers.
#[derive(Message)]
#[rtype(result = "Result<CapabilityReport, RegistryError>")]
pub struct DeleteCapabilityPolicy {
    /// The capability.
    pub name: String,
}

impl Handler<DeleteCapabilityPolicy> for Supervisor {
    type Result = ResponseActFuture<Self, Result<CapabilityReport, RegistryError>>;

    fn handle(&mut self, msg: DeleteCapabilityPolicy, _ctx: &mut Self::Context) -> Self::Result {
        let cap = match Capability::new(&msg.name) {
            Ok(c) => c,
            Err(e) => return Box::pin(actix::fut::ready(Err(RegistryError::InvalidCapability(msg.name, e)))),
        };
        let fut = self.registry.delete_policy(cap.clone());
        Box::pin(fut.into_actor(self).then(move |res, act, ctx| {
            let committed = match written(res) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    return Box::pin(actix::fut::ready(Err(RegistryError::NoRuntimePolicy(cap.to_string()))))
                        as ResponseActFuture<Self, _>
                }
                Err(e) => return Box::pin(actix::fut::ready(Err(e))),
            };
            let change = Change::PolicyRemoved(cap.clone());
            Box::pin(
                act.applied(committed, move |_| vec![change], ctx)
                    .map(move |(), act, _| Ok(act.capability_report(&cap))),
            )
        }))
    }
}

impl Supervisor {
    pub(super) fn capability_report(&self, cap: &Capability) -> CapabilityReport {
        let now = Instant::now();
        let (mut pairs, mut offered_by, mut routable, mut slots, mut inflight) = (0, 0, 0, 0, 0);
        for entry in self.pairs.iter().filter(|(k, _)| &k.capability == cap).map(|(_, e)| e) {
            let v = entry.view.read();
            pairs += 1;
            offered_by += usize::from(v.offered);
            inflight += u64::from(v.inflight());
            if v.routable_at(now).is_ok() {
                routable += 1;
                slots += u64::from(v.slots.limit());
            }
        }
        CapabilityReport {
            name: cap.to_string(),
            policy: self.policies.get(cap),
            effective: self.policies.effective(cap),
            pairs,
            offered_by,
            routable,
            slots,
            inflight,
            queue: self.scoreboard.queue(cap).map(|q| q.report()),
        }
    }
}

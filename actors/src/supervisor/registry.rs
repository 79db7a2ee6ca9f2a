//! The orchestrator registry as the admin API, the config file and reloads change it: add, remove, list,
//! enable or drain, reload.

use super::changes::written;
use super::*;
use crate::registry::Change;

/// Registers an orchestrator (durably) and starts its pairs.
#[derive(Message)]
#[rtype(result = "Result<Orchestrator, RegistryError>")]
pub struct AddOrchestrator {
    /// URL or `host:port` (normalised as go-livepeer's `-orchAddr`).
    pub url: String,
    /// Declared capabilities (optional).
    pub capabilities: Vec<String>,
    /// The operator's label (optional).
    pub label: Option<String>,
    /// Where the request came from.
    pub source: Source,
}

impl Handler<AddOrchestrator> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Orchestrator, RegistryError>>;

    fn handle(&mut self, msg: AddOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        let prepared = (|| {
            let url = normalize_url(&msg.url)?;
            if msg.capabilities.len() > crate::orchestrator::MAX_DECLARED_CAPABILITIES {
                return Err(RegistryError::TooManyCapabilities(msg.capabilities.len()));
            }
            let mut caps = Vec::new();
            for c in &msg.capabilities {
                let cap = Capability::new(c).map_err(|e| RegistryError::InvalidCapability(c.clone(), e))?;
                if !caps.contains(&cap) {
                    caps.push(cap);
                }
            }
            let label = msg.label.as_deref().map(Label::new).transpose()?;
            Ok::<_, RegistryError>((url, caps, label))
        })();
        let (url, capabilities, label) = match prepared {
            Ok(v) => v,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let fut = self.registry.add(url, capabilities, label, msg.source);
        Box::pin(fut.into_actor(self).then(|res, act, ctx| {
            let committed = match written(res)
                .and_then(|r| r.map_err(|dup| RegistryError::Duplicate { id: dup.id, url: dup.url }))
            {
                Ok(c) => c,
                Err(e) => return Box::pin(actix::fut::ready(Err(e))) as ResponseActFuture<Self, _>,
            };
            Box::pin(act.applied(committed, |o| vec![Change::Orchestrator(o.clone())], ctx).map(|o, _, _| Ok(o)))
        }))
    }
}

/// Removes an orchestrator (durably); its pairs leave the boards at once and retire once
/// their in-flight jobs finish.
#[derive(Message)]
#[rtype(result = "Result<Orchestrator, RegistryError>")]
pub struct RemoveOrchestrator {
    /// Which one.
    pub id: String,
}

impl Handler<RemoveOrchestrator> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Orchestrator, RegistryError>>;

    fn handle(&mut self, msg: RemoveOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        let id = OrchestratorId(msg.id.into());
        if !self.orchestrators.contains_key(&id) {
            return Box::pin(actix::fut::ready(Err(RegistryError::NotFound(id.0.to_string()))));
        }
        let fut = self.registry.remove(id.clone());
        Box::pin(fut.into_actor(self).then(move |res, act, ctx| {
            let committed = match written(res) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    return Box::pin(actix::fut::ready(Err(RegistryError::NotFound(id.0.to_string()))))
                        as ResponseActFuture<Self, _>
                }
                Err(e) => return Box::pin(actix::fut::ready(Err(e))),
            };
            Box::pin(
                act.applied(committed, |o| vec![Change::OrchestratorRemoved(o.id.clone())], ctx).map(|o, _, _| Ok(o)),
            )
        }))
    }
}

/// Lists the registry.
#[derive(Message)]
#[rtype(result = "Vec<Orchestrator>")]
pub struct ListOrchestrators;

impl Handler<ListOrchestrators> for Supervisor {
    type Result = MessageResult<ListOrchestrators>;

    fn handle(&mut self, _msg: ListOrchestrators, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.orchestrators.values().cloned().collect())
    }
}

/// Changes an orchestrator as the operator asks (`PATCH`): enables or disables (drains) it,
/// sets or removes its label. Durably, then its pairs follow at once.
#[derive(Message)]
#[rtype(result = "Result<Orchestrator, RegistryError>")]
pub struct ChangeOrchestrator {
    /// Which one.
    pub id: String,
    /// The new `enabled` flag, if it changes.
    pub enabled: Option<bool>,
    /// The new label (`Some(None)` removes it), if it changes.
    pub label: Option<Option<String>>,
}

impl Handler<ChangeOrchestrator> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Orchestrator, RegistryError>>;

    fn handle(&mut self, msg: ChangeOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        let id = OrchestratorId(msg.id.into());
        let label = match msg.label.map(|l| l.as_deref().map(Label::new).transpose()).transpose() {
            Ok(l) => l,
            Err(e) => return Box::pin(actix::fut::ready(Err(e.into()))),
        };
        if !self.orchestrators.contains_key(&id) {
            return Box::pin(actix::fut::ready(Err(RegistryError::NotFound(id.0.to_string()))));
        }
        let change = OrchestratorChange { enabled: msg.enabled, label };
        let fut = self.registry.update(id.clone(), change);
        Box::pin(fut.into_actor(self).then(move |res, act, ctx| {
            let committed = match written(res) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    return Box::pin(actix::fut::ready(Err(RegistryError::NotFound(id.0.to_string()))))
                        as ResponseActFuture<Self, _>
                }
                Err(e) => return Box::pin(actix::fut::ready(Err(e))),
            };
            Box::pin(act.applied(committed, |o| vec![Change::Orchestrator(o.clone())], ctx).map(|o, _, _| Ok(o)))
        }))
    }
}

/// What a configuration reload changed.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Orchestrators added from the config.
    pub(crate) orchestrators_added: Vec<String>,
    /// Config orchestrators no longer listed, removed (their pairs drain).
    pub(crate) orchestrators_removed: Vec<String>,
    /// Capabilities whose policy changed.
    pub(crate) policies_changed: Vec<String>,
    /// Capabilities whose config policy was not applied because a runtime policy wins.
    pub(crate) policies_shadowed: Vec<String>,
    /// Settings that changed in the file but take effect only at the next start.
    pub(crate) restart_required: Vec<String>,
}

/// Applies a re-read configuration file: static orchestrators (added and removed, with
/// declared capabilities) and capability policies (runtime policies still win). In-flight jobs
/// are not touched; removed orchestrators' pairs drain.
#[derive(Message)]
#[rtype(result = "Result<ReloadReport, RegistryError>")]
pub struct Reload {
    /// The orchestrators the file and the flags list.
    pub orchestrators: Vec<Listed>,
    /// The file's per-capability policies (already validated).
    pub policies: HashMap<Capability, CapabilityPolicy>,
    /// Settings that changed but are not applied live (reported back as they are).
    pub restart_required: Vec<String>,
}

impl Handler<Reload> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ReloadReport, RegistryError>>;

    fn handle(&mut self, msg: Reload, _ctx: &mut Self::Context) -> Self::Result {
        let fut = self.registry.reconcile_config(msg.orchestrators);
        let (policies, restart_required) = (msg.policies, msg.restart_required);
        Box::pin(fut.into_actor(self).then(move |res, act, ctx| {
            let committed = match written(res) {
                Ok(c) => c,
                Err(e) => return Box::pin(actix::fut::ready(Err(e))) as ResponseActFuture<Self, _>,
            };
            let mut report = ReloadReport { restart_required, ..ReloadReport::default() };
            // Registry: what the backend now holds is the truth.
            let now: BTreeMap<OrchestratorId, Orchestrator> =
                committed.value.iter().map(|o| (o.id.clone(), o.clone())).collect();
            let mut changes = Vec::new();
            for (id, o) in &act.orchestrators {
                if !now.contains_key(id) {
                    report.orchestrators_removed.push(o.url.clone());
                    changes.push(Change::OrchestratorRemoved(id.clone()));
                }
            }
            for (id, o) in &now {
                match act.orchestrators.get(id) {
                    None => {
                        report.orchestrators_added.push(o.url.clone());
                        changes.push(Change::Orchestrator(o.clone()));
                    }
                    Some(old) if old != o => changes.push(Change::Orchestrator(o.clone())),
                    Some(_) => {}
                }
            }
            // Policies: the file's, unless a runtime policy wins (a replica's own file: not shared).
            let mut new_caps = Vec::new();
            let names: BTreeSet<Capability> = act.config_policies.keys().chain(policies.keys()).cloned().collect();
            for cap in names {
                let old = act.config_policies.get(&cap).cloned();
                let new = policies.get(&cap).cloned();
                if old == new {
                    continue;
                }
                if act.runtime_policies.contains(&cap) {
                    report.policies_shadowed.push(cap.to_string());
                    continue;
                }
                let effective = match &new {
                    Some(p) => act.policies.set(cap.clone(), p.clone()),
                    None => act.policies.remove(&cap),
                };
                act.push_policy(&cap, &effective);
                report.policies_changed.push(cap.to_string());
                if new.is_some() {
                    new_caps.push(cap.clone());
                }
            }
            act.config_policies = policies;
            for cap in &new_caps {
                act.register_capability(cap, Registration::Anchored);
            }
            act.ensure_declared_pairs();
            act.survey_step(ctx);
            let committed = crate::registry::Committed { value: report, revision: committed.revision };
            Box::pin(act.applied(committed, move |_| changes, ctx).map(|report, _, _| {
                tracing::info!(?report, "configuration reloaded");
                Ok(report)
            }))
        }))
    }
}

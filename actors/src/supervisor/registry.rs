//! The orchestrator registry as the admin API, the config file and reloads change it: add, remove, list,
//! enable or drain, reload.

use super::*;

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
        let fut =
            self.store.send(InsertOrchestrator { url, capabilities, label, source: msg.source }).timeout(STORE_TIMEOUT);
        Box::pin(fut.into_actor(self).map(|res, act, ctx| {
            let orch = stored(res)?.map_err(|dup| RegistryError::Duplicate { id: dup.id, url: dup.url })?;
            tracing::info!(id = %orch.id, orchestrator_label = orch.label.as_ref().map(Label::as_str), url = %orch.url,
                capabilities = ?orch.capabilities, "orchestrator added");
            act.orchestrators.insert(orch.id.clone(), orch.clone());
            act.not_offered.clear();
            act.orchestrator_added(&orch);
            act.survey_step(ctx);
            Ok(orch)
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
        let fut = self.store.send(DeleteOrchestrator { id: id.clone() }).timeout(STORE_TIMEOUT);
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
            stored(res)?;
            let Some(orch) = act.orchestrators.remove(&id) else {
                return Err(RegistryError::NotFound(id.0.to_string()));
            };
            let pairs = act.remove_orchestrator_pairs(&id);
            tracing::info!(id = %orch.id, orchestrator_label = orch.label.as_ref().map(Label::as_str), url = %orch.url,
                pairs, "orchestrator removed; its pairs drain");
            Ok(orch)
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
        let fut = self.store.send(UpdateOrchestrator { id: id.clone(), change: change.clone() }).timeout(STORE_TIMEOUT);
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
            let Some(orch) = stored(res)? else {
                return Err(RegistryError::NotFound(id.0.to_string()));
            };
            act.orchestrators.insert(id.clone(), orch.clone());
            if let Some(enabled) = change.enabled {
                for (key, entry) in &act.pairs {
                    if key.orchestrator == id {
                        entry.addr.do_send(SetEnabled(enabled));
                    }
                }
                tracing::info!(id = %id, orchestrator_label = orch.label.as_ref().map(Label::as_str), enabled,
                    "orchestrator {}", if enabled { "enabled" } else { "disabled: draining" });
            }
            if change.label.is_some() {
                act.relabel_pairs(&orch);
                tracing::info!(id = %id, orchestrator_label = orch.label.as_ref().map(Label::as_str), "orchestrator labelled");
            }
            Ok(orch)
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
        let fut = self.store.send(ReconcileConfig { entries: msg.orchestrators }).timeout(STORE_TIMEOUT);
        let (policies, restart_required) = (msg.policies, msg.restart_required);
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            let snapshot = stored(res)?;
            let mut report = ReloadReport { restart_required, ..ReloadReport::default() };
            // Registry: what the store now holds is the truth.
            let now_ids: BTreeSet<OrchestratorId> = snapshot.orchestrators.iter().map(|o| o.id.clone()).collect();
            let gone: Vec<OrchestratorId> =
                act.orchestrators.keys().filter(|id| !now_ids.contains(*id)).cloned().collect();
            for id in gone {
                if let Some(o) = act.orchestrators.remove(&id) {
                    report.orchestrators_removed.push(o.url);
                }
                act.remove_orchestrator_pairs(&id);
            }
            let mut new_caps = Vec::new();
            for o in snapshot.orchestrators {
                if !act.orchestrators.contains_key(&o.id) {
                    report.orchestrators_added.push(o.url.clone());
                    act.not_offered.clear();
                    act.survey.orchestrator_added(o.id.clone());
                }
                new_caps.extend(o.capabilities.iter().cloned());
                let relabelled = act.orchestrators.get(&o.id).is_some_and(|old| old.label != o.label);
                if relabelled {
                    act.relabel_pairs(&o);
                }
                act.orchestrators.insert(o.id.clone(), o);
            }
            // Policies: the file's, unless a runtime policy wins.
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
            tracing::info!(?report, "configuration reloaded");
            Ok(report)
        }))
    }
}

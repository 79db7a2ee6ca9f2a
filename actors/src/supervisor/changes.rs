//! The one path by which the registry changes the supervisor's memory: [`Supervisor::apply`]
//! takes a [`Change`], whichever backend produced it. With sled the handler that wrote it
//! applies it at once; with etcd every replica applies it from its watch ([`WatchEvents`],
//! [`Resynced`]), the writer included, and the writer answers once its own watch has applied
//! the write's revision ([`Supervisor::applied`]), so a `GET` right after a `201` on the same
//! replica sees it.
//!
//! With etcd the supervisor also keeps the local sled's copy of the registry in step (after
//! each batch the watch delivers): the copy a replica starts from when etcd is unreachable at
//! start, and what saved scores are checked against.

use tokio::sync::oneshot;

use super::*;
use crate::registry::etcd::{Resynced, WatchEvents};
use crate::registry::{Change, Committed, Forced, RegistryState, WriteError};
use crate::store::MirrorRegistry;

/// How long a writer waits for its own watch to apply its commit before it answers anyway (the
/// write is committed; only this replica's view of it is late).
const APPLY_WAIT: Duration = Duration::from_secs(2);

impl Supervisor {
    /// Applies one registry change to memory, the pairs and the boards.
    pub(super) fn apply(&mut self, change: Change, ctx: &mut Context<Self>) {
        match change {
            Change::Orchestrator(o) => self.apply_orchestrator(o, ctx),
            Change::OrchestratorRemoved(id) => {
                if let Some(orch) = self.orchestrators.remove(&id) {
                    let pairs = self.remove_orchestrator_pairs(&id);
                    tracing::info!(id = %orch.id, orchestrator_label = label_of(&orch), url = %orch.url, pairs,
                        "orchestrator removed; its pairs drain");
                }
                self.fleet_forced.retain(|k, _| k.orchestrator != id);
            }
            Change::Policy(cap, policy) => {
                if let Err(e) = self.policies.validate(&policy) {
                    tracing::error!(capability = %cap, error = %e,
                        "a policy set on another replica does not fit this replica's [breaker] table; ignoring it");
                    return;
                }
                let effective = self.policies.set(cap.clone(), *policy);
                self.runtime_policies.insert(cap.clone());
                self.push_policy(&cap, &effective);
                self.register_capability(&cap, Registration::Anchored);
                tracing::info!(capability = %cap, "capability policy set");
            }
            Change::PolicyRemoved(cap) => {
                if self.runtime_policies.remove(&cap) {
                    let effective = match self.config_policies.get(&cap) {
                        Some(p) => self.policies.set(cap.clone(), p.clone()),
                        None => self.policies.remove(&cap),
                    };
                    self.push_policy(&cap, &effective);
                    tracing::info!(capability = %cap, "runtime capability policy removed");
                }
            }
            Change::Forced(key, forced) => {
                if let Some(entry) = self.pairs.get(&key) {
                    if let Some(msg) = force_message(forced) {
                        entry.addr.do_send(msg);
                    }
                }
                self.fleet_forced.insert(key, forced);
            }
        }
        self.mirror_dirty = true;
    }

    fn apply_orchestrator(&mut self, o: Orchestrator, ctx: &mut Context<Self>) {
        let Some(old) = self.orchestrators.get(&o.id).cloned() else {
            tracing::info!(id = %o.id, orchestrator_label = label_of(&o), url = %o.url,
                capabilities = ?o.capabilities, "orchestrator added");
            self.orchestrators.insert(o.id.clone(), o.clone());
            self.not_offered.clear();
            self.orchestrator_added(&o);
            self.survey_step(ctx);
            return;
        };
        if old.url != o.url {
            // Never written by this gateway (a URL is an entry's identity); taken as a new entry.
            self.remove_orchestrator_pairs(&o.id);
            self.orchestrators.insert(o.id.clone(), o.clone());
            self.orchestrator_added(&o);
            return;
        }
        self.orchestrators.insert(o.id.clone(), o.clone());
        if old.enabled != o.enabled {
            for (key, entry) in &self.pairs {
                if key.orchestrator == o.id {
                    entry.addr.do_send(SetEnabled(o.enabled));
                }
            }
            tracing::info!(id = %o.id, orchestrator_label = label_of(&o), enabled = o.enabled,
                "orchestrator {}", if o.enabled { "enabled" } else { "disabled: draining" });
        }
        if old.label != o.label {
            // Its pairs share one `OrchestratorRef` (URL and label): replaced, and handed to
            // each pair, whichever replica or resync brought the change.
            self.relabel_pairs(&o);
            tracing::info!(id = %o.id, orchestrator_label = label_of(&o), "orchestrator labelled");
        }
        if old.capabilities != o.capabilities {
            for cap in &o.capabilities {
                self.register_capability(cap, Registration::Anchored);
            }
            self.ensure_declared_pairs();
        }
    }

    /// The forced state a new pair starts with (a trip made on another replica, or before the
    /// pair existed here).
    pub(super) fn forced_for(&self, key: &PairKey) -> Option<ForceBreaker> {
        self.fleet_forced.get(key).copied().filter(|f| f.holds_at(crate::clock::unix_ms_now())).and_then(force_message)
    }

    /// Notes that the registry revision `revision` has been applied, and answers the writers
    /// that waited for it.
    fn applied_revision(&mut self, revision: i64) {
        self.status.update(|s| s.applied(revision));
        let done: Vec<i64> = self.waiters.range(..=revision).map(|(r, _)| *r).collect();
        for r in done {
            for tx in self.waiters.remove(&r).unwrap_or_default() {
                let _ = tx.send(());
            }
        }
    }

    /// Completes a committed write: applies it now (sled, `revision: None`) or waits, bounded,
    /// until the watch has applied its revision (etcd), then answers `value`.
    pub(super) fn applied<T: 'static>(
        &mut self,
        committed: Committed<T>,
        change: impl FnOnce(&T) -> Vec<Change>,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, T> {
        let Committed { value, revision } = committed;
        let Some(revision) = revision else {
            for c in change(&value) {
                self.apply(c, ctx);
            }
            return Box::pin(actix::fut::ready(value));
        };
        if self.status.get().revision().is_some_and(|r| r >= revision) {
            return Box::pin(actix::fut::ready(value));
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(revision).or_default().push(tx);
        Box::pin(
            async move {
                if tokio::time::timeout(APPLY_WAIT, rx).await.is_err() {
                    tracing::warn!(
                        revision,
                        "a committed registry write was not seen on this replica's watch in time; answering anyway"
                    );
                }
                value
            }
            .into_actor(self),
        )
    }

    /// The registry as this replica holds it (what the local copy mirrors).
    pub(super) fn registry_state(&self) -> RegistryState {
        RegistryState {
            orchestrators: self.orchestrators.clone(),
            policies: self
                .runtime_policies
                .iter()
                .filter_map(|c| self.policies.get(c).map(|p| (c.clone(), p)))
                .collect(),
            forced: self.fleet_forced.clone(),
            revision: self.status.get().revision(),
        }
    }

    /// Writes the registry to the local sled copy when it changed (etcd only; once a tick).
    pub(super) fn mirror_if_dirty(&mut self) {
        if !self.mirror_dirty || self.registry.backend() != crate::registry::Backend::Etcd {
            self.mirror_dirty = false;
            return;
        }
        self.mirror_dirty = false;
        self.store.do_send(MirrorRegistry { state: self.registry_state().copy() });
    }
}

/// An orchestrator's label for log lines.
fn label_of(o: &Orchestrator) -> Option<&str> {
    o.label.as_ref().map(crate::orchestrator::Label::as_str)
}

/// The pair message for a forced state (`None`: a trip whose hold has already ended).
fn force_message(forced: Forced) -> Option<ForceBreaker> {
    match forced {
        Forced::Reset => Some(ForceBreaker { trip: false, hold_for: None }),
        Forced::Trip { until_unix_ms: None } => Some(ForceBreaker { trip: true, hold_for: None }),
        Forced::Trip { until_unix_ms: Some(until) } => {
            let left = until.saturating_sub(crate::clock::unix_ms_now());
            (left > 0).then(|| ForceBreaker { trip: true, hold_for: Some(Duration::from_millis(left)) })
        }
    }
}

impl Handler<WatchEvents> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: WatchEvents, ctx: &mut Self::Context) {
        let now = crate::clock::unix_ms_now();
        for (change, written_at) in msg.changes {
            if let Some(at) = written_at {
                metrics::histogram!(m::REGISTRY_APPLY_SECONDS).record(now.saturating_sub(at) as f64 / 1000.0);
            }
            self.apply(change, ctx);
        }
        self.applied_revision(msg.revision);
        self.mirror_if_dirty();
    }
}

impl Handler<Resynced> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Resynced, ctx: &mut Self::Context) {
        let changes = self.registry_state().diff(&msg.state);
        tracing::info!(changes = changes.len(), revision = ?msg.state.revision, "registry resynced: applying the difference");
        for change in changes {
            self.apply(change, ctx);
        }
        if let Some(r) = msg.state.revision {
            self.applied_revision(r);
        }
        self.mirror_dirty = true;
        self.mirror_if_dirty();
    }
}

/// Flattens a registry write: a failure becomes the registry error the admin API maps.
pub(super) fn written<T>(res: Result<T, WriteError>) -> Result<T, RegistryError> {
    res.map_err(RegistryError::from)
}

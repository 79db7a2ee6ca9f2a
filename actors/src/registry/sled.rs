//! The sled backend: the registry in the embedded store, as a single gateway keeps it. Every
//! write is flushed before it answers ([`crate::store`]) and the supervisor applies it at once
//! ([`Committed::local`]). Forced trips are not stored: they live in the pair actors' memory
//! (and end with the process), as they always have on one gateway.

use std::time::Duration;

use actix::prelude::*;

use super::{Backend, Committed, Forced, Registry, RegistryFuture, WriteError};
use crate::capability::Capability;
use crate::orchestrator::{Label, Listed, Orchestrator, OrchestratorChange, OrchestratorId, Source};
use crate::pair::PairKey;
use crate::policy::CapabilityPolicy;
use crate::store::{
    ApplyWebhook, DeleteOrchestrator, DeletePolicy, Duplicate, ForgetCapability, InsertOrchestrator, PutPolicy,
    ReconcileConfig, Store, StoreError, UpdateOrchestrator, WebhookDelta,
};

/// Bound on a store round trip.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// The sled registry: the store actor's registry messages.
#[derive(Clone)]
pub struct SledRegistry {
    store: Addr<Store>,
}

impl SledRegistry {
    /// The registry of `store`.
    pub fn new(store: Addr<Store>) -> Self {
        Self { store }
    }

    fn ask<M, T>(&self, msg: M) -> RegistryFuture<T>
    where
        M: Message<Result = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
        Store: Handler<M>,
    {
        let fut = self.store.send(msg).timeout(STORE_TIMEOUT);
        Box::pin(async move {
            match fut.await {
                Ok(r) => r.map_err(WriteError::Store),
                Err(_) => Err(WriteError::StoreTimeout),
            }
        })
    }
}

impl Registry for SledRegistry {
    fn backend(&self) -> Backend {
        Backend::Sled
    }

    fn add(
        &self,
        url: String,
        capabilities: Vec<Capability>,
        label: Option<Label>,
        source: Source,
    ) -> RegistryFuture<Result<Committed<Orchestrator>, Duplicate>> {
        let fut = self.ask(InsertOrchestrator { url, capabilities, label, source });
        Box::pin(async move { Ok(fut.await?.map(Committed::local)) })
    }

    fn remove(&self, id: OrchestratorId) -> RegistryFuture<Option<Committed<Orchestrator>>> {
        let fut = self.ask(DeleteOrchestrator { id });
        Box::pin(async move { Ok(fut.await?.map(Committed::local)) })
    }

    fn update(
        &self,
        id: OrchestratorId,
        change: OrchestratorChange,
    ) -> RegistryFuture<Option<Committed<Orchestrator>>> {
        let fut = self.ask(UpdateOrchestrator { id, change });
        Box::pin(async move { Ok(fut.await?.map(Committed::local)) })
    }

    fn put_policy(&self, capability: Capability, policy: CapabilityPolicy) -> RegistryFuture<Committed<()>> {
        let fut = self.ask(PutPolicy { capability, policy });
        Box::pin(async move { fut.await.map(Committed::local) })
    }

    fn delete_policy(&self, capability: Capability) -> RegistryFuture<Option<Committed<()>>> {
        let fut = self.ask(DeletePolicy { capability });
        Box::pin(async move { Ok(fut.await?.then(|| Committed::local(()))) })
    }

    fn forget_capability(&self, capability: Capability) -> RegistryFuture<Committed<(usize, bool)>> {
        let fut = self.ask(ForgetCapability { capability });
        Box::pin(async move { fut.await.map(Committed::local) })
    }

    fn force(&self, _key: PairKey, _forced: Forced) -> RegistryFuture<Option<Committed<()>>> {
        Box::pin(async { Ok(Some(Committed::local(()))) })
    }

    fn reconcile_config(&self, entries: Vec<Listed>) -> RegistryFuture<Committed<Vec<Orchestrator>>> {
        let fut = self.ask(ReconcileConfig { entries });
        Box::pin(async move { fut.await.map(|s| Committed::local(s.orchestrators)) })
    }

    fn apply_webhook(
        &self,
        add: Vec<Listed>,
        relabel: Vec<(OrchestratorId, Label)>,
        remove: Vec<OrchestratorId>,
    ) -> RegistryFuture<Committed<WebhookDelta>> {
        let fut = self.ask(ApplyWebhook { add, relabel, remove });
        Box::pin(async move { fut.await.map(Committed::local) })
    }
}

//! The registry: the orchestrators, capability policies, enabled flags and forced trips that
//! operators change, behind one trait ([`Registry`]) with two backends.
//!
//! - [`sled`] (the default): the embedded store, as a single gateway has always kept it. A
//!   write is applied by the supervisor as soon as the store has flushed it.
//! - [`etcd`] (fleets): a write is a revision-checked etcd transaction, acknowledged once etcd
//!   has committed it; every replica, the writer included, applies it from its watch, so one
//!   path changes memory whichever replica took the call.
//!
//! Learned pair scores are not part of the registry: each replica keeps its own view of health
//! in its own sled, as each Envoy keeps its own outlier detection.
//!
//! [`Change`] is what both backends produce and the supervisor applies
//! (`supervisor/changes.rs`); [`RegistryStatus`] is what the admin API, `/metrics` and the
//! status page read about the registry's freshness.

pub mod change;
pub mod etcd;
pub mod sled;
pub mod status;

use std::future::Future;
use std::pin::Pin;

pub use change::{Change, Forced, RegistryState};
pub use status::{RegistryStatus, Staleness};

use crate::capability::Capability;
use crate::orchestrator::{Label, Listed, Orchestrator, OrchestratorChange, OrchestratorId, Source};
use crate::pair::PairKey;
use crate::policy::CapabilityPolicy;
use crate::store::{Duplicate, StoreError, WebhookDelta};

/// Which backend holds the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The embedded sled store (one gateway).
    Sled,
    /// etcd (a fleet of gateways sharing one registry).
    Etcd,
}

impl Backend {
    /// The name used in the config file, the metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Etcd => "etcd",
        }
    }
}

/// A write the backend has made durable, with the etcd revision that committed it (`None`
/// for sled: the supervisor applies it at once; `Some`: the supervisor's watch applies it, and
/// the writer waits for that before it answers).
#[derive(Debug, Clone)]
pub struct Committed<T> {
    /// What the write produced.
    pub value: T,
    /// The etcd revision of the commit.
    pub revision: Option<i64>,
}

impl<T> Committed<T> {
    /// A write that is applied locally at once (sled).
    pub fn local(value: T) -> Self {
        Self { value, revision: None }
    }
}

/// Whether a failed write may still take effect: what an operator needs to know before
/// retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Certainly not applied: refused before it reached the registry (unreachable, refused by
    /// it, or a store write that was undone).
    NotApplied,
    /// Sent and unanswered: it may still commit. Read the registry back before retrying.
    Unknown,
}

impl Outcome {
    /// The value of `"outcome"` in an error answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NotApplied => "not-applied",
            Outcome::Unknown => "unknown",
        }
    }
}

/// Why a registry write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The sled store failed; nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store actor did not answer in time.
    #[error("the store did not answer in time")]
    StoreTimeout,
    /// etcd could not be used; `outcome` says whether the write may still commit.
    #[error("{detail}")]
    Unavailable {
        /// Not applied, or unknown.
        outcome: Outcome,
        /// What happened, for the operator.
        detail: String,
    },
}

/// A boxed registry operation (runs on whatever thread the backend chooses; awaited by the
/// supervisor).
pub type RegistryFuture<T> = Pin<Box<dyn Future<Output = Result<T, WriteError>> + Send>>;

/// The registry's write side. Reads are the supervisor's memory, which every backend keeps in
/// step (sled: at once; etcd: from the watch).
pub trait Registry: Send + Sync + 'static {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Registers an orchestrator unless its URL already is (then the existing entry's id).
    fn add(
        &self,
        url: String,
        capabilities: Vec<Capability>,
        label: Option<Label>,
        source: Source,
    ) -> RegistryFuture<Result<Committed<Orchestrator>, Duplicate>>;

    /// Removes an orchestrator (its forced trips too); `None` if it is not registered.
    fn remove(&self, id: OrchestratorId) -> RegistryFuture<Option<Committed<Orchestrator>>>;

    /// Applies an operator's change (the `enabled` flag, the label) to an orchestrator's record
    /// as one read-modify-write; `None` if it is not registered.
    fn update(&self, id: OrchestratorId, change: OrchestratorChange)
        -> RegistryFuture<Option<Committed<Orchestrator>>>;

    /// Stores a capability's runtime policy.
    fn put_policy(&self, capability: Capability, policy: CapabilityPolicy) -> RegistryFuture<Committed<()>>;

    /// Removes a capability's runtime policy; `None` if it had none.
    fn delete_policy(&self, capability: Capability) -> RegistryFuture<Option<Committed<()>>>;

    /// Forgets a capability: its runtime policy (shared) and this replica's pair records.
    /// Answers how many records went and whether a policy did.
    fn forget_capability(&self, capability: Capability) -> RegistryFuture<Committed<(usize, bool)>>;

    /// Forces a pair's breaker open (with its expiry) or resets it, on every replica; `None`
    /// if the orchestrator is not registered.
    fn force(&self, key: PairKey, forced: Forced) -> RegistryFuture<Option<Committed<()>>>;

    /// Brings the config file's orchestrators into the registry and answers the whole list
    /// as it now stands. sled: config entries are added, updated and removed to match the file;
    /// etcd: missing ones are added, a label the file gives is set on its config or webhook
    /// entry, and none is removed (several replicas' files may differ; removing is the admin
    /// API's). Both: a file naming no label keeps the entry's (an admin's label survives).
    fn reconcile_config(&self, entries: Vec<Listed>) -> RegistryFuture<Committed<Vec<Orchestrator>>>;

    /// Applies a change of the discovery webhook's list (idempotent: see
    /// [`crate::store::ApplyWebhook`]).
    fn apply_webhook(
        &self,
        add: Vec<Listed>,
        relabel: Vec<(OrchestratorId, Label)>,
        remove: Vec<OrchestratorId>,
    ) -> RegistryFuture<Committed<WebhookDelta>>;
}

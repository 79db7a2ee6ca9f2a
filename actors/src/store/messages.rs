//! The store's messages, one handler each. Writes go through [`Store::write`], which reopens
//! the database first when a disk error left it refusing writes.

use actix::prelude::*;

use super::{Duplicate, MirrorInfo, Snapshot, Store, StoreError, WebhookDelta};
use crate::capability::Capability;
use crate::orchestrator::{Label, Listed, Orchestrator, OrchestratorChange, OrchestratorId, Source};
use crate::pair::view::{PairKey, PairRecord};
use crate::policy::CapabilityPolicy;

/// Loads everything persisted.
#[derive(Message)]
#[rtype(result = "Result<Snapshot, StoreError>")]
pub struct Load;

impl Handler<Load> for Store {
    type Result = Result<Snapshot, StoreError>;
    fn handle(&mut self, _msg: Load, _ctx: &mut Self::Context) -> Self::Result {
        self.read()?.snapshot()
    }
}

/// Makes the registry's config-sourced entries match `entries` (URL, declared
/// capabilities, label): adds missing ones, updates declared capabilities and the labels the
/// config gives (an entry without one keeps its label), removes config entries
/// no longer listed (with their pair records). Admin-added entries are left alone. An entry
/// the discovery webhook added and the config now lists becomes a config entry (the static
/// source wins, so the webhook dropping it later does not remove it). Returns the resulting
/// snapshot.
#[derive(Message)]
#[rtype(result = "Result<Snapshot, StoreError>")]
pub struct ReconcileConfig {
    /// The orchestrators the flags and the file list.
    pub entries: Vec<Listed>,
}

impl Handler<ReconcileConfig> for Store {
    type Result = Result<Snapshot, StoreError>;
    fn handle(&mut self, msg: ReconcileConfig, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.reconcile_config(&msg.entries))
    }
}

/// Applies a change of the discovery webhook's list, worked out by the supervisor against its
/// registry: adds `add` with source `webhook`, relabels the `relabel` entries that still have
/// source `webhook`, and removes the `remove` entries that still have source `webhook` (with
/// their pair records), then flushes once. Idempotent, so a retry after
/// a failure converges: a URL already registered (by any source) is answered as it stands, an
/// entry already gone is skipped. On a failed flush everything is undone and nothing changed.
#[derive(Message)]
#[rtype(result = "Result<WebhookDelta, StoreError>")]
pub struct ApplyWebhook {
    /// Orchestrators to add (normalised URL, label).
    pub add: Vec<Listed>,
    /// Webhook entries whose label the webhook changed.
    pub relabel: Vec<(OrchestratorId, Label)>,
    /// Webhook entries to remove.
    pub remove: Vec<OrchestratorId>,
}

impl Handler<ApplyWebhook> for Store {
    type Result = Result<WebhookDelta, StoreError>;
    fn handle(&mut self, msg: ApplyWebhook, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.apply_webhook(&msg.add, &msg.relabel, &msg.remove))
    }
}

/// Adds an orchestrator unless its URL is already registered. Durable when it answers.
#[derive(Message)]
#[rtype(result = "Result<Result<Orchestrator, Duplicate>, StoreError>")]
pub struct InsertOrchestrator {
    /// Normalised URL.
    pub(crate) url: String,
    /// Declared capabilities.
    pub(crate) capabilities: Vec<Capability>,
    /// The operator's label.
    pub(crate) label: Option<Label>,
    /// Where it came from.
    pub(crate) source: Source,
}

impl Handler<InsertOrchestrator> for Store {
    type Result = Result<Result<Orchestrator, Duplicate>, StoreError>;
    fn handle(&mut self, msg: InsertOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.insert(&msg.url, msg.capabilities, msg.label, msg.source))
    }
}

/// Removes an orchestrator and its pair records. Durable when it answers; `None` if absent.
#[derive(Message)]
#[rtype(result = "Result<Option<Orchestrator>, StoreError>")]
pub struct DeleteOrchestrator {
    /// Which one.
    pub(crate) id: OrchestratorId,
}

impl Handler<DeleteOrchestrator> for Store {
    type Result = Result<Option<Orchestrator>, StoreError>;
    fn handle(&mut self, msg: DeleteOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.delete(&msg.id))
    }
}

/// Writes a batch of pair records (only for orchestrators still registered) and flushes.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SavePairs {
    /// The records.
    pub(crate) records: Vec<PairRecord>,
}

impl Handler<SavePairs> for Store {
    type Result = Result<usize, StoreError>;
    fn handle(&mut self, msg: SavePairs, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.save_pairs(&msg.records))
    }
}

/// Removes the records of pairs that no longer exist (they never offered anything). Returns
/// how many records it removed.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct ForgetPairs {
    /// The pairs.
    pub(crate) keys: Vec<PairKey>,
}

impl Handler<ForgetPairs> for Store {
    type Result = Result<usize, StoreError>;
    fn handle(&mut self, msg: ForgetPairs, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.forget_pairs(&msg.keys))
    }
}

/// Stores a capability's policy. Durable when it answers.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct PutPolicy {
    /// The capability.
    pub(crate) capability: Capability,
    /// Its policy.
    pub(crate) policy: CapabilityPolicy,
}

impl Handler<PutPolicy> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: PutPolicy, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.put_policy(&msg.capability, &msg.policy))
    }
}

/// Removes a capability's stored policy. Durable when it answers; false if there was none.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeletePolicy {
    /// The capability.
    pub(crate) capability: Capability,
}

impl Handler<DeletePolicy> for Store {
    type Result = Result<bool, StoreError>;
    fn handle(&mut self, msg: DeletePolicy, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.delete_policy(&msg.capability))
    }
}

/// Forgets a capability: its pair records and its runtime policy. Durable when it answers;
/// answers how many records went and whether a policy did.
#[derive(Message)]
#[rtype(result = "Result<(usize, bool), StoreError>")]
pub struct ForgetCapability {
    /// The capability.
    pub(crate) capability: Capability,
}

impl Handler<ForgetCapability> for Store {
    type Result = Result<(usize, bool), StoreError>;
    fn handle(&mut self, msg: ForgetCapability, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.forget_capability(&msg.capability))
    }
}

/// Applies an operator's change to one orchestrator (enabled flag, label). Durable when it
/// answers; `None` if absent.
#[derive(Message)]
#[rtype(result = "Result<Option<Orchestrator>, StoreError>")]
pub struct UpdateOrchestrator {
    /// Which one.
    pub(crate) id: OrchestratorId,
    /// What changes.
    pub(crate) change: OrchestratorChange,
}

impl Handler<UpdateOrchestrator> for Store {
    type Result = Result<Option<Orchestrator>, StoreError>;
    fn handle(&mut self, msg: UpdateOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.update_orchestrator(&msg.id, &msg.change))
    }
}

/// Fault injection: makes every store write fail (`true`) as on a full or read-only disk, or
/// restores normal operation (`false`). Used by the disk-trouble tests and chaos runs; only
/// with the `fault-injection` feature (the tests turn it on), never in a release build.
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectWriteFailure(pub bool);

#[cfg(any(test, feature = "fault-injection"))]
impl Handler<InjectWriteFailure> for Store {
    type Result = ();
    fn handle(&mut self, msg: InjectWriteFailure, _ctx: &mut Self::Context) {
        tracing::warn!(failing = msg.0, "fault injected: store writes {}", if msg.0 { "fail" } else { "work again" });
        self.set_fail_writes(msg.0);
    }
}

/// Replaces the registry trees with this replica's copy of the fleet's registry (etcd
/// backend); see `store/db/mirror.rs`.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct MirrorRegistry {
    /// The registry as applied.
    pub state: super::RegistryCopy,
}

impl Handler<MirrorRegistry> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: MirrorRegistry, _ctx: &mut Self::Context) -> Self::Result {
        let prefix = self.mirror_prefix.clone().unwrap_or_default();
        let res = self.write(|db| db.mirror(&msg.state, &prefix));
        if let Err(e) = &res {
            tracing::warn!(error = %e, "the local copy of the fleet's registry could not be written; retried at the next change");
        }
        res
    }
}

/// What the data dir's registry trees mirror (`None`: a registry of its own), and, with
/// `prefix`, makes later [`MirrorRegistry`] writes name that fleet.
#[derive(Message)]
#[rtype(result = "Result<Option<MirrorInfo>, StoreError>")]
pub struct GetMirror {
    /// The fleet's prefix later copies are written for.
    pub prefix: Option<String>,
}

impl Handler<GetMirror> for Store {
    type Result = Result<Option<MirrorInfo>, StoreError>;
    fn handle(&mut self, msg: GetMirror, _ctx: &mut Self::Context) -> Self::Result {
        if msg.prefix.is_some() {
            self.mirror_prefix = msg.prefix;
        }
        self.read()?.mirror_of()
    }
}

/// Bytes the database takes on disk.
#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct Size;

impl Handler<Size> for Store {
    type Result = Result<u64, StoreError>;
    fn handle(&mut self, _msg: Size, _ctx: &mut Self::Context) -> Self::Result {
        self.read()?.size()
    }
}

/// Flushes everything to disk (shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Flush;

impl Handler<Flush> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        self.write(|db| db.flush())
    }
}

/// Readiness probe: reads the schema key.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Ping;

impl Handler<Ping> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _msg: Ping, _ctx: &mut Self::Context) -> Self::Result {
        self.read()?.ping()
    }
}

//! The registry's writes as etcd transactions. Each one is revision-checked: it commits only
//! if what it read is still what etcd holds, so two replicas writing at once never interleave
//! into a state neither meant (an orchestrator re-created by a late enable, two entries for one
//! URL, one id for two orchestrators). A write that lost such a race reads again and retries,
//! a bounded number of times; the order etcd commits in decides, the same for every replica.
//!
//! Every write also touches `registry/revision`, whose mod revision is then the revision the
//! whole registry reflects (what `GET /admin/orchestrators` shows on every replica).

use etcd_client::{Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse};

use super::keys::{encode, id_number, Keys};
use crate::capability::Capability;
use crate::orchestrator::{Label, Orchestrator, OrchestratorChange, OrchestratorId, Source};
use crate::pair::PairKey;
use crate::policy::CapabilityPolicy;
use crate::registry::{Committed, Forced};
use crate::store::Duplicate;

/// Reads and retries of one write that keeps losing races before it gives up (not applied).
const MAX_TRIES: usize = 8;

/// What a write returns: the etcd error, or the write's result. `Err(Lost)` inside means it
/// lost every race (nothing committed).
pub(crate) type Written<T> = Result<Result<T, Lost>, etcd_client::Error>;

/// Every try lost a race with another writer; nothing was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost;

/// The writer's context: the keys, and the replica id stamped on records.
pub(crate) struct Writer<'a> {
    pub(crate) kv: KvClient,
    pub(crate) keys: &'a Keys,
    pub(crate) by: &'a str,
}

fn revision_of(resp: &etcd_client::TxnResponse) -> Option<i64> {
    resp.header().map(|h| h.revision())
}

impl Writer<'_> {
    fn touch(&self) -> TxnOp {
        TxnOp::put(self.keys.revision(), self.by.as_bytes().to_vec(), None)
    }

    /// The next orchestrator number, and the mod revision of the counter it was read at (0:
    /// no counter yet, then one past the highest `orch-N` registered).
    async fn next_id(&mut self) -> Result<(u64, i64), etcd_client::Error> {
        let resp = self.kv.get(self.keys.next_id(), None).await?;
        if let Some(kv) = resp.kvs().first() {
            let n = std::str::from_utf8(kv.value()).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(1);
            return Ok((n.max(1), kv.mod_revision()));
        }
        let all =
            self.kv.get(self.keys.orchestrators(), Some(GetOptions::new().with_prefix().with_keys_only())).await?;
        let highest = all
            .kvs()
            .iter()
            .filter_map(|kv| std::str::from_utf8(kv.key()).ok())
            .filter_map(|k| k.rsplit('/').next())
            .filter_map(|id| id_number(&OrchestratorId(id.into())))
            .max()
            .unwrap_or(0);
        Ok((highest + 1, 0))
    }

    /// Registers an orchestrator under the next free id unless its URL is registered.
    pub(crate) async fn add(
        &mut self,
        url: &str,
        capabilities: Vec<Capability>,
        label: Option<Label>,
        source: Source,
    ) -> Written<Result<Committed<Orchestrator>, Duplicate>> {
        let url_key = self.keys.url(url);
        for _ in 0..MAX_TRIES {
            let (n, counter_rev) = self.next_id().await?;
            let id = OrchestratorId(format!("orch-{n}").into());
            let orch = Orchestrator {
                id: id.clone(),
                url: url.to_string(),
                capabilities: capabilities.clone(),
                added_at: crate::clock::unix_ms_now(),
                source,
                enabled: true,
                label: label.clone(),
            };
            let orch_key = self.keys.orchestrator(&id);
            let txn = Txn::new()
                .when([
                    Compare::version(url_key.clone(), CompareOp::Equal, 0),
                    Compare::mod_revision(self.keys.next_id(), CompareOp::Equal, counter_rev),
                    Compare::version(orch_key.clone(), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(orch_key.clone(), encode(&orch, self.by), None),
                    TxnOp::put(url_key.clone(), id.0.as_bytes().to_vec(), None),
                    TxnOp::put(self.keys.next_id(), (n + 1).to_string(), None),
                    self.touch(),
                ])
                .or_else([TxnOp::get(url_key.clone(), None), TxnOp::get(orch_key.clone(), None)]);
            let resp = self.kv.txn(txn).await?;
            if resp.succeeded() {
                return Ok(Ok(Ok(Committed { value: orch, revision: revision_of(&resp) })));
            }
            let ops = resp.op_responses();
            if let Some(TxnOpResponse::Get(g)) = ops.first() {
                if let Some(kv) = g.kvs().first() {
                    let existing = String::from_utf8_lossy(kv.value()).into_owned();
                    return Ok(Ok(Err(Duplicate { id: OrchestratorId(existing.into()), url: url.to_string() })));
                }
            }
            if let Some(TxnOpResponse::Get(g)) = ops.get(1) {
                if !g.kvs().is_empty() {
                    // orch-N is taken (an imported entry the counter does not know): move the
                    // counter past it, revision-checked like any write, and try again.
                    let bump = Txn::new()
                        .when([Compare::mod_revision(self.keys.next_id(), CompareOp::Equal, counter_rev)])
                        .and_then([TxnOp::put(self.keys.next_id(), (n + 1).to_string(), None)]);
                    self.kv.txn(bump).await?;
                }
            }
            // Otherwise another replica took the id first: read the counter again.
        }
        Ok(Err(Lost))
    }

    /// Reads an orchestrator with the mod revision it was read at.
    pub(crate) async fn read(
        &mut self,
        id: &OrchestratorId,
    ) -> Result<Option<(Orchestrator, i64)>, etcd_client::Error> {
        let resp = self.kv.get(self.keys.orchestrator(id), None).await?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| super::keys::decode::<Orchestrator>(kv.value()).ok().map(|o| (o, kv.mod_revision()))))
    }

    /// Removes an orchestrator, its URL index entry and its forced trips, if it is still the
    /// record read (and, with `only`, if it came from that source: the webhook removes only
    /// its own entries).
    pub(crate) async fn remove(
        &mut self,
        id: &OrchestratorId,
        only: Option<Source>,
    ) -> Written<Option<Committed<Orchestrator>>> {
        let key = self.keys.orchestrator(id);
        for _ in 0..MAX_TRIES {
            let Some((orch, rev)) = self.read(id).await? else { return Ok(Ok(None)) };
            if only.is_some_and(|s| s != orch.source) {
                return Ok(Ok(None));
            }
            let txn = Txn::new().when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)]).and_then([
                TxnOp::delete(key.clone(), None),
                TxnOp::delete(self.keys.url(&orch.url), None),
                TxnOp::delete(self.keys.trips_of(id), Some(etcd_client::DeleteOptions::new().with_prefix())),
                self.touch(),
            ]);
            let resp = self.kv.txn(txn).await?;
            if resp.succeeded() {
                return Ok(Ok(Some(Committed { value: orch, revision: revision_of(&resp) })));
            }
        }
        Ok(Err(Lost))
    }

    /// Applies an operator's change (enabled flag, label) to an orchestrator, if the record is
    /// still the one read (a delete in between makes it a 404, never a re-created entry) and,
    /// with `only`, if it came from that source (the webhook relabels only its own entries).
    pub(crate) async fn update(
        &mut self,
        id: &OrchestratorId,
        change: &OrchestratorChange,
        only: Option<Source>,
    ) -> Written<Option<Committed<Orchestrator>>> {
        let key = self.keys.orchestrator(id);
        for _ in 0..MAX_TRIES {
            let Some((mut orch, rev)) = self.read(id).await? else { return Ok(Ok(None)) };
            if only.is_some_and(|s| s != orch.source) {
                return Ok(Ok(None));
            }
            change.apply(&mut orch);
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                .and_then([TxnOp::put(key.clone(), encode(&orch, self.by), None), self.touch()]);
            let resp = self.kv.txn(txn).await?;
            if resp.succeeded() {
                return Ok(Ok(Some(Committed { value: orch, revision: revision_of(&resp) })));
            }
        }
        Ok(Err(Lost))
    }

    /// Stores a capability's runtime policy (a PUT: the last one committed wins, in etcd's
    /// order, on every replica).
    pub(crate) async fn put_policy(&mut self, cap: &Capability, policy: &CapabilityPolicy) -> Written<Committed<()>> {
        let txn = Txn::new().and_then([TxnOp::put(self.keys.policy(cap), encode(policy, self.by), None), self.touch()]);
        let resp = self.kv.txn(txn).await?;
        Ok(Ok(Committed { value: (), revision: revision_of(&resp) }))
    }

    /// Removes a capability's runtime policy; `None` if it had none.
    pub(crate) async fn delete_policy(&mut self, cap: &Capability) -> Written<Option<Committed<()>>> {
        let key = self.keys.policy(cap);
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Greater, 0)])
            .and_then([TxnOp::delete(key, None), self.touch()]);
        let resp = self.kv.txn(txn).await?;
        Ok(Ok(resp.succeeded().then(|| Committed { value: (), revision: revision_of(&resp) })))
    }

    /// Records a pair's forced state, if its orchestrator is registered.
    pub(crate) async fn force(&mut self, key: &PairKey, forced: Forced) -> Written<Option<Committed<()>>> {
        let orch_key = self.keys.orchestrator(&key.orchestrator);
        let txn = Txn::new()
            .when([Compare::version(orch_key, CompareOp::Greater, 0)])
            .and_then([TxnOp::put(self.keys.trip(key), encode(&forced, self.by), None), self.touch()]);
        let resp = self.kv.txn(txn).await?;
        Ok(Ok(resp.succeeded().then(|| Committed { value: (), revision: revision_of(&resp) })))
    }
}

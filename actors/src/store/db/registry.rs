//! Registry writes: orchestrators added, removed, reconciled with the config file and the
//! discovery webhook. Every write that answers is flushed first; a failed flush is undone in
//! memory so that the answer ("not done") and the database agree.

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{Db, Duplicate, Snapshot};
use crate::capability::Capability;
use crate::clock::unix_ms_now;
use crate::orchestrator::{Label, Listed, Orchestrator, OrchestratorId, Source};
use crate::store::StoreError;

impl Db {
    pub(crate) fn insert(
        &self,
        url: &str,
        capabilities: Vec<Capability>,
        label: Option<Label>,
        source: Source,
    ) -> Result<Result<Orchestrator, Duplicate>, StoreError> {
        let res = self.insert_unflushed(url, capabilities, label, source)?;
        if let Ok(orch) = &res {
            self.flushed_or_undo(|| self.undo_insert(orch))?;
        }
        Ok(res)
    }

    /// Flushes; if that fails, runs `undo` so that memory and the error agree ("not done") and
    /// a retry is not refused as a duplicate.
    fn flushed_or_undo(&self, undo: impl FnOnce()) -> Result<(), StoreError> {
        self.flush().inspect_err(|_| undo())
    }

    fn undo_insert(&self, orch: &Orchestrator) {
        let _ = self.urls.remove(orch.url.as_bytes());
        let _ = self.orchestrators.remove(orch.id.0.as_bytes());
    }

    /// [`Store::insert`] without the flush, for batches that flush once.
    fn insert_unflushed(
        &self,
        url: &str,
        capabilities: Vec<Capability>,
        label: Option<Label>,
        source: Source,
    ) -> Result<Result<Orchestrator, Duplicate>, StoreError> {
        // A duplicate is refused before an id is drawn, so refused adds leave no gap in the
        // ids (the store actor serialises writes: nothing can add this URL in between).
        if let Some(existing) = self.urls.get(url.as_bytes()).map_err(|e| self.err(e))? {
            let id = OrchestratorId(String::from_utf8_lossy(&existing).into_owned().into());
            return Ok(Err(Duplicate { id, url: url.to_string() }));
        }
        // Ids come from sled's monotonic counter; skip any taken by an imported entry.
        let id = loop {
            let n = self.db.generate_id().map_err(|e| self.err(e))?;
            let id = OrchestratorId(format!("orch-{}", n + 1).into());
            if !self.orchestrators.contains_key(id.0.as_bytes()).map_err(|e| self.err(e))? {
                break id;
            }
        };
        let orch = Orchestrator {
            id,
            url: url.to_string(),
            capabilities,
            added_at: unix_ms_now(),
            source,
            enabled: true,
            label,
        };
        self.put_new_unflushed(orch)
    }

    /// Inserts `orch` with its own id unless its URL (or id) is already registered.
    pub(crate) fn put_new(&self, orch: Orchestrator) -> Result<Result<Orchestrator, Duplicate>, StoreError> {
        let res = self.put_new_unflushed(orch)?;
        if let Ok(orch) = &res {
            self.flushed_or_undo(|| self.undo_insert(orch))?;
        }
        Ok(res)
    }

    fn put_new_unflushed(&self, orch: Orchestrator) -> Result<Result<Orchestrator, Duplicate>, StoreError> {
        self.writable()?;
        let url = orch.url.clone();
        let url = url.as_str();
        let value = Self::encode(&orch);
        let res: Result<Result<(), OrchestratorId>, TransactionError<()>> = (&self.orchestrators, &self.urls)
            .transaction(|(o, u)| {
                if let Some(existing) = u.get(url.as_bytes())? {
                    let id = String::from_utf8_lossy(&existing).into_owned();
                    return Ok(Err(OrchestratorId(id.into())));
                }
                if o.get(orch.id.0.as_bytes())?.is_some() {
                    return Ok(Err(orch.id.clone()));
                }
                u.insert(url.as_bytes(), orch.id.0.as_bytes())?;
                o.insert(orch.id.0.as_bytes(), value.as_slice())?;
                Ok(Ok(()))
            });
        match res {
            Ok(Ok(())) => Ok(Ok(orch)),
            Ok(Err(id)) => Ok(Err(Duplicate { id, url: url.to_string() })),
            Err(TransactionError::Storage(e)) => Err(self.err(e)),
            Err(TransactionError::Abort(())) => Err(StoreError::Io("transaction aborted".into())),
        }
    }

    pub(crate) fn delete(&self, id: &OrchestratorId) -> Result<Option<Orchestrator>, StoreError> {
        let Some(deleted) = self.delete_unflushed(id)? else {
            return Ok(None);
        };
        self.flushed_or_undo(|| self.undo_delete(&deleted))?;
        Ok(Some(deleted.orch))
    }

    /// Puts a deleted entry back (its flush failed).
    fn undo_delete(&self, d: &Deleted) {
        let _ = self.orchestrators.insert(d.orch.id.0.as_bytes(), d.raw.clone());
        let _ = self.urls.insert(d.orch.url.as_bytes(), d.orch.id.0.as_bytes());
        if let Some(scores) = &d.pairs {
            let _ = self.pairs.insert(d.orch.id.0.as_bytes(), scores.clone());
        }
    }

    /// [`Store::delete`] without the flush, keeping what is needed to undo it.
    fn delete_unflushed(&self, id: &OrchestratorId) -> Result<Option<Deleted>, StoreError> {
        self.writable()?;
        let Some(raw) = self.orchestrators.get(id.0.as_bytes()).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let orch: Orchestrator = Self::decode(id.0.as_bytes(), &raw)?;
        let scores = self.pairs.get(id.0.as_bytes()).map_err(|e| self.err(e))?;
        let res: Result<(), TransactionError<()>> =
            (&self.orchestrators, &self.urls, &self.pairs).transaction(|(o, u, p)| {
                o.remove(id.0.as_bytes())?;
                u.remove(orch.url.as_bytes())?;
                p.remove(id.0.as_bytes())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        res.map_err(|e| match e {
            TransactionError::Storage(e) => self.err(e),
            TransactionError::Abort(()) => StoreError::Io("transaction aborted".into()),
        })?;
        Ok(Some(Deleted { orch, raw, pairs: scores }))
    }

    /// Makes the config-sourced entries match `entries` (see [`crate::store::ReconcileConfig`]).
    pub(crate) fn reconcile_config(&self, entries: &[Listed]) -> Result<Snapshot, StoreError> {
        self.writable()?;
        let existing = self.list_orchestrators()?;
        for listed in entries {
            let (url, caps) = (&listed.url, &listed.capabilities);
            // The file's label wins when it gives one; without one the entry keeps its own.
            let label = |o: &Orchestrator| listed.label.clone().or_else(|| o.label.clone());
            match existing.iter().find(|o| &o.url == url) {
                Some(o) if o.source == Source::Webhook => {
                    let adopted = Orchestrator {
                        capabilities: caps.clone(),
                        source: Source::Config,
                        label: label(o),
                        ..o.clone()
                    };
                    tracing::info!(id = %o.id, url = %o.url, "orchestrator found by the webhook is now listed in the config");
                    self.orchestrators.insert(o.id.0.as_bytes(), Self::encode(&adopted)).map_err(|e| self.err(e))?;
                }
                Some(o) if o.source == Source::Config && (o.capabilities != *caps || o.label != label(o)) => {
                    let updated = Orchestrator { capabilities: caps.clone(), label: label(o), ..o.clone() };
                    self.orchestrators.insert(o.id.0.as_bytes(), Self::encode(&updated)).map_err(|e| self.err(e))?;
                }
                Some(_) => {}
                None => {
                    // A concurrent duplicate cannot happen here (start-up, single thread).
                    let _ = self.insert(url, caps.clone(), listed.label.clone(), Source::Config)?;
                }
            }
        }
        for o in existing.iter().filter(|o| o.source == Source::Config) {
            if !entries.iter().any(|l| l.url == o.url) {
                let learned = self.pairs.contains_key(o.id.0.as_bytes()).unwrap_or(false);
                tracing::warn!(id = %o.id, url = %o.url, had_learned_scores = learned,
                    "orchestrator no longer in --orch-addr or the config file: removed, with the scores it had \
                     learned; add it back to keep routing to it (take `byoc-gateway store export` before changing \
                     the flags to keep a copy)");
                self.delete(&o.id)?;
            }
        }
        self.flush()?;
        self.snapshot()
    }

    /// Applies a change of the webhook's list (see [`crate::store::ApplyWebhook`]).
    pub(crate) fn apply_webhook(
        &self,
        add: &[Listed],
        relabel: &[(OrchestratorId, Label)],
        remove: &[OrchestratorId],
    ) -> Result<WebhookDelta, StoreError> {
        self.writable()?;
        let (mut inserted, mut deleted, mut relabelled) = (Vec::new(), Vec::new(), Vec::new());
        let mut delta = WebhookDelta::default();
        let res = (|| {
            for listed in add {
                match self.insert_unflushed(&listed.url, Vec::new(), listed.label.clone(), Source::Webhook)? {
                    Ok(o) => {
                        inserted.push(o.clone());
                        delta.added.push(o);
                    }
                    Err(dup) => delta.added.extend(self.get_orchestrator(&dup.id)?),
                }
            }
            for (id, label) in relabel {
                // Only the webhook's own entries: a reload may have adopted one meanwhile.
                let Some(raw) = self.orchestrators.get(id.0.as_bytes()).map_err(|e| self.err(e))? else { continue };
                let mut o: Orchestrator = Self::decode(id.0.as_bytes(), &raw)?;
                if o.source != Source::Webhook {
                    continue;
                }
                o.label = Some(label.clone());
                self.orchestrators.insert(id.0.as_bytes(), Self::encode(&o)).map_err(|e| self.err(e))?;
                relabelled.push((id.clone(), raw));
                delta.relabelled.push(o);
            }
            for id in remove {
                // Only the webhook's own entries: a reload may have adopted one meanwhile.
                if self.get_orchestrator(id)?.is_some_and(|o| o.source == Source::Webhook) {
                    if let Some(d) = self.delete_unflushed(id)? {
                        delta.removed.push(d.orch.clone());
                        deleted.push(d);
                    }
                }
            }
            self.flush()
        })();
        if let Err(e) = res {
            for o in &inserted {
                self.undo_insert(o);
            }
            for (id, raw) in relabelled {
                let _ = self.orchestrators.insert(id.0.as_bytes(), raw);
            }
            for d in &deleted {
                self.undo_delete(d);
            }
            return Err(e);
        }
        Ok(delta)
    }
}

/// What [`crate::store::ApplyWebhook`] did.
#[derive(Debug, Clone, Default)]
pub struct WebhookDelta {
    /// The entries now registered for the added URLs (an entry of another source if one won a
    /// race for the URL).
    pub(crate) added: Vec<Orchestrator>,
    /// The entries whose label changed.
    pub(crate) relabelled: Vec<Orchestrator>,
    /// The entries removed.
    pub removed: Vec<Orchestrator>,
}

/// A deleted registry entry with what it takes to put it back.
struct Deleted {
    orch: Orchestrator,
    raw: sled::IVec,
    /// Its `pair_scores` entry.
    pairs: Option<sled::IVec>,
}

#[cfg(test)]
mod tests {
    use super::super::testing::cap;
    use super::super::*;
    use super::*;
    use crate::orchestrator::OrchestratorChange;
    use crate::pair::view::PairRecord;

    fn listed(url: &str, label: Option<&str>) -> Listed {
        Listed { url: url.into(), capabilities: Vec::new(), label: label.map(|l| Label::new(l).expect("valid")) }
    }

    fn label_of(s: &Db, url: &str) -> Option<String> {
        let all = s.list_orchestrators().expect("list");
        all.into_iter().find(|o| o.url == url).and_then(|o| o.label).map(|l| l.to_string())
    }

    #[test]
    fn insert_is_unique_by_url_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = {
            let s = open(dir.path()).expect("open");
            let o = s.insert("http://a:1", vec![cap("depth")], None, Source::Admin).expect("io").expect("new");
            let dup = s.insert("http://a:1", vec![], None, Source::Admin).expect("io");
            assert_eq!(dup, Err(Duplicate { id: o.id.clone(), url: "http://a:1".into() }));
            o.id
        };
        let s = open(dir.path()).expect("reopen");
        let all = s.list_orchestrators().expect("list");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, id);
        assert_eq!(all[0].capabilities, vec![cap("depth")]);
        // Ids keep growing after a reopen.
        let o2 = s.insert("http://b:1", vec![], None, Source::Admin).expect("io").expect("new");
        assert_ne!(o2.id, id);
    }

    #[test]
    fn delete_removes_url_index_and_pairs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let o = s.insert("http://a:1", vec![], None, Source::Admin).expect("io").expect("new");
        let rec = PairRecord {
            orchestrator: o.id.clone(),
            capability: cap("depth"),
            latency_ewma_ms: 12.0,
            latency_updated_unix_ms: None,
            success_rate: 1.0,
            breaker: crate::breaker::State::Closed,
            breaker_level: 0,
            open_until_unix_ms: None,
            offered: true,
            cold_start_ms: Some(5),
            counters: Default::default(),
            restarts: 0,
            saved_at_unix_ms: 0,
        };
        assert_eq!(s.merge_pairs(std::slice::from_ref(&rec), true).expect("save"), 1);
        assert_eq!(s.list_pairs().expect("pairs").len(), 1);
        assert_eq!(s.delete(&o.id).expect("io").map(|o| o.url), Some("http://a:1".into()));
        assert!(s.list_pairs().expect("pairs").is_empty());
        assert_eq!(s.delete(&o.id).expect("io"), None);
        // The URL can be added again.
        assert!(s.insert("http://a:1", vec![], None, Source::Admin).expect("io").is_ok());
    }

    #[test]
    fn webhook_changes_touch_only_webhook_entries_and_a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path()).expect("open");
        let admin = s.insert("http://admin:1", vec![], None, Source::Admin).expect("io").expect("new");
        let urls = |add: &[&str]| add.iter().map(|u| listed(u, None)).collect::<Vec<_>>();

        let d = s.apply_webhook(&urls(&["http://w:1", "http://admin:1"]), &[], &[]).expect("io");
        let sources: Vec<(String, Source)> = d.added.iter().map(|o| (o.url.clone(), o.source)).collect();
        assert_eq!(sources, vec![("http://w:1".into(), Source::Webhook), ("http://admin:1".into(), Source::Admin)]);
        let w = d.added[0].id.clone();
        // Removing an admin entry through the webhook path does nothing; a retry is harmless.
        let d = s.apply_webhook(&urls(&["http://w:1"]), &[], std::slice::from_ref(&admin.id)).expect("io");
        assert!(d.removed.is_empty());
        assert_eq!(d.added.iter().map(|o| o.id.clone()).collect::<Vec<_>>(), vec![w.clone()]);
        assert_eq!(s.list_orchestrators().expect("list").len(), 2);

        // A failed write leaves the registry as it was.
        s.set_fail_writes(true);
        assert!(s.apply_webhook(&urls(&["http://w2:1"]), &[], std::slice::from_ref(&w)).is_err());
        s.set_fail_writes(false);
        let now: Vec<String> = s.list_orchestrators().expect("list").into_iter().map(|o| o.url).collect();
        assert_eq!(now.len(), 2, "{now:?}");
        assert!(now.contains(&"http://w:1".to_string()) && !now.contains(&"http://w2:1".to_string()));

        let d = s.apply_webhook(&[], &[], std::slice::from_ref(&w)).expect("io");
        assert_eq!(d.removed.iter().map(|o| o.id.clone()).collect::<Vec<_>>(), vec![w]);
        assert_eq!(s.list_orchestrators().expect("list"), vec![admin]);
    }

    #[test]
    fn a_config_entry_adopts_the_webhook_entry_of_the_same_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let w = s.insert("http://w:1", vec![], None, Source::Webhook).expect("io").expect("new");
        let snap = s
            .reconcile_config(&[Listed { capabilities: vec![cap("depth")], ..listed("http://w:1", None) }])
            .expect("io");
        assert_eq!(snap.orchestrators.len(), 1);
        let o = &snap.orchestrators[0];
        assert_eq!((&o.id, o.source, &o.capabilities), (&w.id, Source::Config, &vec![cap("depth")]));
        // Now the webhook dropping it changes nothing.
        let d = s.apply_webhook(&[], &[], std::slice::from_ref(&w.id)).expect("io");
        assert!(d.removed.is_empty());
        assert_eq!(s.list_orchestrators().expect("list").len(), 1);
    }

    #[test]
    fn labels_are_stored_changed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = {
            let s = open(dir.path()).expect("open");
            let o = s
                .insert("http://a:1", vec![], Some(Label::new("fast").expect("valid")), Source::Admin)
                .expect("io")
                .expect("new");
            assert_eq!(o.label.as_ref().map(Label::as_str), Some("fast"));
            let change =
                OrchestratorChange { label: Some(Some(Label::new("l40s box").expect("valid"))), enabled: None };
            let o = s.update_orchestrator(&o.id, &change).expect("io").expect("registered");
            assert_eq!((o.label.as_ref().map(Label::as_str), o.enabled), (Some("l40s box"), true));
            o.id
        };
        let mut s = open(dir.path()).expect("reopen");
        assert_eq!(label_of(&s, "http://a:1").as_deref(), Some("l40s box"));
        // A failed write changes nothing; clearing works.
        s.set_fail_writes(true);
        assert!(s.update_orchestrator(&id, &OrchestratorChange { label: Some(None), enabled: None }).is_err());
        s.set_fail_writes(false);
        assert_eq!(label_of(&s, "http://a:1").as_deref(), Some("l40s box"));
        s.update_orchestrator(&id, &OrchestratorChange { label: Some(None), enabled: Some(false) }).expect("io");
        assert_eq!(label_of(&s, "http://a:1"), None);
        let ghost = OrchestratorId("orch-404".into());
        assert_eq!(s.update_orchestrator(&ghost, &OrchestratorChange::default()).expect("io"), None);
    }

    #[test]
    fn the_config_gives_labels_and_an_entry_without_one_keeps_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        s.reconcile_config(&[listed("http://a:1", Some("fast")), listed("http://b:1", None)]).expect("io");
        assert_eq!(label_of(&s, "http://a:1").as_deref(), Some("fast"));
        assert_eq!(label_of(&s, "http://b:1"), None);
        // The operator names b through the admin API; a reload naming no label keeps it, one
        // naming a label sets it.
        let b = s.list_orchestrators().expect("list").into_iter().find(|o| o.url == "http://b:1").expect("b");
        let change = OrchestratorChange { label: Some(Some(Label::new("named").expect("valid"))), enabled: None };
        s.update_orchestrator(&b.id, &change).expect("io");
        s.reconcile_config(&[listed("http://a:1", Some("quick")), listed("http://b:1", None)]).expect("io");
        assert_eq!(label_of(&s, "http://a:1").as_deref(), Some("quick"));
        assert_eq!(label_of(&s, "http://b:1").as_deref(), Some("named"));
    }

    #[test]
    fn the_webhook_labels_its_own_entries_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let admin = s.insert("http://admin:1", vec![], None, Source::Admin).expect("io").expect("new");
        let d = s.apply_webhook(&[listed("http://w:1", Some("gpu-1"))], &[], &[]).expect("io");
        assert_eq!(d.added[0].label.as_ref().map(Label::as_str), Some("gpu-1"));
        let w = d.added[0].id.clone();
        let new = Label::new("gpu-one").expect("valid");
        let d = s.apply_webhook(&[], &[(w.clone(), new.clone()), (admin.id.clone(), new)], &[]).expect("io");
        assert_eq!(d.relabelled.iter().map(|o| o.id.clone()).collect::<Vec<_>>(), vec![w]);
        assert_eq!(label_of(&s, "http://w:1").as_deref(), Some("gpu-one"));
        assert_eq!(label_of(&s, "http://admin:1"), None, "an admin entry is not the webhook's to name");
    }
}

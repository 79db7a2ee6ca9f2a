//! Learned pair scores: grouped per orchestrator, because sled's cost is mostly per entry (at
//! 10,000 pairs, one JSON entry per pair, schema 1, held about 15 MB resident; one compact
//! entry per orchestrator about 4 MB). postcard is not self-describing, so a new
//! [`PairRecord`] field needs a schema bump with a migration, like the one from schema 1 here.

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{Db, SCHEMA_KEY, SCHEMA_VERSION, V1_PAIRS_TREE};
use crate::capability::Capability;
use crate::orchestrator::OrchestratorId;
use crate::pair::view::{PairKey, PairRecord};
use crate::store::StoreError;

/// Orchestrator groups written per sled batch (about 500 pair records at 10 capabilities).
const SAVE_BATCH_GROUPS: usize = 50;

impl Db {
    /// Schema 1 -> 2: regroups the per-pair JSON records into one compact entry per
    /// orchestrator. The new entries and the version bump commit in one transaction, so a
    /// crash leaves either schema 1 intact or schema 2 complete. A record that does not
    /// decode is dropped with a warning: scores are soft state and rebuild from traffic.
    pub(super) fn migrate_from_v1(&self) -> Result<(), StoreError> {
        self.writable()?;
        let old = self.db.open_tree(V1_PAIRS_TREE).map_err(|e| self.err(e))?;
        let mut records = Vec::with_capacity(old.len());
        for kv in old.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            match serde_json::from_slice::<PairRecord>(&v) {
                Ok(r) => records.push(r),
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&k), error = %e, "schema 1 pair record dropped")
                }
            }
        }
        let groups = group_by_orchestrator(&records);
        let res: Result<(), TransactionError<()>> = (&self.meta, &self.pairs).transaction(|(meta, pairs)| {
            for (orch, group) in &groups {
                let mut group: Vec<PairRecord> = group.iter().map(|r| (*r).clone()).collect();
                group.sort_by(|a, b| a.capability.cmp(&b.capability));
                pairs.insert(orch.0.as_bytes(), encode_scores(&group))?;
            }
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())?;
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        res.map_err(|e| match e {
            TransactionError::Storage(e) => self.err(e),
            TransactionError::Abort(()) => StoreError::Io("migration transaction aborted".into()),
        })?;
        self.flush()?;
        tracing::info!(pairs = records.len(), orchestrators = groups.len(), "store migrated from schema 1 to 2");
        Ok(())
    }

    /// Writes `records` into their orchestrators' groups (replacing a pair's earlier record),
    /// in sled batches of bounded size, without flushing. With `registered_only`, records of
    /// orchestrators no longer registered are skipped (a deleted orchestrator must not come
    /// back through a late score save). Returns how many records were written.
    pub(crate) fn merge_pairs(&self, records: &[PairRecord], registered_only: bool) -> Result<usize, StoreError> {
        let groups: Vec<_> = group_by_orchestrator(records).into_iter().collect();
        let mut n = 0;
        // Bounded batches: the first save after a cold start with 10,000 pairs wrote them in
        // one batch, whose peak stayed as resident memory. Scores need no atomicity across
        // orchestrators; the caller's flush makes the whole save durable.
        for chunk in groups.chunks(SAVE_BATCH_GROUPS) {
            let mut batch = sled::Batch::default();
            for (orch, updates) in chunk {
                let key = orch.0.as_bytes();
                if registered_only && !self.orchestrators.contains_key(key).map_err(|e| self.err(e))? {
                    continue;
                }
                let mut group = match self.pairs.get(key).map_err(|e| self.err(e))? {
                    Some(raw) => decode_scores(key, &raw).unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "stored pair scores unreadable; rewritten from the current ones");
                        Vec::new()
                    }),
                    None => Vec::new(),
                };
                for r in updates {
                    match group.binary_search_by(|g| g.capability.cmp(&r.capability)) {
                        Ok(i) => group[i] = (*r).clone(),
                        Err(i) => group.insert(i, (*r).clone()),
                    }
                }
                batch.insert(key, encode_scores(&group));
                n += updates.len();
            }
            self.pairs.apply_batch(batch).map_err(|e| self.err(e))?;
        }
        Ok(n)
    }

    pub(crate) fn list_pairs(&self) -> Result<Vec<PairRecord>, StoreError> {
        let mut all = Vec::new();
        for kv in self.pairs.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            all.extend(decode_scores(&k, &v)?);
        }
        Ok(all)
    }

    /// Removes the records of `keys` (in sled batches of bounded size) and flushes. Returns how
    /// many it removed.
    pub(crate) fn forget_pairs(&self, keys: &[PairKey]) -> Result<usize, StoreError> {
        self.writable()?;
        let mut by_orch: std::collections::BTreeMap<&OrchestratorId, Vec<&PairKey>> = Default::default();
        for k in keys {
            by_orch.entry(&k.orchestrator).or_default().push(k);
        }
        let groups: Vec<_> = by_orch.into_iter().collect();
        let mut n = 0;
        for chunk in groups.chunks(SAVE_BATCH_GROUPS) {
            let mut batch = sled::Batch::default();
            for (orch, gone) in chunk {
                let key = orch.0.as_bytes();
                let Some(raw) = self.pairs.get(key).map_err(|e| self.err(e))? else { continue };
                let mut group = decode_scores(key, &raw)?;
                let before = group.len();
                group.retain(|r| !gone.iter().any(|k| k.capability == r.capability));
                n += before - group.len();
                if group.is_empty() {
                    batch.remove(key);
                } else {
                    batch.insert(key, encode_scores(&group));
                }
            }
            self.pairs.apply_batch(batch).map_err(|e| self.err(e))?;
        }
        self.flush()?;
        Ok(n)
    }

    /// Forgets a capability: its pair records at every orchestrator and its runtime policy,
    /// durably (on a failed flush everything is put back and nothing changed). Returns how many
    /// records went and whether a policy did.
    pub(crate) fn forget_capability(&self, capability: &Capability) -> Result<(usize, bool), StoreError> {
        self.writable()?;
        let mut before = Vec::new();
        let mut n = 0;
        for kv in self.pairs.iter() {
            let (key, raw) = kv.map_err(|e| self.err(e))?;
            let mut group = decode_scores(&key, &raw)?;
            let len = group.len();
            group.retain(|r| &r.capability != capability);
            if group.len() == len {
                continue;
            }
            n += len - group.len();
            if group.is_empty() {
                self.pairs.remove(&key).map_err(|e| self.err(e))?;
            } else {
                self.pairs.insert(&key, encode_scores(&group)).map_err(|e| self.err(e))?;
            }
            before.push((key, raw));
        }
        let policy = self.policies.remove(capability.as_str().as_bytes()).map_err(|e| self.err(e))?;
        if let Err(e) = self.flush() {
            for (key, raw) in before {
                let _ = self.pairs.insert(key, raw);
            }
            if let Some(p) = policy {
                let _ = self.policies.insert(capability.as_str().as_bytes(), p);
            }
            return Err(e);
        }
        Ok((n, policy.is_some()))
    }

    /// Writes a batch of pair records (only for orchestrators still registered) and flushes.
    pub(crate) fn save_pairs(&self, records: &[PairRecord]) -> Result<usize, StoreError> {
        self.writable()?;
        let n = self.merge_pairs(records, true)?;
        self.flush()?;
        Ok(n)
    }
}

/// `records` grouped by orchestrator, in id order.
fn group_by_orchestrator(records: &[PairRecord]) -> std::collections::BTreeMap<&OrchestratorId, Vec<&PairRecord>> {
    let mut groups: std::collections::BTreeMap<&OrchestratorId, Vec<&PairRecord>> = Default::default();
    for r in records {
        groups.entry(&r.orchestrator).or_default().push(r);
    }
    groups
}

fn encode_scores(group: &[PairRecord]) -> Vec<u8> {
    // Plain data: serialisation into a Vec cannot fail.
    postcard::to_stdvec(group).unwrap_or_default()
}

fn decode_scores(key: &[u8], value: &[u8]) -> Result<Vec<PairRecord>, StoreError> {
    postcard::from_bytes(value)
        .map_err(|e| StoreError::Decode { key: String::from_utf8_lossy(key).into_owned(), detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cap, record, summary};
    use super::super::*;
    use super::*;
    use crate::orchestrator::Source;

    #[test]
    fn saves_merge_into_the_orchestrator_group_and_skip_deleted_orchestrators() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let a = s.insert("http://a:1", vec![], None, Source::Admin).expect("io").expect("new");
        let b = s.insert("http://b:1", vec![], None, Source::Admin).expect("io").expect("new");
        let gone = OrchestratorId("orch-gone".into());
        let first = [record(&a.id, "depth", 1), record(&b.id, "depth", 2), record(&gone, "depth", 3)];
        assert_eq!(s.merge_pairs(&first, true).expect("save"), 2, "the unregistered orchestrator is skipped");
        // A later save of one pair replaces only that pair's record; a new capability joins
        // the group in capability order.
        let second = [record(&a.id, "upscale", 4), record(&a.id, "depth", 5)];
        assert_eq!(s.merge_pairs(&second, true).expect("save"), 2);
        let got = summary(&s);
        let want = [(&a.id.0, "depth", 5), (&a.id.0, "upscale", 4), (&b.id.0, "depth", 2)];
        let want: Vec<(String, String, u64)> =
            want.iter().map(|(o, c, n)| (o.to_string(), c.to_string(), *n)).collect();
        assert_eq!(got, want);
        // Every field survives the compact encoding.
        let back = s.list_pairs().expect("pairs").into_iter().find(|r| r.orchestrator == b.id).expect("b");
        assert_eq!(serde_json::to_value(&back).ok(), serde_json::to_value(record(&b.id, "depth", 2)).ok());
    }

    #[test]
    fn forgetting_pairs_removes_only_their_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let a = s.insert("http://a:1", vec![], None, Source::Admin).expect("io").expect("new");
        let b = s.insert("http://b:1", vec![], None, Source::Admin).expect("io").expect("new");
        let records = [record(&a.id, "depth", 1), record(&a.id, "upscale", 2), record(&b.id, "depth", 3)];
        s.merge_pairs(&records, true).expect("save");
        let gone = [records[1].key(), records[2].key(), record(&b.id, "never-saved", 0).key()];
        assert_eq!(s.forget_pairs(&gone).expect("forget"), 2);
        assert_eq!(summary(&s), vec![(a.id.0.to_string(), "depth".to_string(), 1)]);
        assert_eq!(s.pairs.len(), 1, "an orchestrator left with no record has no entry");
    }

    #[test]
    fn forgetting_a_capability_removes_its_records_everywhere_and_its_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path()).expect("open");
        let a = s.insert("http://a:1", vec![], None, Source::Admin).expect("io").expect("new");
        let b = s.insert("http://b:1", vec![], None, Source::Admin).expect("io").expect("new");
        let records = [record(&a.id, "depth", 1), record(&a.id, "junk", 2), record(&b.id, "junk", 3)];
        s.merge_pairs(&records, true).expect("save");
        s.put_policy(&cap("junk"), &Default::default()).expect("policy");
        // A failed write changes nothing.
        s.set_fail_writes(true);
        assert!(s.forget_capability(&cap("junk")).is_err());
        s.set_fail_writes(false);
        assert_eq!(summary(&s).len(), 3);
        assert_eq!(s.forget_capability(&cap("junk")).expect("forget"), (2, true));
        assert_eq!(summary(&s), vec![(a.id.0.to_string(), "depth".to_string(), 1)]);
        assert_eq!(s.pairs.len(), 1, "an orchestrator left with no record has no entry");
        assert!(s.list_policies().expect("policies").is_empty());
        assert_eq!(s.forget_capability(&cap("junk")).expect("again"), (0, false));
    }

    #[test]
    fn a_save_larger_than_one_batch_writes_every_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let n = SAVE_BATCH_GROUPS * 2 + 7;
        let mut records = Vec::new();
        for i in 0..n {
            let o = s.insert(&format!("http://o{i}:1"), vec![], None, Source::Admin).expect("io").expect("new");
            records.push(record(&o.id, "depth", i as u64));
            records.push(record(&o.id, "upscale", i as u64));
        }
        assert_eq!(s.merge_pairs(&records, true).expect("save"), 2 * n);
        assert_eq!(s.pairs.len(), n, "one entry per orchestrator");
        assert_eq!(s.list_pairs().expect("pairs").len(), 2 * n);
    }

    #[test]
    fn a_schema_1_store_is_migrated_in_place_with_its_pair_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b);
        {
            // Write the schema 1 layout by hand: one JSON record per pair in `pairs`.
            let s = open(dir.path()).expect("open");
            a = s.insert("http://a:1", vec![], None, Source::Admin).expect("io").expect("new").id;
            b = s.insert("http://b:1", vec![], None, Source::Admin).expect("io").expect("new").id;
            let v1 = s.db.open_tree(V1_PAIRS_TREE).expect("tree");
            for r in [record(&a, "depth", 1), record(&a, "upscale", 2), record(&b, "depth", 3)] {
                let key = format!("{}\0{}", r.orchestrator.0, r.capability.as_str());
                v1.insert(key.as_bytes(), serde_json::to_vec(&r).expect("json")).expect("insert");
            }
            v1.insert(b"orch-x\0broken", b"{not json".as_slice()).expect("insert");
            s.meta.insert(SCHEMA_KEY, b"1".as_slice()).expect("insert");
            s.flush().expect("flush");
        }
        let s = open(dir.path()).expect("a schema 1 store opens");
        assert_eq!(s.meta.get(SCHEMA_KEY).expect("get").as_deref(), Some(b"2".as_slice()));
        assert!(!s.db.tree_names().iter().any(|n| n.as_ref() == V1_PAIRS_TREE.as_bytes()), "old tree dropped");
        let mut got = summary(&s);
        got.sort();
        let mut want = vec![
            (a.0.to_string(), "depth".to_string(), 1),
            (a.0.to_string(), "upscale".to_string(), 2),
            (b.0.to_string(), "depth".to_string(), 3),
        ];
        want.sort();
        assert_eq!(got, want, "every decodable record kept, the broken one dropped");
        drop(s);
        let again = open(dir.path()).expect("reopens as schema 2");
        assert_eq!(again.list_pairs().expect("pairs").len(), 3);
    }
}

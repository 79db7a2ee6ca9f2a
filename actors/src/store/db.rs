//! `Db`: the sled database the store actor owns: opening it (and recovering from what a full
//! disk leaves behind), its trees, flushing, and the reads everything else builds on.
//!
//! Layout (one tree per relation):
//! - `meta`: `schema_version` = 2
//! - `orchestrators`: id -> [`Orchestrator`] (JSON, serde defaults for forward compatibility)
//! - `orchestrator_urls`: normalised URL -> id (uniqueness index)
//! - `pair_scores`: orchestrator id -> that orchestrator's [`PairRecord`]s, sorted by
//!   capability, in postcard (a compact binary serde format); see [`scores`]
//! - `policies`: capability -> [`CapabilityPolicy`] (JSON, set through the admin API)
//!
//! With the etcd backend the registry trees hold this replica's copy of the fleet's registry
//! ([`mirror`]; `meta` then has `registry_mirror`).

pub(crate) mod export;
pub(crate) mod mirror;
pub(crate) mod registry;
pub(crate) mod scores;

use std::path::{Path, PathBuf};

use super::error::StoreError;
use crate::capability::Capability;
use crate::orchestrator::{Orchestrator, OrchestratorChange, OrchestratorId};
use crate::pair::view::PairRecord;
use crate::policy::CapabilityPolicy;

/// Version of the on-disk layout described in the module docs.
pub const SCHEMA_VERSION: u32 = 2;
/// Schema 1 kept one JSON pair record per pair in this tree (`orch-id \0 capability`).
const V1_PAIRS_TREE: &str = "pairs";
const SCHEMA_KEY: &[u8] = b"schema_version";
/// Sub-directory of the data dir that holds the database (versioned so a future layout can
/// live beside it during a migration).
pub const DB_DIR: &str = "store-v1";

/// Opens (or creates) the database under `data_dir` and checks its schema version.
pub fn open(data_dir: &Path) -> Result<Db, StoreError> {
    let path = data_dir.join(DB_DIR);
    std::fs::create_dir_all(&path).map_err(|e| StoreError::Io(format!("cannot create {}: {e}", path.display())))?;
    let db = match open_db(&path) {
        Err(StoreError::Unopenable { .. }) if remove_unfinished_snapshots(&path) > 0 => open_db(&path)?,
        other => other?,
    };
    Db::from_db(db, path)
}

fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    sled::Config::new().path(path).cache_capacity(32 * 1024 * 1024).flush_every_ms(Some(500)).open().map_err(
        |e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                StoreError::Io(format!(
                    "{} is locked: another byoc-gateway process is using this data dir ({io})",
                    path.display()
                ))
            }
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => StoreError::Disk(format!(
                "the disk holding {} is full ({io}): free some space; the store itself is intact",
                path.display()
            )),
            other => StoreError::Unopenable { path: path.display().to_string(), detail: other.to_string() },
        },
    )
}

/// Removes the snapshots sled had begun but not finished writing (`snap.*.generating`): one
/// left empty by a full disk makes every later open fail as corrupt data, though the database
/// itself is intact. Only called after an open failed, that is with the data dir's lock held by
/// nobody (a running gateway's open fails on the lock first). Returns how many it removed.
fn remove_unfinished_snapshots(path: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::warn!(file = %entry.path().display(), "removed an unfinished store snapshot (left by a full disk or a crash); opening again");
                    removed += 1;
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an unfinished store snapshot")
                }
            }
        }
    }
    removed
}

/// The database. Cloning shares it (sled handles are reference counted); the store actor holds
/// the only clone while the gateway runs, so that it can close and reopen it.
#[derive(Clone)]
pub struct Db {
    db: sled::Db,
    path: PathBuf,
    meta: sled::Tree,
    orchestrators: sled::Tree,
    urls: sled::Tree,
    pairs: sled::Tree,
    policies: sled::Tree,
    /// Fault injection: every write fails as on a full or read-only disk.
    fail_writes: bool,
}

impl Db {
    fn from_db(db: sled::Db, path: PathBuf) -> Result<Self, StoreError> {
        let e = |err| StoreError::from_sled(err, &path);
        let meta = db.open_tree("meta").map_err(e)?;
        let orchestrators = db.open_tree("orchestrators").map_err(e)?;
        let urls = db.open_tree("orchestrator_urls").map_err(e)?;
        let pairs = db.open_tree("pair_scores").map_err(e)?;
        let policies = db.open_tree("policies").map_err(e)?;
        let store = Self { db, path, meta, orchestrators, urls, pairs, policies, fail_writes: false };
        match store.meta.get(SCHEMA_KEY).map_err(|err| store.err(err))? {
            None => {
                store.meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes()).map_err(|err| store.err(err))?;
                store.flush()?;
            }
            Some(v) => {
                let found = std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(u32::MAX);
                match found {
                    1 => store.migrate_from_v1()?,
                    SCHEMA_VERSION => {}
                    _ => {
                        return Err(StoreError::Schema {
                            path: store.path.display().to_string(),
                            found,
                            supported: SCHEMA_VERSION,
                        })
                    }
                }
            }
        }
        // Left behind when a migration stopped between its commit and this clean-up.
        if store.db.tree_names().iter().any(|n| n.as_ref() == V1_PAIRS_TREE.as_bytes()) {
            store.db.drop_tree(V1_PAIRS_TREE).map_err(|err| store.err(err))?;
        }
        Ok(store)
    }

    pub(crate) fn err(&self, e: sled::Error) -> StoreError {
        StoreError::from_sled(e, &self.path)
    }

    /// Refuses writes while a write failure is injected.
    pub(crate) fn writable(&self) -> Result<(), StoreError> {
        if self.fail_writes {
            return Err(StoreError::Io("write failed: fault injected (as on a full or read-only disk)".into()));
        }
        Ok(())
    }

    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.writable()?;
        let started = std::time::Instant::now();
        let res = self.db.flush().map(|_| ()).map_err(|e| self.err(e));
        metrics::histogram!(crate::metrics::STORE_FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
        res
    }

    /// The data dir this database lives in.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.path.clone())
    }

    /// Makes every write fail as on a full or read-only disk (fault injection), or not.
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn set_fail_writes(&mut self, fail: bool) {
        self.fail_writes = fail;
    }

    pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(value)
            .map_err(|e| StoreError::Decode { key: String::from_utf8_lossy(key).into_owned(), detail: e.to_string() })
    }

    pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
        // Our record types are plain data; serialisation cannot fail.
        serde_json::to_vec(value).unwrap_or_default()
    }

    pub(crate) fn list_orchestrators(&self) -> Result<Vec<Orchestrator>, StoreError> {
        self.orchestrators
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                Self::decode(&k, &v)
            })
            .collect()
    }

    pub(crate) fn list_policies(&self) -> Result<Vec<(Capability, CapabilityPolicy)>, StoreError> {
        self.policies
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                let name = String::from_utf8_lossy(&k).into_owned();
                let cap = Capability::new(&name)
                    .map_err(|e| StoreError::Decode { key: name.clone(), detail: e.to_string() })?;
                Ok((cap, Self::decode(&k, &v)?))
            })
            .collect()
    }

    pub(crate) fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            orchestrators: self.list_orchestrators()?,
            pairs: self.list_pairs()?,
            policies: self.list_policies()?,
        })
    }

    pub(crate) fn get_orchestrator(&self, id: &OrchestratorId) -> Result<Option<Orchestrator>, StoreError> {
        match self.orchestrators.get(id.0.as_bytes()).map_err(|e| self.err(e))? {
            Some(raw) => Ok(Some(Self::decode(id.0.as_bytes(), &raw)?)),
            None => Ok(None),
        }
    }

    /// Applies an operator's change to one orchestrator (its `enabled` flag, its label),
    /// durably; `None` if it is not registered.
    pub(crate) fn update_orchestrator(
        &self,
        id: &OrchestratorId,
        change: &OrchestratorChange,
    ) -> Result<Option<Orchestrator>, StoreError> {
        self.writable()?;
        let Some(raw) = self.orchestrators.get(id.0.as_bytes()).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let mut orch: Orchestrator = Self::decode(id.0.as_bytes(), &raw)?;
        change.apply(&mut orch);
        self.orchestrators.insert(id.0.as_bytes(), Self::encode(&orch)).map_err(|e| self.err(e))?;
        if let Err(e) = self.flush() {
            let _ = self.orchestrators.insert(id.0.as_bytes(), raw);
            return Err(e);
        }
        Ok(Some(orch))
    }

    /// Stores a capability's policy, durably.
    pub(crate) fn put_policy(&self, capability: &Capability, policy: &CapabilityPolicy) -> Result<(), StoreError> {
        self.writable()?;
        let key = capability.as_str().as_bytes();
        let previous = self.policies.insert(key, Self::encode(policy)).map_err(|e| self.err(e))?;
        if let Err(e) = self.flush() {
            let _ = match previous {
                Some(v) => self.policies.insert(key, v),
                None => self.policies.remove(key),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Removes a capability's stored policy, durably; false if there was none.
    pub(crate) fn delete_policy(&self, capability: &Capability) -> Result<bool, StoreError> {
        self.writable()?;
        let key = capability.as_str().as_bytes();
        let previous = self.policies.remove(key).map_err(|e| self.err(e))?;
        if let Err(e) = self.flush() {
            if let Some(v) = previous {
                let _ = self.policies.insert(key, v);
            }
            return Err(e);
        }
        Ok(previous.is_some())
    }

    /// Bytes the database takes on disk.
    pub(crate) fn size(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(|e| self.err(e))
    }

    /// Reads the schema key (readiness).
    pub(crate) fn ping(&self) -> Result<(), StoreError> {
        self.meta.get(SCHEMA_KEY).map(|_| ()).map_err(|e| self.err(e))
    }
}

/// Everything persisted, as loaded at start.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The registry.
    pub orchestrators: Vec<Orchestrator>,
    /// Learned pair state.
    pub pairs: Vec<PairRecord>,
    /// Capability policies set through the admin API.
    pub policies: Vec<(Capability, CapabilityPolicy)>,
}

/// The URL is already registered (under `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The existing entry's id.
    pub(crate) id: OrchestratorId,
    /// The URL.
    pub(crate) url: String,
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers the store's unit tests share.
    use super::*;

    pub(crate) fn cap(s: &str) -> Capability {
        Capability::new(s).expect("valid")
    }

    pub(crate) fn record(orch: &OrchestratorId, capability: &str, success: u64) -> PairRecord {
        PairRecord {
            orchestrator: orch.clone(),
            capability: cap(capability),
            latency_ewma_ms: 12.5,
            latency_updated_unix_ms: Some(1_700_000_000_000),
            success_rate: 0.75,
            breaker: crate::breaker::State::Open,
            breaker_level: 2,
            open_until_unix_ms: Some(1_700_000_030_000),
            offered: true,
            cold_start_ms: Some(5),
            counters: crate::pair::view::Counters { success, http_5xx: 1, ..Default::default() },
            restarts: 1,
            saved_at_unix_ms: 1_700_000_000_001,
        }
    }

    /// Every stored pair as (orchestrator, capability, successes), in key order.
    pub(crate) fn summary(s: &Db) -> Vec<(String, String, u64)> {
        s.list_pairs()
            .expect("pairs")
            .into_iter()
            .map(|r| (r.orchestrator.0.to_string(), r.capability.as_str().to_string(), r.counters.success))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::Source;

    #[test]
    fn an_unfinished_snapshot_left_by_a_full_disk_does_not_stop_the_store_opening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = open(dir.path()).expect("open");
            s.insert("http://a:1", vec![], None, Source::Admin).expect("io").expect("new");
        }
        // What a start on a full disk leaves: sled's snapshot file, created and never written.
        let leftover = dir.path().join(DB_DIR).join("snap.00000000000000FF.generating");
        std::fs::write(&leftover, b"").expect("write");
        let s = open(dir.path()).expect("opens again, every acknowledged write in it");
        assert_eq!(s.list_orchestrators().expect("list").len(), 1);
        assert!(!leftover.exists(), "the unfinished snapshot was removed");
    }

    #[test]
    fn a_corrupt_store_fails_to_open_with_recovery_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = open(dir.path()).expect("open");
            s.insert("http://a:1", vec![], None, Source::Admin).expect("io").expect("new");
        }
        // Overwrite every file of the database with garbage, as a failing disk would.
        for entry in std::fs::read_dir(dir.path().join(DB_DIR)).expect("dir").flatten() {
            let path = entry.path();
            if path.is_file() {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0).max(64) as usize;
                std::fs::write(&path, vec![0xA5u8; len]).expect("scribble");
            }
        }
        let err = match open(dir.path()) {
            Ok(_) => panic!("a scribbled store opened"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("Recovery"), "{err}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = open(dir.path()).expect("open");
            s.meta.insert(SCHEMA_KEY, b"99".as_slice()).expect("insert");
            s.flush().expect("flush");
        }
        match open(dir.path()) {
            Err(e @ StoreError::Schema { found: 99, supported: SCHEMA_VERSION, .. }) => {
                assert!(e.to_string().contains("understands only 2"), "{e}");
            }
            other => panic!("expected schema error, got {:?}", other.map(|_| ())),
        }
    }
}

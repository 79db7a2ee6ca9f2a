//! `Store`: owns the sled database. It runs on a `SyncArbiter` thread, so its handlers may
//! block on disk without stalling any async actor or HTTP worker.
//!
//! Layout (one tree per relation):
//! - `meta`: `schema_version` = 2
//! - `orchestrators`: id -> [`Orchestrator`] (JSON, serde defaults for forward compatibility)
//! - `orchestrator_urls`: normalised URL -> id (uniqueness index)
//! - `pair_scores`: orchestrator id -> that orchestrator's [`PairRecord`]s, sorted by
//!   capability, in postcard (a compact binary serde format)
//! - `policies`: capability -> [`CapabilityPolicy`] (JSON, set through the admin API)
//!
//! Pair scores are grouped per orchestrator because sled's cost is mostly per entry: at
//! 10,000 pairs, one JSON entry per pair (schema 1) held about 15 MB resident, one compact
//! entry per orchestrator about 4 MB. postcard is not self-describing, so a new
//! [`PairRecord`] field needs a schema bump with a migration, like the one from schema 1
//! ([`Store`] migrates a schema 1 store in place when it opens it).
//!
//! Every mutation that answers an operator is flushed to disk before the reply, so an
//! acknowledged change survives `kill -9`. Pair scores are written in batches and flushed
//! with them.

use std::path::{Path, PathBuf};

use actix::prelude::*;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::capability::Capability;
use crate::orchestrator::{Orchestrator, OrchestratorId, Source};
use crate::pair::view::{unix_ms_now, PairRecord};
use crate::policy::CapabilityPolicy;

/// Version of the on-disk layout described in the module docs.
pub const SCHEMA_VERSION: u32 = 2;
/// Schema 1 kept one JSON pair record per pair in this tree (`orch-id \0 capability`).
const V1_PAIRS_TREE: &str = "pairs";
/// Orchestrator groups written per sled batch (about 500 pair records at 10 capabilities).
const SAVE_BATCH_GROUPS: usize = 50;
const SCHEMA_KEY: &[u8] = b"schema_version";
/// Sub-directory of the data dir that holds the database (versioned so a future layout can
/// live beside it during a migration).
pub const DB_DIR: &str = "store-v1";

/// A store failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// sled reported corruption: the database cannot be trusted.
    #[error(
        "the store at {path} is corrupt ({detail}). Recovery: stop the gateway, move {path} aside, \
             restore it from a `store export` backup or start with an empty data dir (orchestrators \
             added through the admin API must then be added again)"
    )]
    Corrupt {
        /// Database directory.
        path: String,
        /// sled's words.
        detail: String,
    },
    /// The database could not be opened (damaged files, a foreign or too old format).
    #[error(
        "the store at {path} cannot be opened ({detail}). Recovery: stop the gateway, move {path} aside, \
             then either restore a backup with `byoc-gateway store import FILE --data-dir DIR` into the now empty data \
             dir, or start with the empty data dir (orchestrators added through the admin API must then be added \
             again; configured ones come back from the config)"
    )]
    Unopenable {
        /// Database directory.
        path: String,
        /// sled's words.
        detail: String,
    },
    /// The database was written by a newer gateway.
    #[error(
        "the store at {path} has schema version {found}; this gateway understands only {SCHEMA_VERSION} \
             (export it with the gateway version that wrote it, then import)"
    )]
    Schema {
        /// Database directory.
        path: String,
        /// Version found.
        found: u32,
    },
    /// Any other I/O or sled error (disk full, read-only, locked by another process).
    #[error("store I/O error: {0}")]
    Io(String),
    /// A value could not be decoded.
    #[error("store holds an undecodable value under {key}: {detail}")]
    Decode {
        /// The key.
        key: String,
        /// serde's words.
        detail: String,
    },
}

impl StoreError {
    fn from_sled(e: sled::Error, path: &Path) -> Self {
        match e {
            sled::Error::Corruption { .. } => {
                StoreError::Corrupt { path: path.display().to_string(), detail: e.to_string() }
            }
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// Opens (or creates) the database under `data_dir` and checks its schema version.
pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
    let path = data_dir.join(DB_DIR);
    std::fs::create_dir_all(&path).map_err(|e| StoreError::Io(format!("cannot create {}: {e}", path.display())))?;
    let db = match open_db(&path) {
        Err(StoreError::Unopenable { .. }) if remove_unfinished_snapshots(&path) > 0 => open_db(&path)?,
        other => other?,
    };
    let store = Store::from_db(db, path)?;
    Ok(store)
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
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => StoreError::Io(format!(
                "the disk holding {} is full ({io}): free some space and start again; the store itself is intact",
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

/// The store actor. Cloning shares the same database (sled handles are reference counted),
/// which is what `SyncArbiter::start`'s factory needs.
#[derive(Clone)]
pub struct Store {
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

impl Store {
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
                    _ => return Err(StoreError::Schema { path: store.path.display().to_string(), found }),
                }
            }
        }
        // Left behind when a migration stopped between its commit and this clean-up.
        if store.db.tree_names().iter().any(|n| n.as_ref() == V1_PAIRS_TREE.as_bytes()) {
            store.db.drop_tree(V1_PAIRS_TREE).map_err(|err| store.err(err))?;
        }
        Ok(store)
    }

    /// Schema 1 -> 2: regroups the per-pair JSON records into one compact entry per
    /// orchestrator. The new entries and the version bump commit in one transaction, so a
    /// crash leaves either schema 1 intact or schema 2 complete. A record that does not
    /// decode is dropped with a warning: scores are soft state and rebuild from traffic.
    fn migrate_from_v1(&self) -> Result<(), StoreError> {
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
    fn merge_pairs(&self, records: &[PairRecord], registered_only: bool) -> Result<usize, StoreError> {
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

    fn err(&self, e: sled::Error) -> StoreError {
        StoreError::from_sled(e, &self.path)
    }

    /// Refuses writes while a write failure is injected.
    fn writable(&self) -> Result<(), StoreError> {
        if self.fail_writes {
            return Err(StoreError::Io("write failed: fault injected (as on a full or read-only disk)".into()));
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.writable()?;
        let started = std::time::Instant::now();
        let res = self.db.flush().map(|_| ()).map_err(|e| self.err(e));
        metrics::histogram!(crate::metrics::STORE_FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
        res
    }

    /// Everything in the store as one consistent document (the actor serialises all writes,
    /// so reading every tree inside one handler is a point-in-time snapshot).
    pub fn export(&self) -> Result<StoreExport, StoreError> {
        let s = self.snapshot()?;
        Ok(StoreExport {
            format: EXPORT_FORMAT.to_string(),
            schema_version: SCHEMA_VERSION,
            exported_at_unix_ms: unix_ms_now(),
            orchestrators: s.orchestrators,
            pairs: s.pairs,
            policies: s
                .policies
                .into_iter()
                .map(|(capability, policy)| ExportedPolicy { capability, policy })
                .collect(),
        })
    }

    /// Loads an export into this store: orchestrators keep their ids, pair records and
    /// policies are written as they are. Refuses (changing nothing) an export of another
    /// schema version or one whose orchestrators clash with entries already here.
    pub fn import(&self, export: &StoreExport) -> Result<ImportSummary, ImportError> {
        // Schema 2 changed only the on-disk encoding of pair scores; an export is the same
        // JSON document under both.
        if export.format != EXPORT_FORMAT || !(1..=SCHEMA_VERSION).contains(&export.schema_version) {
            return Err(ImportError::Format(format!(
                "expected format {EXPORT_FORMAT} schema 1 to {SCHEMA_VERSION}, got {} schema {}",
                export.format, export.schema_version
            )));
        }
        for o in &export.orchestrators {
            crate::orchestrator::normalize_url(&o.url).map_err(|e| ImportError::Format(e.to_string()))?;
            let url_taken = self.urls.get(o.url.as_bytes()).map_err(|e| self.err(e))?;
            let id_taken = self.orchestrators.contains_key(o.id.0.as_bytes()).map_err(|e| self.err(e))?;
            if url_taken.is_some() || id_taken {
                return Err(ImportError::Conflict(format!("{} ({}) is already in this store", o.id, o.url)));
            }
        }
        for o in &export.orchestrators {
            if let Err(d) = self.put_new(o.clone())? {
                return Err(ImportError::Conflict(format!("{} ({}) is already in this store", d.id, d.url)));
            }
        }
        self.merge_pairs(&export.pairs, false)?;
        for p in &export.policies {
            self.policies.insert(p.capability.as_str().as_bytes(), Self::encode(&p.policy)).map_err(|e| self.err(e))?;
        }
        self.flush()?;
        Ok(ImportSummary {
            orchestrators: export.orchestrators.len(),
            pairs: export.pairs.len(),
            policies: export.policies.len(),
        })
    }

    fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(value)
            .map_err(|e| StoreError::Decode { key: String::from_utf8_lossy(key).into_owned(), detail: e.to_string() })
    }

    fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
        // Our record types are plain data; serialisation cannot fail.
        serde_json::to_vec(value).unwrap_or_default()
    }

    fn list_orchestrators(&self) -> Result<Vec<Orchestrator>, StoreError> {
        self.orchestrators
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err(e))?;
                Self::decode(&k, &v)
            })
            .collect()
    }

    fn list_pairs(&self) -> Result<Vec<PairRecord>, StoreError> {
        let mut all = Vec::new();
        for kv in self.pairs.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            all.extend(decode_scores(&k, &v)?);
        }
        Ok(all)
    }

    fn list_policies(&self) -> Result<Vec<(Capability, CapabilityPolicy)>, StoreError> {
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

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            orchestrators: self.list_orchestrators()?,
            pairs: self.list_pairs()?,
            policies: self.list_policies()?,
        })
    }

    fn insert(
        &self,
        url: &str,
        capabilities: Vec<Capability>,
        source: Source,
    ) -> Result<Result<Orchestrator, Duplicate>, StoreError> {
        let res = self.insert_unflushed(url, capabilities, source)?;
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
        source: Source,
    ) -> Result<Result<Orchestrator, Duplicate>, StoreError> {
        // Ids come from sled's monotonic counter; skip any taken by an imported entry.
        let id = loop {
            let n = self.db.generate_id().map_err(|e| self.err(e))?;
            let id = OrchestratorId(format!("orch-{}", n + 1).into());
            if !self.orchestrators.contains_key(id.0.as_bytes()).map_err(|e| self.err(e))? {
                break id;
            }
        };
        let orch =
            Orchestrator { id, url: url.to_string(), capabilities, added_at: unix_ms_now(), source, enabled: true };
        self.put_new_unflushed(orch)
    }

    /// Inserts `orch` with its own id unless its URL (or id) is already registered.
    fn put_new(&self, orch: Orchestrator) -> Result<Result<Orchestrator, Duplicate>, StoreError> {
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

    fn delete(&self, id: &OrchestratorId) -> Result<Option<Orchestrator>, StoreError> {
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

    fn get_orchestrator(&self, id: &OrchestratorId) -> Result<Option<Orchestrator>, StoreError> {
        match self.orchestrators.get(id.0.as_bytes()).map_err(|e| self.err(e))? {
            Some(raw) => Ok(Some(Self::decode(id.0.as_bytes(), &raw)?)),
            None => Ok(None),
        }
    }
}

/// A deleted registry entry with what it takes to put it back.
struct Deleted {
    orch: Orchestrator,
    raw: sled::IVec,
    /// Its `pair_scores` entry.
    pairs: Option<sled::IVec>,
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

impl Actor for Store {
    type Context = SyncContext<Self>;
}

/// The `format` tag of export files.
pub const EXPORT_FORMAT: &str = "byoc-gateway-store";

/// A store export: a versioned JSON document with everything persisted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreExport {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// The schema version of the store it came from.
    pub schema_version: u32,
    /// When it was taken (Unix ms).
    pub exported_at_unix_ms: u64,
    /// The registry.
    pub orchestrators: Vec<Orchestrator>,
    /// Learned pair state.
    pub pairs: Vec<PairRecord>,
    /// Capability policies set through the admin API.
    pub policies: Vec<ExportedPolicy>,
}

/// One policy in an export.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportedPolicy {
    /// The capability.
    pub capability: Capability,
    /// Its policy.
    pub policy: CapabilityPolicy,
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// Orchestrators added.
    pub orchestrators: usize,
    /// Pair records written.
    pub pairs: usize,
    /// Policies written.
    pub policies: usize,
}

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not an export this gateway understands.
    #[error("not an importable export: {0}")]
    Format(String),
    /// It clashes with what the store already holds.
    #[error("conflict: {0}; import into an empty data dir")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    pub id: OrchestratorId,
    /// The URL.
    pub url: String,
}

/// Loads everything persisted.
#[derive(Message)]
#[rtype(result = "Result<Snapshot, StoreError>")]
pub struct Load;

impl Handler<Load> for Store {
    type Result = Result<Snapshot, StoreError>;
    fn handle(&mut self, _msg: Load, _ctx: &mut Self::Context) -> Self::Result {
        self.snapshot()
    }
}

/// Makes the registry's config-sourced entries match `entries` (URL, declared
/// capabilities): adds missing ones, updates declared capabilities, removes config entries
/// no longer listed (with their pair records). Admin-added entries are left alone. An entry
/// the discovery webhook added and the config now lists becomes a config entry (the static
/// source wins, so the webhook dropping it later does not remove it). Returns the resulting
/// snapshot.
#[derive(Message)]
#[rtype(result = "Result<Snapshot, StoreError>")]
pub struct ReconcileConfig {
    /// Normalised URLs with their declared capabilities.
    pub entries: Vec<(String, Vec<Capability>)>,
}

impl Handler<ReconcileConfig> for Store {
    type Result = Result<Snapshot, StoreError>;
    fn handle(&mut self, msg: ReconcileConfig, _ctx: &mut Self::Context) -> Self::Result {
        self.writable()?;
        let existing = self.list_orchestrators()?;
        for (url, caps) in &msg.entries {
            match existing.iter().find(|o| &o.url == url) {
                Some(o) if o.source == Source::Webhook => {
                    let adopted = Orchestrator { capabilities: caps.clone(), source: Source::Config, ..o.clone() };
                    tracing::info!(id = %o.id, url = %o.url, "orchestrator found by the webhook is now listed in the config");
                    self.orchestrators.insert(o.id.0.as_bytes(), Self::encode(&adopted)).map_err(|e| self.err(e))?;
                }
                Some(o) if o.capabilities != *caps && o.source == Source::Config => {
                    let updated = Orchestrator { capabilities: caps.clone(), ..o.clone() };
                    self.orchestrators.insert(o.id.0.as_bytes(), Self::encode(&updated)).map_err(|e| self.err(e))?;
                }
                Some(_) => {}
                None => {
                    // A concurrent duplicate cannot happen here (start-up, single thread).
                    let _ = self.insert(url, caps.clone(), Source::Config)?;
                }
            }
        }
        for o in existing.iter().filter(|o| o.source == Source::Config) {
            if !msg.entries.iter().any(|(url, _)| url == &o.url) {
                tracing::info!(id = %o.id, url = %o.url, "orchestrator no longer in the config: removed");
                self.delete(&o.id)?;
            }
        }
        self.flush()?;
        self.snapshot()
    }
}

/// Applies a change of the discovery webhook's list, worked out by the supervisor against its
/// registry: adds `add` with source `webhook` and removes the `remove` entries that still have
/// source `webhook` (with their pair records), then flushes once. Idempotent, so a retry after
/// a failure converges: a URL already registered (by any source) is answered as it stands, an
/// entry already gone is skipped. On a failed flush everything is undone and nothing changed.
#[derive(Message)]
#[rtype(result = "Result<WebhookDelta, StoreError>")]
pub struct ApplyWebhook {
    /// Normalised URLs to add.
    pub add: Vec<String>,
    /// Webhook entries to remove.
    pub remove: Vec<OrchestratorId>,
}

/// What [`ApplyWebhook`] did.
#[derive(Debug, Clone, Default)]
pub struct WebhookDelta {
    /// The entries now registered for the added URLs (an entry of another source if one won a
    /// race for the URL).
    pub added: Vec<Orchestrator>,
    /// The entries removed.
    pub removed: Vec<Orchestrator>,
}

impl Handler<ApplyWebhook> for Store {
    type Result = Result<WebhookDelta, StoreError>;
    fn handle(&mut self, msg: ApplyWebhook, _ctx: &mut Self::Context) -> Self::Result {
        self.writable()?;
        let (mut inserted, mut deleted) = (Vec::new(), Vec::new());
        let mut delta = WebhookDelta::default();
        let res = (|| {
            for url in &msg.add {
                match self.insert_unflushed(url, Vec::new(), Source::Webhook)? {
                    Ok(o) => {
                        inserted.push(o.clone());
                        delta.added.push(o);
                    }
                    Err(dup) => delta.added.extend(self.get_orchestrator(&dup.id)?),
                }
            }
            for id in &msg.remove {
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
            for d in &deleted {
                self.undo_delete(d);
            }
            return Err(e);
        }
        Ok(delta)
    }
}

/// Adds an orchestrator unless its URL is already registered. Durable when it answers.
#[derive(Message)]
#[rtype(result = "Result<Result<Orchestrator, Duplicate>, StoreError>")]
pub struct InsertOrchestrator {
    /// Normalised URL.
    pub url: String,
    /// Declared capabilities.
    pub capabilities: Vec<Capability>,
    /// Where it came from.
    pub source: Source,
}

impl Handler<InsertOrchestrator> for Store {
    type Result = Result<Result<Orchestrator, Duplicate>, StoreError>;
    fn handle(&mut self, msg: InsertOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        self.insert(&msg.url, msg.capabilities, msg.source)
    }
}

/// Removes an orchestrator and its pair records. Durable when it answers; `None` if absent.
#[derive(Message)]
#[rtype(result = "Result<Option<Orchestrator>, StoreError>")]
pub struct DeleteOrchestrator {
    /// Which one.
    pub id: OrchestratorId,
}

impl Handler<DeleteOrchestrator> for Store {
    type Result = Result<Option<Orchestrator>, StoreError>;
    fn handle(&mut self, msg: DeleteOrchestrator, _ctx: &mut Self::Context) -> Self::Result {
        self.delete(&msg.id)
    }
}

/// Writes a batch of pair records (only for orchestrators still registered) and flushes.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SavePairs {
    /// The records.
    pub records: Vec<PairRecord>,
}

impl Handler<SavePairs> for Store {
    type Result = Result<usize, StoreError>;
    fn handle(&mut self, msg: SavePairs, _ctx: &mut Self::Context) -> Self::Result {
        self.writable()?;
        let n = self.merge_pairs(&msg.records, true)?;
        self.flush()?;
        Ok(n)
    }
}

/// Stores a capability's policy. Durable when it answers.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct PutPolicy {
    /// The capability.
    pub capability: Capability,
    /// Its policy.
    pub policy: CapabilityPolicy,
}

impl Handler<PutPolicy> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: PutPolicy, _ctx: &mut Self::Context) -> Self::Result {
        self.writable()?;
        let key = msg.capability.as_str().as_bytes();
        let previous = self.policies.insert(key, Self::encode(&msg.policy)).map_err(|e| self.err(e))?;
        if let Err(e) = self.flush() {
            let _ = match previous {
                Some(v) => self.policies.insert(key, v),
                None => self.policies.remove(key),
            };
            return Err(e);
        }
        Ok(())
    }
}

/// Removes a capability's stored policy. Durable when it answers; false if there was none.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeletePolicy {
    /// The capability.
    pub capability: Capability,
}

impl Handler<DeletePolicy> for Store {
    type Result = Result<bool, StoreError>;
    fn handle(&mut self, msg: DeletePolicy, _ctx: &mut Self::Context) -> Self::Result {
        self.writable()?;
        let key = msg.capability.as_str().as_bytes();
        let previous = self.policies.remove(key).map_err(|e| self.err(e))?;
        if let Err(e) = self.flush() {
            if let Some(v) = previous {
                let _ = self.policies.insert(key, v);
            }
            return Err(e);
        }
        Ok(previous.is_some())
    }
}

/// Exports everything (a consistent snapshot, taken while the gateway runs).
#[derive(Message)]
#[rtype(result = "Result<StoreExport, StoreError>")]
pub struct Export;

impl Handler<Export> for Store {
    type Result = Result<StoreExport, StoreError>;
    fn handle(&mut self, _msg: Export, _ctx: &mut Self::Context) -> Self::Result {
        self.export()
    }
}

/// Sets an orchestrator's `enabled` flag. Durable when it answers; `None` if absent.
#[derive(Message)]
#[rtype(result = "Result<Option<Orchestrator>, StoreError>")]
pub struct SetOrchestratorEnabled {
    /// Which one.
    pub id: OrchestratorId,
    /// The new flag.
    pub enabled: bool,
}

impl Handler<SetOrchestratorEnabled> for Store {
    type Result = Result<Option<Orchestrator>, StoreError>;
    fn handle(&mut self, msg: SetOrchestratorEnabled, _ctx: &mut Self::Context) -> Self::Result {
        self.writable()?;
        let Some(raw) = self.orchestrators.get(msg.id.0.as_bytes()).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let mut orch: Orchestrator = Self::decode(msg.id.0.as_bytes(), &raw)?;
        orch.enabled = msg.enabled;
        self.orchestrators.insert(msg.id.0.as_bytes(), Self::encode(&orch)).map_err(|e| self.err(e))?;
        if let Err(e) = self.flush() {
            let _ = self.orchestrators.insert(msg.id.0.as_bytes(), raw);
            return Err(e);
        }
        Ok(Some(orch))
    }
}

/// Fault injection: makes every store write fail (`true`) as on a full or read-only disk, or
/// restores normal operation (`false`). Used by the disk-trouble tests and chaos runs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectWriteFailure(pub bool);

impl Handler<InjectWriteFailure> for Store {
    type Result = ();
    fn handle(&mut self, msg: InjectWriteFailure, _ctx: &mut Self::Context) {
        tracing::warn!(failing = msg.0, "fault injected: store writes {}", if msg.0 { "fail" } else { "work again" });
        self.fail_writes = msg.0;
    }
}

/// Bytes the database takes on disk.
#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct Size;

impl Handler<Size> for Store {
    type Result = Result<u64, StoreError>;
    fn handle(&mut self, _msg: Size, _ctx: &mut Self::Context) -> Self::Result {
        self.db.size_on_disk().map_err(|e| self.err(e))
    }
}

/// Flushes everything to disk (shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Flush;

impl Handler<Flush> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        self.flush()
    }
}

/// Readiness probe: reads the schema key.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Ping;

impl Handler<Ping> for Store {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _msg: Ping, _ctx: &mut Self::Context) -> Self::Result {
        self.meta.get(SCHEMA_KEY).map(|_| ()).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(s: &str) -> Capability {
        Capability::new(s).expect("valid")
    }

    #[test]
    fn insert_is_unique_by_url_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = {
            let s = open(dir.path()).expect("open");
            let o = s.insert("http://a:1", vec![cap("depth")], Source::Admin).expect("io").expect("new");
            let dup = s.insert("http://a:1", vec![], Source::Admin).expect("io");
            assert_eq!(dup, Err(Duplicate { id: o.id.clone(), url: "http://a:1".into() }));
            o.id
        };
        let s = open(dir.path()).expect("reopen");
        let all = s.list_orchestrators().expect("list");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, id);
        assert_eq!(all[0].capabilities, vec![cap("depth")]);
        // Ids keep growing after a reopen.
        let o2 = s.insert("http://b:1", vec![], Source::Admin).expect("io").expect("new");
        assert_ne!(o2.id, id);
    }

    fn record(orch: &OrchestratorId, capability: &str, success: u64) -> PairRecord {
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
    fn summary(s: &Store) -> Vec<(String, String, u64)> {
        s.list_pairs()
            .expect("pairs")
            .into_iter()
            .map(|r| (r.orchestrator.0.to_string(), r.capability.as_str().to_string(), r.counters.success))
            .collect()
    }

    #[test]
    fn saves_merge_into_the_orchestrator_group_and_skip_deleted_orchestrators() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let a = s.insert("http://a:1", vec![], Source::Admin).expect("io").expect("new");
        let b = s.insert("http://b:1", vec![], Source::Admin).expect("io").expect("new");
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
    fn a_save_larger_than_one_batch_writes_every_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let n = SAVE_BATCH_GROUPS * 2 + 7;
        let mut records = Vec::new();
        for i in 0..n {
            let o = s.insert(&format!("http://o{i}:1"), vec![], Source::Admin).expect("io").expect("new");
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
            a = s.insert("http://a:1", vec![], Source::Admin).expect("io").expect("new").id;
            b = s.insert("http://b:1", vec![], Source::Admin).expect("io").expect("new").id;
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

    #[test]
    fn delete_removes_url_index_and_pairs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let o = s.insert("http://a:1", vec![], Source::Admin).expect("io").expect("new");
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
        assert!(s.insert("http://a:1", vec![], Source::Admin).expect("io").is_ok());
    }

    #[test]
    fn export_then_import_into_a_fresh_store_reproduces_it() {
        let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let src = open(a.path()).expect("open");
        let o1 = src.insert("http://a:1", vec![cap("depth")], Source::Admin).expect("io").expect("new");
        src.policies
            .insert(b"depth", Store::encode(&CapabilityPolicy { max_attempts: Some(2), ..Default::default() }))
            .expect("policy");
        src.merge_pairs(&[record(&o1.id, "depth", 7)], true).expect("save");
        let export = src.export().expect("export");
        let json = serde_json::to_string(&export).expect("json");
        let back: StoreExport = serde_json::from_str(&json).expect("parse");

        let dst = open(b.path()).expect("open");
        let summary = dst.import(&back).expect("import");
        assert_eq!(summary, ImportSummary { orchestrators: 1, pairs: 1, policies: 1 });
        let snap = dst.snapshot().expect("snapshot");
        assert_eq!(snap.orchestrators, vec![o1.clone()]);
        assert_eq!(serde_json::to_value(&snap.pairs).ok(), serde_json::to_value([record(&o1.id, "depth", 7)]).ok());
        assert_eq!(snap.policies[0].1.max_attempts, Some(2));
        // New ids do not collide with imported ones; a second import conflicts and changes nothing.
        let o2 = dst.insert("http://b:1", vec![], Source::Admin).expect("io").expect("new");
        assert_ne!(o2.id, o1.id);
        assert!(matches!(dst.import(&back), Err(ImportError::Conflict(_))));
        assert_eq!(dst.snapshot().expect("snapshot").orchestrators.len(), 2);
        let mut wrong = back.clone();
        wrong.schema_version = 99;
        assert!(matches!(dst.import(&wrong), Err(ImportError::Format(_))));
        // A schema 1 export (same document) still imports.
        let c = tempfile::tempdir().expect("tempdir");
        let mut v1 = back.clone();
        v1.schema_version = 1;
        let summary = open(c.path()).expect("open").import(&v1).expect("schema 1 export");
        assert_eq!(summary.pairs, 1);
    }

    #[test]
    fn an_unfinished_snapshot_left_by_a_full_disk_does_not_stop_the_store_opening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = open(dir.path()).expect("open");
            s.insert("http://a:1", vec![], Source::Admin).expect("io").expect("new");
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
            s.insert("http://a:1", vec![], Source::Admin).expect("io").expect("new");
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

    #[actix_rt::test]
    async fn webhook_changes_touch_only_webhook_entries_and_a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let admin = s.insert("http://admin:1", vec![], Source::Admin).expect("io").expect("new");
        let addr = SyncArbiter::start(1, {
            let s = s.clone();
            move || s.clone()
        });
        let apply = |add: &[&str], remove: Vec<OrchestratorId>| {
            addr.send(ApplyWebhook { add: add.iter().map(|u| u.to_string()).collect(), remove })
        };

        let d = apply(&["http://w:1", "http://admin:1"], vec![]).await.expect("mailbox").expect("io");
        let sources: Vec<(String, Source)> = d.added.iter().map(|o| (o.url.clone(), o.source)).collect();
        assert_eq!(sources, vec![("http://w:1".into(), Source::Webhook), ("http://admin:1".into(), Source::Admin)]);
        let w = d.added[0].id.clone();
        // Removing an admin entry through the webhook path does nothing; a retry is harmless.
        let d = apply(&["http://w:1"], vec![admin.id.clone()]).await.expect("mailbox").expect("io");
        assert!(d.removed.is_empty());
        assert_eq!(d.added.iter().map(|o| o.id.clone()).collect::<Vec<_>>(), vec![w.clone()]);
        assert_eq!(s.list_orchestrators().expect("list").len(), 2);

        // A failed write leaves the registry as it was.
        addr.send(InjectWriteFailure(true)).await.expect("mailbox");
        assert!(apply(&["http://w2:1"], vec![w.clone()]).await.expect("mailbox").is_err());
        addr.send(InjectWriteFailure(false)).await.expect("mailbox");
        let urls: Vec<String> = s.list_orchestrators().expect("list").into_iter().map(|o| o.url).collect();
        assert_eq!(urls.len(), 2, "{urls:?}");
        assert!(urls.contains(&"http://w:1".to_string()) && !urls.contains(&"http://w2:1".to_string()));

        let d = apply(&[], vec![w.clone()]).await.expect("mailbox").expect("io");
        assert_eq!(d.removed.iter().map(|o| o.id.clone()).collect::<Vec<_>>(), vec![w]);
        assert_eq!(s.list_orchestrators().expect("list"), vec![admin]);
    }

    #[actix_rt::test]
    async fn a_config_entry_adopts_the_webhook_entry_of_the_same_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path()).expect("open");
        let w = s.insert("http://w:1", vec![], Source::Webhook).expect("io").expect("new");
        let addr = SyncArbiter::start(1, {
            let s = s.clone();
            move || s.clone()
        });
        let snap = addr
            .send(ReconcileConfig { entries: vec![("http://w:1".into(), vec![cap("depth")])] })
            .await
            .expect("mailbox")
            .expect("io");
        assert_eq!(snap.orchestrators.len(), 1);
        let o = &snap.orchestrators[0];
        assert_eq!((&o.id, o.source, &o.capabilities), (&w.id, Source::Config, &vec![cap("depth")]));
        // Now the webhook dropping it changes nothing.
        let d =
            addr.send(ApplyWebhook { add: vec![], remove: vec![w.id.clone()] }).await.expect("mailbox").expect("io");
        assert!(d.removed.is_empty());
        assert_eq!(s.list_orchestrators().expect("list").len(), 1);
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
            Err(StoreError::Schema { found: 99, .. }) => {}
            other => panic!("expected schema error, got {:?}", other.map(|_| ())),
        }
    }
}

//! The local copy of a fleet's registry (etcd backend): the registry trees hold what this
//! replica last applied from etcd, and the `meta` tree says so (`registry_mirror`: the fleet's
//! prefix and the revision). A replica that starts while etcd is unreachable starts from this
//! copy; saved scores are checked against it as against any registry.
//!
//! A data dir whose registry is not such a copy (a single gateway's own) is never overwritten
//! silently: [`Db::mirror_of`] tells the start-up which it is.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::{Db, Duplicate};
use crate::capability::Capability;
use crate::orchestrator::{Orchestrator, OrchestratorId};
use crate::policy::CapabilityPolicy;
use crate::store::StoreError;

/// A registry to copy: what the store keeps of it (forced trips are not kept).
#[derive(Debug, Clone, Default)]
pub struct RegistryCopy {
    /// The orchestrators, by id.
    pub orchestrators: BTreeMap<OrchestratorId, Orchestrator>,
    /// Runtime capability policies.
    pub policies: BTreeMap<Capability, CapabilityPolicy>,
    /// The registry revision copied.
    pub revision: Option<i64>,
}

const MIRROR_KEY: &[u8] = b"registry_mirror";

/// What the registry trees of a data dir mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorInfo {
    /// The fleet's etcd key prefix.
    pub prefix: String,
    /// The registry revision copied.
    pub revision: Option<i64>,
    /// When (Unix ms).
    pub at_unix_ms: u64,
}

impl Db {
    /// What the registry trees mirror: `None` for a registry of the data dir's own.
    pub(crate) fn mirror_of(&self) -> Result<Option<MirrorInfo>, StoreError> {
        Ok(self.meta.get(MIRROR_KEY).map_err(|e| self.err(e))?.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Replaces the registry trees with `state` (orchestrators and runtime policies) and marks
    /// them a copy of the fleet under `prefix`. Orchestrators no longer there go with their
    /// scores; the others keep theirs.
    pub(crate) fn mirror(&self, state: &RegistryCopy, prefix: &str) -> Result<(), StoreError> {
        self.writable()?;
        for o in self.list_orchestrators()? {
            match state.orchestrators.get(&o.id) {
                Some(now) if now.url == o.url => {}
                _ => {
                    self.delete(&o.id)?;
                }
            }
        }
        for o in state.orchestrators.values() {
            match self.get_orchestrator(&o.id)? {
                Some(old) if &old == o => {}
                Some(_) => {
                    self.orchestrators.insert(o.id.0.as_bytes(), Self::encode(o)).map_err(|e| self.err(e))?;
                }
                None => {
                    if let Err(Duplicate { id, url }) = self.put_new(o.clone())? {
                        // The URL under another id in this copy: the fleet's entry wins.
                        if let Some(stale) = self.get_orchestrator(&id)? {
                            tracing::debug!(id = %stale.id, url = %url, "local registry copy: entry replaced");
                            self.delete(&id)?;
                        }
                        let _ = self.put_new(o.clone())?;
                    }
                }
            }
        }
        let names: Vec<Vec<u8>> = self.policies.iter().keys().filter_map(Result::ok).map(|k| k.to_vec()).collect();
        for k in names {
            let keep = std::str::from_utf8(&k).ok().is_some_and(|n| state.policies.keys().any(|c| c.as_str() == n));
            if !keep {
                self.policies.remove(k).map_err(|e| self.err(e))?;
            }
        }
        for (cap, policy) in &state.policies {
            self.policies.insert(cap.as_str().as_bytes(), Self::encode(policy)).map_err(|e| self.err(e))?;
        }
        let info = MirrorInfo {
            prefix: prefix.to_string(),
            revision: state.revision,
            at_unix_ms: crate::clock::unix_ms_now(),
        };
        self.meta.insert(MIRROR_KEY, Self::encode(&info)).map_err(|e| self.err(e))?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cap, record};
    use super::super::*;
    use super::*;
    use crate::orchestrator::{Orchestrator, OrchestratorId, Source};

    fn orch(id: &str, url: &str) -> Orchestrator {
        Orchestrator {
            id: OrchestratorId(id.into()),
            url: url.into(),
            capabilities: vec![cap("depth")],
            added_at: 1,
            source: Source::Admin,
            enabled: true,
            label: None,
        }
    }

    #[test]
    fn the_copy_follows_the_fleet_and_keeps_the_scores_of_what_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path()).expect("open");
        assert_eq!(db.mirror_of().expect("read"), None, "a data dir's own registry");
        let (a, b) = (orch("orch-1", "http://a:1"), orch("orch-2", "http://b:1"));
        let mut state = RegistryCopy::default();
        state.orchestrators.insert(a.id.clone(), a.clone());
        state.orchestrators.insert(b.id.clone(), b.clone());
        state.policies.insert(cap("depth"), CapabilityPolicy { max_attempts: Some(2), ..Default::default() });
        state.revision = Some(7);
        db.mirror(&state, "/p/").expect("mirror");
        db.merge_pairs(&[record(&a.id, "depth", 3), record(&b.id, "depth", 4)], true).expect("scores");
        assert_eq!(db.mirror_of().expect("read").map(|m| (m.prefix, m.revision)), Some(("/p/".into(), Some(7))));

        // orch-2 removed, orch-1 disabled, a new orch-3, the policy gone.
        state.orchestrators.remove(&b.id);
        let disabled = Orchestrator { enabled: false, ..a.clone() };
        state.orchestrators.insert(a.id.clone(), disabled.clone());
        let c = orch("orch-3", "http://c:1");
        state.orchestrators.insert(c.id.clone(), c.clone());
        state.policies.clear();
        state.revision = Some(9);
        db.mirror(&state, "/p/").expect("mirror");
        let snap = db.snapshot().expect("snapshot");
        assert_eq!(snap.orchestrators, vec![disabled, c]);
        assert!(snap.policies.is_empty());
        let scored: Vec<&OrchestratorId> = snap.pairs.iter().map(|p| &p.orchestrator).collect();
        assert_eq!(scored, vec![&a.id], "the removed orchestrator's scores went with it");
        // A URL registered again under a new id replaces the old entry.
        let moved = orch("orch-4", "http://c:1");
        state.orchestrators.remove(&OrchestratorId("orch-3".into()));
        state.orchestrators.insert(moved.id.clone(), moved.clone());
        db.mirror(&state, "/p/").expect("mirror");
        assert!(db.snapshot().expect("snapshot").orchestrators.contains(&moved));
    }
}

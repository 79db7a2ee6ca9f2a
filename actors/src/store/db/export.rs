//! Export and import: the whole store as one versioned JSON document (`store export`,
//! `store import`).

use super::{Db, SCHEMA_VERSION};
use crate::capability::Capability;
use crate::clock::unix_ms_now;
use crate::orchestrator::Orchestrator;
use crate::pair::view::PairRecord;
use crate::policy::CapabilityPolicy;
use crate::store::StoreError;

impl Db {
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
}

/// The `format` tag of export files.
pub const EXPORT_FORMAT: &str = "byoc-gateway-store";

/// A store export: a versioned JSON document with everything persisted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreExport {
    /// Always [`EXPORT_FORMAT`].
    pub(crate) format: String,
    /// The schema version of the store it came from.
    pub(crate) schema_version: u32,
    /// When it was taken (Unix ms).
    pub(crate) exported_at_unix_ms: u64,
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
    pub(crate) capability: Capability,
    /// Its policy.
    pub(crate) policy: CapabilityPolicy,
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

#[cfg(test)]
mod tests {
    use super::super::testing::{cap, record};
    use super::super::*;
    use super::*;
    use crate::orchestrator::Source;

    #[test]
    fn export_then_import_into_a_fresh_store_reproduces_it() {
        let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let src = open(a.path()).expect("open");
        let o1 = src.insert("http://a:1", vec![cap("depth")], None, Source::Admin).expect("io").expect("new");
        src.policies
            .insert(b"depth", Db::encode(&CapabilityPolicy { max_attempts: Some(2), ..Default::default() }))
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
        let o2 = dst.insert("http://b:1", vec![], None, Source::Admin).expect("io").expect("new");
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
}

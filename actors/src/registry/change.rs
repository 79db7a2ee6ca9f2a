//! What the registry's backends produce and the supervisor applies: one [`Change`] per record
//! written or removed, and the whole [`RegistryState`] when a replica loads or resyncs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::capability::Capability;
use crate::orchestrator::{Orchestrator, OrchestratorId};
use crate::pair::PairKey;
use crate::policy::CapabilityPolicy;

/// An operator's forced breaker state for one pair, shared by every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Forced {
    /// Held open until a reset, or until `until_unix_ms` (wall clock, so that every replica
    /// ends it at the same moment).
    Trip {
        /// When the hold ends (Unix ms); `None`: until a reset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_unix_ms: Option<u64>,
    },
    /// Closed and its failure history forgotten (an operator's reset).
    Reset,
}

impl Forced {
    /// Whether this holds the pair open at `now_unix_ms`.
    pub fn holds_at(&self, now_unix_ms: u64) -> bool {
        match self {
            Forced::Trip { until_unix_ms } => until_unix_ms.is_none_or(|u| now_unix_ms < u),
            Forced::Reset => false,
        }
    }
}

/// One change of the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An orchestrator added, or its record changed (enabled flag, declared capabilities,
    /// source).
    Orchestrator(Orchestrator),
    /// An orchestrator removed (with its forced trips).
    OrchestratorRemoved(OrchestratorId),
    /// A capability's runtime policy set (boxed: a policy is large, the other changes small).
    Policy(Capability, Box<CapabilityPolicy>),
    /// A capability's runtime policy removed.
    PolicyRemoved(Capability),
    /// A pair's breaker forced open or reset.
    Forced(PairKey, Forced),
}

/// The whole registry at one revision (a load or a resync).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryState {
    /// The orchestrators, by id.
    pub orchestrators: BTreeMap<OrchestratorId, Orchestrator>,
    /// Runtime capability policies.
    pub policies: BTreeMap<Capability, CapabilityPolicy>,
    /// Forced breaker states (a reset stays recorded until its orchestrator goes).
    pub forced: BTreeMap<PairKey, Forced>,
    /// The registry revision this state reflects (`None`: sled, or nothing written yet).
    pub revision: Option<i64>,
}

impl RegistryState {
    /// What the local store keeps of it (the copy a replica starts from without etcd).
    pub fn copy(&self) -> crate::store::RegistryCopy {
        crate::store::RegistryCopy {
            orchestrators: self.orchestrators.clone(),
            policies: self.policies.clone(),
            revision: self.revision,
        }
    }

    /// Applies one change (what a replica does to its copy).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Orchestrator(o) => {
                self.orchestrators.insert(o.id.clone(), o.clone());
            }
            Change::OrchestratorRemoved(id) => {
                self.orchestrators.remove(id);
                self.forced.retain(|k, _| &k.orchestrator != id);
            }
            Change::Policy(c, p) => {
                self.policies.insert(c.clone(), (**p).clone());
            }
            Change::PolicyRemoved(c) => {
                self.policies.remove(c);
            }
            Change::Forced(k, f) => {
                self.forced.insert(k.clone(), *f);
            }
        }
    }

    /// The changes that turn `self` into `target` (a resync): removals first, then puts of
    /// what differs, each in a stable order.
    pub fn diff(&self, target: &RegistryState) -> Vec<Change> {
        let mut out = Vec::new();
        for id in self.orchestrators.keys().filter(|id| !target.orchestrators.contains_key(*id)) {
            out.push(Change::OrchestratorRemoved(id.clone()));
        }
        for c in self.policies.keys().filter(|c| !target.policies.contains_key(*c)) {
            out.push(Change::PolicyRemoved(c.clone()));
        }
        for (id, o) in &target.orchestrators {
            if self.orchestrators.get(id) != Some(o) {
                out.push(Change::Orchestrator(o.clone()));
            }
        }
        for (c, p) in &target.policies {
            if self.policies.get(c) != Some(p) {
                out.push(Change::Policy(c.clone(), Box::new(p.clone())));
            }
        }
        for (k, f) in &target.forced {
            if self.forced.get(k) != Some(f) {
                out.push(Change::Forced(k.clone(), *f));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::Source;

    fn orch(n: u32, enabled: bool) -> Orchestrator {
        Orchestrator {
            id: OrchestratorId(format!("orch-{n}").into()),
            url: format!("http://o{n}:1"),
            capabilities: Vec::new(),
            added_at: 1,
            source: Source::Admin,
            enabled,
            label: None,
        }
    }

    fn cap(s: &str) -> Capability {
        Capability::new(s).expect("valid")
    }

    #[test]
    fn a_trip_holds_until_its_expiry_and_a_reset_never() {
        assert!(Forced::Trip { until_unix_ms: None }.holds_at(u64::MAX));
        assert!(Forced::Trip { until_unix_ms: Some(10) }.holds_at(9));
        assert!(!Forced::Trip { until_unix_ms: Some(10) }.holds_at(10));
        assert!(!Forced::Reset.holds_at(0));
        let json = serde_json::to_string(&Forced::Trip { until_unix_ms: Some(5) }).expect("json");
        assert_eq!(json, r#"{"state":"trip","until_unix_ms":5}"#);
        assert_eq!(serde_json::from_str::<Forced>(r#"{"state":"reset"}"#).ok(), Some(Forced::Reset));
    }

    #[test]
    fn diff_then_apply_reaches_the_target_and_nothing_is_left_to_do() {
        let key = PairKey { orchestrator: orch(2, true).id, capability: cap("depth") };
        let mut mine = RegistryState::default();
        for c in [
            Change::Orchestrator(orch(1, true)),
            Change::Orchestrator(orch(2, true)),
            Change::Policy(cap("depth"), Box::new(CapabilityPolicy { max_attempts: Some(2), ..Default::default() })),
            Change::Policy(cap("gone"), Box::default()),
        ] {
            mine.apply(&c);
        }
        let mut target = mine.clone();
        target.apply(&Change::OrchestratorRemoved(orch(1, true).id));
        target.apply(&Change::Orchestrator(orch(2, false)));
        target.apply(&Change::Orchestrator(orch(3, true)));
        target.apply(&Change::PolicyRemoved(cap("gone")));
        target.apply(&Change::Forced(key.clone(), Forced::Trip { until_unix_ms: None }));
        let changes = mine.diff(&target);
        assert_eq!(changes[0], Change::OrchestratorRemoved(orch(1, true).id), "removals first");
        assert_eq!(changes.len(), 5, "{changes:?}");
        for c in &changes {
            mine.apply(c);
        }
        assert_eq!(mine.orchestrators, target.orchestrators);
        assert_eq!(mine.policies, target.policies);
        assert_eq!(mine.forced, target.forced);
        assert!(mine.diff(&target).is_empty());
        // Removing an orchestrator removes its forced trips.
        mine.apply(&Change::OrchestratorRemoved(key.orchestrator.clone()));
        assert!(mine.forced.is_empty());
    }
}

//! The policy book: every capability's policy and its effective knobs, shared by the routers and
//! the pairs, changed at runtime by the admin API and reloads.

use super::*;

/// All capability policies plus the default for capabilities without one, each with its
/// effective knobs computed once. Cheap to clone; readers take a short read lock per job and
/// get an `Arc`.
#[derive(Debug, Clone)]
pub struct PolicyBook {
    inner: Arc<RwLock<Policies>>,
}

#[derive(Debug)]
struct Policies {
    globals: Globals,
    default: (CapabilityPolicy, Arc<Effective>),
    per_capability: HashMap<Capability, (CapabilityPolicy, Arc<Effective>)>,
}

impl PolicyBook {
    /// A book over the `globals` with `default` for unnamed capabilities and the given
    /// per-capability entries.
    pub fn new(
        globals: Globals,
        default: CapabilityPolicy,
        per_capability: HashMap<Capability, CapabilityPolicy>,
    ) -> Self {
        let entry = |p: CapabilityPolicy| {
            let e = Arc::new(p.effective_with(&globals));
            (p, e)
        };
        let per_capability = per_capability.into_iter().map(|(c, p)| (c, entry(p))).collect();
        let default = entry(default);
        Self { inner: Arc::new(RwLock::new(Policies { globals, default, per_capability })) }
    }

    /// The effective knobs for `capability`.
    pub(crate) fn effective(&self, capability: &Capability) -> Arc<Effective> {
        let p = self.inner.read();
        p.per_capability.get(capability).unwrap_or(&p.default).1.clone()
    }

    /// The configured policy of `capability`, if it has its own.
    pub(crate) fn get(&self, capability: &Capability) -> Option<CapabilityPolicy> {
        self.inner.read().per_capability.get(capability).map(|(p, _)| p.clone())
    }

    /// Sets (or replaces) one capability's policy; returns its effective knobs.
    pub(crate) fn set(&self, capability: Capability, policy: CapabilityPolicy) -> Arc<Effective> {
        let mut p = self.inner.write();
        let e = Arc::new(policy.effective_with(&p.globals));
        p.per_capability.insert(capability, (policy, e.clone()));
        e
    }

    /// Checks `policy` against this book's global breaker config.
    pub(crate) fn validate(&self, policy: &CapabilityPolicy) -> Result<(), String> {
        policy.validate_with(&self.inner.read().globals.breaker)
    }

    /// Removes a capability's own policy (it falls back to the default); returns the
    /// effective knobs now in force for it.
    pub(crate) fn remove(&self, capability: &Capability) -> Arc<Effective> {
        let mut p = self.inner.write();
        p.per_capability.remove(capability);
        p.default.1.clone()
    }

    /// Every capability with its own policy, sorted by name.
    pub(crate) fn list(&self) -> Vec<(Capability, CapabilityPolicy, Arc<Effective>)> {
        let p = self.inner.read();
        let mut v: Vec<_> = p.per_capability.iter().map(|(k, (pol, e))| (k.clone(), pol.clone(), e.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

impl Default for PolicyBook {
    fn default() -> Self {
        Self::new(Globals::default(), CapabilityPolicy::default(), HashMap::new())
    }
}

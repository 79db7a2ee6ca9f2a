//! Per-capability routing policy: the routing profile and the retry knobs that the
//! dispatcher's attempt loop obeys.
//!
//! Profiles carry the defaults (from the seeds: low-latency jobs retry within about 8 s,
//! per-frame utilities allow for cold starts, chained jobs allow the most); per-capability
//! fields override them. Policies are shared read-mostly between HTTP workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::capability::Capability;

/// Routing profile of a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Interactive jobs (image-to-image, depth): fail over fast.
    #[default]
    LowLatency,
    /// Per-frame utilities: tolerate cold starts.
    PerFrame,
    /// Chained pipelines: the most patience.
    Chained,
}

impl Profile {
    /// The profile's defaults.
    pub fn defaults(self) -> Effective {
        match self {
            Profile::LowLatency => Effective {
                retry_timeout: Duration::from_secs(8),
                max_attempts: 3,
                per_try_timeout: Duration::from_secs(5),
            },
            Profile::PerFrame => Effective {
                retry_timeout: Duration::from_secs(30),
                max_attempts: 3,
                per_try_timeout: Duration::from_secs(20),
            },
            Profile::Chained => Effective {
                retry_timeout: Duration::from_secs(120),
                max_attempts: 4,
                per_try_timeout: Duration::from_secs(90),
            },
        }
    }
}

/// A capability's policy as configured: a profile plus optional overrides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityPolicy {
    /// The routing profile whose defaults apply.
    #[serde(default)]
    pub profile: Profile,
    /// Overall time within which new attempts may start.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_timeout: Option<Duration>,
    /// Attempts per job, the first included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Bound on one attempt (also capped by the job's own `timeout_seconds`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<Duration>,
}

/// The knobs in force after applying overrides to the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Effective {
    /// Overall time within which new attempts may start.
    #[serde(with = "humantime_serde")]
    pub retry_timeout: Duration,
    /// Attempts per job.
    pub max_attempts: u32,
    /// Bound on one attempt.
    #[serde(with = "humantime_serde")]
    pub per_try_timeout: Duration,
}

impl CapabilityPolicy {
    /// Overrides applied to the profile's defaults.
    pub fn effective(&self) -> Effective {
        let d = self.profile.defaults();
        Effective {
            retry_timeout: self.retry_timeout.unwrap_or(d.retry_timeout),
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
            per_try_timeout: self.per_try_timeout.unwrap_or(d.per_try_timeout),
        }
    }

    /// Checks the overrides are usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == Some(0) {
            return Err("max_attempts must be at least 1".into());
        }
        if self.max_attempts.is_some_and(|n| n > 20) {
            return Err("max_attempts must be at most 20".into());
        }
        if self.retry_timeout.is_some_and(|d| d.is_zero()) {
            return Err("retry_timeout must be positive".into());
        }
        if self.per_try_timeout.is_some_and(|d| d.is_zero()) {
            return Err("per_try_timeout must be positive".into());
        }
        Ok(())
    }
}

/// All capability policies plus the default for capabilities without one. Cheap to clone;
/// readers take a short read lock per job.
#[derive(Debug, Clone, Default)]
pub struct PolicyBook {
    inner: Arc<RwLock<Policies>>,
}

#[derive(Debug, Default)]
struct Policies {
    default: CapabilityPolicy,
    per_capability: HashMap<Capability, CapabilityPolicy>,
}

impl PolicyBook {
    /// A book with `default` for unnamed capabilities and the given per-capability entries.
    pub fn new(
        default: CapabilityPolicy,
        per_capability: HashMap<Capability, CapabilityPolicy>,
    ) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Policies {
                default,
                per_capability,
            })),
        }
    }

    /// The effective knobs for `capability`.
    pub fn effective(&self, capability: &Capability) -> Effective {
        let p = self.inner.read();
        p.per_capability
            .get(capability)
            .unwrap_or(&p.default)
            .effective()
    }

    /// Sets (or replaces) one capability's policy.
    pub fn set(&self, capability: Capability, policy: CapabilityPolicy) {
        self.inner.write().per_capability.insert(capability, policy);
    }

    /// Every configured capability with its policy, sorted by name.
    pub fn list(&self) -> Vec<(Capability, CapabilityPolicy)> {
        let p = self.inner.read();
        let mut v: Vec<_> = p
            .per_capability
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_over_profile_defaults() {
        let p = CapabilityPolicy {
            profile: Profile::Chained,
            max_attempts: Some(2),
            ..Default::default()
        };
        let e = p.effective();
        assert_eq!(e.max_attempts, 2);
        assert_eq!(e.retry_timeout, Duration::from_secs(120));
        assert_eq!(
            CapabilityPolicy::default().effective().retry_timeout,
            Duration::from_secs(8)
        );
    }

    #[test]
    fn book_falls_back_to_default() {
        let depth = Capability::new("depth").expect("valid");
        let other = Capability::new("other").expect("valid");
        let mut m = HashMap::new();
        m.insert(
            depth.clone(),
            CapabilityPolicy {
                max_attempts: Some(7),
                ..Default::default()
            },
        );
        let book = PolicyBook::new(CapabilityPolicy::default(), m);
        assert_eq!(book.effective(&depth).max_attempts, 7);
        assert_eq!(book.effective(&other).max_attempts, 3);
    }

    #[test]
    fn validate_rejects_zeroes() {
        assert!(CapabilityPolicy {
            max_attempts: Some(0),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(CapabilityPolicy {
            retry_timeout: Some(Duration::ZERO),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(CapabilityPolicy::default().validate().is_ok());
    }

    #[test]
    fn toml_shape_parses() {
        let p: CapabilityPolicy =
            serde_json::from_str(r#"{"profile":"per-frame","retry_timeout":"12s"}"#).expect("ok");
        assert_eq!(p.effective().retry_timeout, Duration::from_secs(12));
        assert!(serde_json::from_str::<CapabilityPolicy>(r#"{"bogus":1}"#).is_err());
    }
}
